"""The export's standalone check: ``verify_export.py`` and ``reference.npz`` written into the export, and that
script run in a fresh, isolated interpreter that cannot see the checkout.

``bench.export`` checks an export in-process; this is the check a user (or a reviewer) reruns without
prunebench. ``write_verifier`` stores the check sentences' tokenized inputs, the benchmarked variant's
mean-pooled float32 embeddings of them and the tolerance of the in-process check's rule, and generates the
script from ``bench/export_verify_template.py`` (the format set in it, nothing else changed).
``fresh_check`` runs it as ``python -I DIR/verify_export.py`` from DIR and reads its one line back.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["REFERENCE", "SCRIPT", "FreshCheck", "fresh_check", "write_verifier"]

SCRIPT = "verify_export.py"
REFERENCE = "reference.npz"
TEMPLATE = Path(__file__).with_name("export_verify_template.py")
_FORMAT_LINE = 'FORMAT = "set by prunebench export"  # "hf", "onnx" or "openvino"'
_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class FreshCheck:
    """What ``verify_export.py`` said in a fresh ``python -I``: its verdict and figures, the command, and the
    reason (its last output line, or why it did not run) when it failed."""

    passed: bool
    max_abs_diff: float | None
    min_cosine: float | None
    tolerance: float | None
    returncode: int | None
    command: str
    cwd: str
    output: str
    error: str | None


def script_text(fmt: str) -> str:
    """The template with ``FORMAT`` set to ``fmt``."""
    text = TEMPLATE.read_text(encoding="utf-8")
    if _FORMAT_LINE not in text:  # the template and this module drifted apart: a bug here, not bad input
        raise RuntimeError(f"{TEMPLATE.name} has no line {_FORMAT_LINE!r} to set the format in")
    return text.replace(_FORMAT_LINE, f"FORMAT = {fmt!r}", 1)


def write_verifier(fmt: str, out: Path, inputs: dict[str, torch.Tensor], reference: torch.Tensor, tolerance: float,
                   texts: list[str]) -> None:
    """Write ``out``/reference.npz (``inputs`` as int64 arrays under their own names, ``reference`` as
    ``embeddings`` float32, ``tolerance``, the ``sentences``) and ``out``/verify_export.py for ``fmt``."""
    arrays = {k: v.detach().cpu().numpy().astype(np.int64) for k, v in inputs.items()}
    np.savez(out / REFERENCE, **arrays, embeddings=reference.detach().cpu().float().numpy(),
             tolerance=np.float64(tolerance), sentences=np.array(list(texts), dtype=str))
    (out / SCRIPT).write_text(script_text(fmt), encoding="utf-8")


def _figures(line: str) -> dict[str, float]:
    return {k: float(v) for k, v in re.findall(r"(max_abs_diff|min_cosine|tolerance)=(\S+)", line)}


def fresh_check(out: Path, timeout_s: float = _TIMEOUT_S) -> FreshCheck:
    """Run ``out``/verify_export.py in a fresh ``sys.executable -I`` with cwd ``out`` (neither the checkout nor
    the cwd on sys.path) and return its verdict: passed only on exit 0 with a PASS line."""
    out = Path(out).resolve()
    argv = [sys.executable, "-I", str(out / SCRIPT)]
    command = shlex.join(argv)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    try:
        proc = subprocess.run(argv, cwd=out, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return FreshCheck(False, None, None, None, None, command, str(out), "", f"{SCRIPT} ran past {timeout_s:.0f} s")
    lines = [x for x in proc.stdout.splitlines() if x.startswith("verify_export:")]
    line = lines[-1] if lines else ""
    figures = _figures(line)
    passed = proc.returncode == 0 and " PASS " in line
    error = None
    if not passed:
        tail = line or (proc.stderr.strip().splitlines() or [f"no output, exit {proc.returncode}"])[-1]
        error = f"{SCRIPT} exited {proc.returncode}: {tail[:300]}"
    return FreshCheck(passed, figures.get("max_abs_diff"), figures.get("min_cosine"), figures.get("tolerance"),
                      proc.returncode, command, str(out), line, error)
