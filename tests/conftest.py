"""Shared fixtures: tiny seeded encoders of three architectures, the real MiniLM (loaded once), and the
tiny-bert run the gate tests read (recorded once)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY = ("tiny-bert", "tiny-distilbert", "tiny-roberta")
ROOT = Path(__file__).resolve().parents[1]

# The regression tests' tiny-bert plan (test_gate plants faults and slowdowns into copies of its run).
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


@pytest.fixture(autouse=True, scope="session")
def _cache_home(tmp_path_factory):
    """The run's on-disk cache (sizes, quality embeddings: bench/measure/embed_cache.py) goes to a directory of
    the test session's own, never the user's ~/.cache; every CLI run a test starts inherits it. A fixture, not
    an import-time setting: ``prunebench run`` in the repository loads this conftest too, and a user's run must
    keep its cache."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


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


@pytest.fixture(scope="session")
def gate_runs(tmp_path_factory) -> dict:
    """A real ``prunebench run`` of GATE_PLAN, recorded once and read (never written) by test_gate: ``a``, its
    run directory (the tests plant faults and slowdowns into copies of it, deterministically); ``args``: the run
    command without its --out. It runs in a process forked from one that imported torch once."""
    from .forked_cli import run_many

    d = tmp_path_factory.mktemp("gate-runs")
    (d / "plan.toml").write_text(GATE_PLAN)
    args = ["run", "--plan", str(d / "plan.toml")]
    runs = run_many([([*args, "--out", str(d / "a")], ROOT)], jobs=1, timeout=300)
    for proc in runs:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return {"a": d / "a", "args": args}
