"""The peer's own virtual environment: sentence-transformers with its ONNX and OpenVINO backends, created once
and cached, as the gate caches the baseline commit's venv (``bench.gate_sides.baseline_side``).

Why a separate venv: sentence-transformers' ONNX/OpenVINO backends need optimum-onnx / optimum-intel, which
pin transformers < 4.58, while prunebench runs on a newer transformers. The peer child
(``bench/launch/peer_child.py``) runs on this venv's interpreter. torch is pinned first on its own (its
CPU wheel lies on disk; an unpinned torch would pull a multi-GB CUDA build), then the rest with torch held
by a constraint. The cache directory is named by a hash of ``REQUIREMENTS``, so changing a pin makes a new
venv. Build it ahead of time with ``prunebench peer-venv`` (or :func:`build_peer_venv`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path

__all__ = ["BUILD_COMMAND", "REQUIREMENTS", "TORCH_PIN", "PeerVenvError", "build_peer_venv", "peer_python",
           "peer_venv_command", "peer_venv_dir"]

log = logging.getLogger("bench.launch.peer_venv")

TORCH_PIN = "torch==2.13.0"
REQUIREMENTS: tuple[str, ...] = (TORCH_PIN, "transformers<4.58", "sentence-transformers[onnx,openvino]", "nncf")
BUILD_COMMAND = "prunebench peer-venv"
READY = ".installed"  # written last: a venv without it is half-built and is rebuilt


class PeerVenvError(RuntimeError):
    """The peer venv cannot be built here; the message says why and how to build it."""


def _cache_root() -> Path:
    root = os.environ.get("PRUNEBENCH_PEER_CACHE")
    return Path(root) if root else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "prunebench"


def peer_venv_dir(requirements: tuple[str, ...] = REQUIREMENTS) -> Path:
    """Where the venv for ``requirements`` lives: ``~/.cache/prunebench/peer-venv-<hash of the requirements>``
    (``PRUNEBENCH_PEER_CACHE`` replaces ``~/.cache/prunebench``)."""
    key = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:10]
    return _cache_root() / f"peer-venv-{key}"


def peer_python(requirements: tuple[str, ...] = REQUIREMENTS) -> Path | None:
    """The built venv's interpreter, or None when it has not been built (or its build did not finish)."""
    venv = peer_venv_dir(requirements)
    py = venv / "bin" / "python"
    return py if (venv / READY).is_file() and py.exists() else None


def _pip(py: Path, args: list[str], what: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_CONSTRAINT")}
    proc = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1][:200]
        raise PeerVenvError(f"installing {what} into the peer venv failed ({last}); check network/pip access "
                            f"and rerun `{BUILD_COMMAND}`")


def build_peer_venv(requirements: tuple[str, ...] = REQUIREMENTS, rebuild: bool = False) -> Path:
    """Create (once) the peer venv for ``requirements`` and return its interpreter; a finished venv is reused
    unless ``rebuild``. The first requirement must be the torch pin: it is installed alone first."""
    venv = peer_venv_dir(requirements)
    py = venv / "bin" / "python"
    if (venv / READY).is_file() and not rebuild:
        return py
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    log.warning("peer venv: installing %s into %s (once; cached)", ", ".join(requirements), venv)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    torch_pin, rest = requirements[0], list(requirements[1:])
    _pip(py, [torch_pin], torch_pin)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write(torch_pin + "\n")
    try:
        _pip(py, [*rest, "-c", fh.name], ", ".join(rest))
    finally:
        Path(fh.name).unlink(missing_ok=True)
    (venv / READY).write_text("\n".join(requirements) + f"\n{time.perf_counter() - t0:.0f}s\n")
    log.warning("peer venv: ready in %.0fs", time.perf_counter() - t0)
    return py


def peer_venv_command(a: Namespace) -> int:
    """``prunebench peer-venv [--rebuild]``: build the peer venv now (a run would otherwise skip the st-* rows);
    prints its interpreter. Exit 1 with one line when the install fails."""
    try:
        py = build_peer_venv(rebuild=a.rebuild)
    except PeerVenvError as exc:
        log.error("%s", exc)
        return 1
    print(py)
    return 0
