"""Shared fixtures: tiny seeded encoders of three architectures, the real MiniLM (loaded once), and the
tiny-bert runs the regression tests (test_compare, test_gate) read (recorded once)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY = ("tiny-bert", "tiny-distilbert", "tiny-roberta")
ROOT = Path(__file__).resolve().parents[1]

# The regression tests' tiny-bert plan: an A/A pair of its runs, and one with a slowdown planted in torch-dense.
GATE_PLAN = """
name = "gate-test"
models = ["tiny-bert"]
runtimes = ["torch-masked", "torch-dense"]
batch = [8]
seq_len = [64]
threads = 1
ci_target = 0.02
time_cap_s = 3
min_rounds = 30
warmup = 3
memory = false
[[recipes]]
method = "global-l1"
sparsity = 0.5
"""


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_models():
    from bench.models import load_model

    return {name: load_model(name) for name in TINY}


@pytest.fixture(scope="session")
def minilm():
    from bench.models import load_model

    return load_model("minilm")


def _prunebench_run(cmd: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.fixture(scope="session")
def gate_runs(tmp_path_factory) -> dict:
    """Real ``prunebench run``s of GATE_PLAN, recorded once and read (never written) by test_compare and
    test_gate: ``a`` and ``b``, two normal runs (an A/A pair), and ``planted``, one with a 15% slowdown
    planted in torch-dense (tests/planted_slowdown.py); ``args``: the run command without its --out."""
    d = tmp_path_factory.mktemp("gate-runs")
    (d / "plan.toml").write_text(GATE_PLAN)
    args = ["run", "--plan", str(d / "plan.toml")]
    for name in ("a", "b"):
        _prunebench_run(["-m", "bench.cli", *args, "--out", str(d / name)])
    _prunebench_run([str(ROOT / "tests" / "planted_slowdown.py"), "0.15", *args, "--out", str(d / "planted")])
    return {"a": d / "a", "b": d / "b", "planted": d / "planted", "args": args}
