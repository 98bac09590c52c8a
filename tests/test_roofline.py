"""The roofline (issue 22 item 5) and the best stacks in the alternatives plan (item 1): the matmul peak probe per
dtype (skipping what the CPU lacks, faked flags), a row's GFLOP/s and fraction of peak from planted MACs and
latency, the report's column and sentence from planted records, "–" for records made before the fields existed,
and one real run that writes the peaks to env.json and the figures to its records. Nothing asserted is a timing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench import env as benv
from bench.dtypes import DTYPE_FLAGS
from bench.measure import roofline as rl
from bench.plan import Case, load_plan
from bench.records import Record, read_records
from bench.report import frame
from bench.report.alternatives import section
from bench.steps import roofline
from pruning import PruneRecipe

ROOT = Path(__file__).resolve().parents[1]
AMX = ("avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
TINY = (64, 64, 64)


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# -- the probe ---------------------------------------------------------------------------------------------

def test_the_probe_measures_a_positive_peak_per_dtype_the_cpu_runs_and_records_its_shape():
    torch.set_num_threads(2)
    probe = rl.measure_peaks(1, AMX, DTYPE_FLAGS, shape=TINY, seconds=0.0)
    assert torch.get_num_threads() == 2  # the run's thread count is restored after probing with the case's
    peaks = probe["peak_gflops"]
    want = {"float32", "bfloat16"} | ({"int8"} if rl.int8_gemm_unavailable() is None else set())
    assert set(peaks) == want and all(v > 0 for v in peaks.values())
    assert probe["peak_probe"]["shape"] == list(TINY) and probe["peak_probe"]["threads"] == 1
    assert "float16" in probe["peak_probe"]["skipped"]  # AMX without amx_fp16 / avx512_fp16


def test_the_probe_skips_a_half_dtype_the_cpu_lacks_and_says_which_flags(monkeypatch):
    called = []
    probe = rl.measure_peaks(2, ("avx2", "fma"), DTYPE_FLAGS, gflops=lambda d, t, s, sec: called.append((d, t)) or 100.0)
    assert ("bfloat16", 2) not in called and ("float32", 2) in called
    skipped = probe["peak_probe"]["skipped"]
    assert "avx512_bf16, amx_bf16" in skipped["bfloat16"] and "avx512_fp16, amx_fp16" in skipped["float16"]
    assert "bfloat16" not in probe["peak_gflops"] and probe["peak_gflops"]["float32"] == 100.0


def test_without_an_int8_gemm_int8_is_skipped_with_the_reason(monkeypatch):
    monkeypatch.delattr(torch, "_int_mm", raising=False)
    probe = rl.measure_peaks(1, AMX, DTYPE_FLAGS, gflops=lambda *a: 50.0)
    assert "int8" not in probe["peak_gflops"] and "torch._int_mm" in probe["peak_probe"]["skipped"]["int8"]


def test_a_probe_that_raises_skips_its_dtype_with_the_error():
    def gflops(dtype, *a):
        if dtype == "bfloat16":
            raise RuntimeError("no bf16 kernel\nstack")
        return 10.0

    probe = rl.measure_peaks(1, AMX, DTYPE_FLAGS, gflops=gflops)
    assert "bfloat16" not in probe["peak_gflops"]
    assert probe["peak_probe"]["skipped"]["bfloat16"] == "the bfloat16 matmul probe failed: no bf16 kernel"


def test_the_probe_rate_is_the_fastest_call():
    ticks = iter([0.0, 0.0, 0.5, 0.5, 0.75, 0.75, 1.0, 9.0])  # end = 0.0 + 0; calls of 0.5 s, 0.25 s, 0.25 s
    rate = rl.matmul_gflops("float32", 1, TINY, seconds=0.0, timer=lambda: next(ticks))
    assert rate == pytest.approx(2 * 64 ** 3 / 0.25 / 1e9, rel=1e-12)


# -- a row's figures ---------------------------------------------------------------------------------------

PEAKS = {"float32": 400.0, "bfloat16": 2000.0, "int8": 4000.0}


def test_gflops_and_fraction_come_from_the_rows_macs_and_latency():
    f = rl.roofline_fields(5_000_000_000, 20.0, ("bfloat16", 2000.0))
    assert f["achieved_gflops"] == pytest.approx(500.0, rel=1e-12)
    assert f["peak_fraction"] == pytest.approx(0.25, rel=1e-12) and f["peak_dtype"] == "bfloat16"
    assert rl.roofline_fields(None, 20.0, ("float32", 1.0))["achieved_gflops"] is None
    assert rl.roofline_fields(5, 20.0, None) == {"achieved_gflops": pytest.approx(5e-7), "peak_dtype": None,
                                                 "peak_gflops": None, "peak_fraction": None}


@pytest.mark.parametrize("runtime, dtype, peak", [
    ("torch-dense", "bfloat16", "bfloat16"), ("torch-compile", "bfloat16", "bfloat16"),
    ("torch-dense", "float32", "float32"), ("onnxruntime", "float32", "float32"), ("openvino", "float32", "float32"),
    ("torch-int8", "float32", "int8"), ("onnxruntime-int8", "float32", "int8"),
    ("openvino-sparse-int8", "float32", "int8"), ("st-onnx-qint8", "float32", "int8")])
def test_each_row_is_held_to_the_peak_of_what_it_computes_in(runtime, dtype, peak):
    case = Case("tiny-bert", PruneRecipe("layers", 0.5, recover="lstsq"), runtime, dtype=dtype, baseline_dtype="float32",
                baseline_runtime="torch-dense")
    rec = Record(macs=1_000_000_000, latency_ms=10.0)
    f = roofline(case, rec, PEAKS).record_fields()
    assert f["peak_dtype"] == peak and f["peak_gflops"] == PEAKS[peak]
    assert f["peak_fraction"] == pytest.approx(200.0 / PEAKS[peak], rel=1e-12)


def test_a_dtype_without_a_measured_peak_falls_back_to_fp32_and_a_gpu_row_gets_none():
    assert rl.applicable_peak({"float32": 400.0}, "float32", "int8") == ("float32", 400.0)
    assert rl.applicable_peak({}, "bfloat16") is None and rl.applicable_peak(None, "float32") is None
    gpu = Case("tiny-bert", PruneRecipe("dense"), "torch-dense", device="cuda")
    assert roofline(gpu, Record(macs=10, latency_ms=1.0), PEAKS).record_fields()["achieved_gflops"] is None


# -- the report --------------------------------------------------------------------------------------------

def _row(recipe, runtime, dtype, ratio, latency_ms=None, macs=None, peak=None):
    r = {"case_id": f"m/{recipe}/{runtime}/{dtype}", "status": "ok", "model": "m", "method": recipe.split("@")[0],
         "recipe": recipe, "runtime": runtime, "dtype": dtype, "device": "cpu", "batch": 8, "seq_len": 128,
         "baseline_runtime": "torch-dense", "baseline_dtype": "float32", "latency_ratio": ratio,
         "latency_ratio_lo": ratio * 0.95, "latency_ratio_hi": ratio * 1.05, "quality_cosine": 0.999,
         "latency_ms": latency_ms}
    if macs is not None:
        r.update(macs=macs, **rl.roofline_fields(macs, latency_ms, peak))
    return r


def _table(text: str) -> list[list[str]]:
    """The section's markdown table as rows of stripped cells (header, rule, rows)."""
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]


def test_the_section_shows_each_rows_gflops_and_fraction_and_how_far_the_fastest_is_from_the_peak():
    recs = [_row("dense@0.00", "torch-dense", "float32", 1.0, 80.0, 8_000_000_000, ("float32", 400.0)),
            _row("dense@0.00", "torch-dense", "bfloat16", 0.25, 20.0, 8_000_000_000, ("bfloat16", 2000.0)),
            _row("layers[lstsq]@0.50", "torch-int8", "float32", 0.5, 40.0, 4_000_000_000, ("int8", 4000.0))]
    text = "\n".join(section(frame(recs)))
    table = _table(text)
    assert table[0][-2:] == ["GFLOP/s", "of peak"]
    assert [r[-2:] for r in table[2:]] == [["800", "40.0% of bf16"], ["200", "5.0% of int8"], ["200", "50.0% of fp32"]]
    slow = _row("layers[lstsq]@0.50", "torch-dense", "float32", 0.2, 0.4, 600_000, ("float32", 400.0))
    tiny = "\n".join(section(frame(recs + [slow])))  # a tiny model: figures below 1 keep three significant digits
    assert [r[-2:] for r in _table(tiny)[2:3]] == [["3", "0.75% of fp32"]]
    assert "take 0.003 ms per forward instead of 0.4 ms" in tiny
    assert ("**Roofline:** the fastest row, dense@0.00 · torch-dense · bfloat16, computes 800 GFLOP/s, 40.0% of this "
            "CPU's bf16 matmul peak (2000 GFLOP/s, measured by a matmul probe at the run's start): at that peak it "
            "would take 8 ms per forward instead of 20 ms.") in text


def test_records_without_the_fields_render_a_dash_and_no_sentence():
    old = [_row("dense@0.00", "torch-dense", "float32", 1.0, 80.0), _row("dense@0.00", "torch-dense", "bfloat16", 0.3, 24.0)]
    text = "\n".join(section(frame(old)))
    assert [r[-2:] for r in _table(text)[2:]] == [["–", "–"], ["–", "–"]] and "**Roofline:**" not in text
    mixed = old + [_row("dense@0.00", "onnxruntime", "float32", 0.9, 72.0, 8_000_000_000, ("float32", 400.0))]
    assert "**Roofline:** the fastest row with a roofline figure, dense@0.00 · onnxruntime" in "\n".join(section(frame(mixed)))


def test_a_committed_run_recorded_before_the_roofline_still_renders_its_section():
    recs = read_records(ROOT / "results/alternatives-cpu-v3")
    assert all("peak_fraction" not in r for r in recs)
    lines = section(frame(recs))
    assert lines and "**Roofline:**" not in "\n".join(lines)
    assert Record.from_dict(recs[0]).peak_fraction is None


# -- the plan ----------------------------------------------------------------------------------------------

def test_the_alternatives_plan_stacks_layers_lstsq_on_bf16_int8_and_openvino():
    plan = load_plan(ROOT / "bench/plans/alternatives.toml")
    ids = {c.case_id for c in plan.cases if c.recipe.method == "layers"}
    fp32 = [f"minilm/layers[lstsq]@{s}/{rt}/cpu/b8s128" for s in ("0.33", "0.50")
            for rt in ("torch-dense", "torch-int8", "onnxruntime-int8", "openvino")]
    bf16 = [f"minilm/layers[lstsq]@{s}/{rt}/cpu-bfloat16/b8s128/vs-torch-dense-float32" for s in ("0.33", "0.50")
            for rt in ("torch-dense", "torch-compile")]
    as_shipped = [f"minilm/layers[lstsq]@0.50/{rt}/cpu/b8s128" for rt in ("openvino-auto", "openvino-int8")]
    assert ids == set(fp32 + bf16 + as_shipped)
    assert all(c.baseline.case_id == "minilm/dense@0.00/torch-dense/cpu/b8s128" for c in plan.cases
               if c.recipe.method == "layers")


# -- one real run ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_run_writes_the_peaks_to_env_json_and_the_roofline_to_its_records(tmp_path, monkeypatch):
    """Flags faked to a CPU without bf16: the probe skips it and says so; the pruned rows' MACs are their own
    (fewer than the dense model's), and their GFLOP/s and fraction are computed from them, their median latency
    and the fp32 peak."""
    from bench.cli import main
    from bench.measure.flops import macs
    from bench.models import load_model

    monkeypatch.setattr(benv, "cpu_flags", lambda: ("avx2", "fma"))
    monkeypatch.delenv("PRUNEBENCH_FORCE_DTYPES", raising=False)
    out = tmp_path / "run"
    code = main(["run", "--model", "tiny-bert", "--methods", "layers,heads", "--sparsity", "0.5", "--runtimes",
                 "torch-dense", "--batch", "2", "--seq-len", "16", "--threads", "1", "--time-cap", "0.3",
                 "--no-memory", "--no-cache", "--out", str(out)])
    assert code == 0
    env = json.loads((out / "env.json").read_text())
    assert env["peak_gflops"]["float32"] > 0 and "bfloat16" not in env["peak_gflops"]
    assert "bfloat16" in env["peak_probe"]["skipped"] and env["peak_probe"]["threads"] == 1
    assert "load_avg_start" in env  # the end of the run adds its fields to the probe's env.json
    recs = read_records(out)
    dense = macs(load_model("tiny-bert").model, 2, 16, nonzero=False)
    assert len(recs) == 2 and all(r["status"] == "ok" for r in recs)
    for r in recs:
        assert 0 < r["macs"] < dense and r["macs"] == pytest.approx(r["flops_ratio"] * dense, rel=1e-12)
        assert r["peak_dtype"] == "float32" and r["peak_gflops"] == env["peak_gflops"]["float32"]
        assert r["achieved_gflops"] == pytest.approx(2 * r["macs"] / (r["latency_ms"] / 1e3) / 1e9, rel=1e-12)
        assert r["peak_fraction"] == pytest.approx(r["achieved_gflops"] / r["peak_gflops"], rel=1e-12)
