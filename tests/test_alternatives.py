"""Pruning next to its alternatives: typed runtimes, explicit baselines (case ids and fingerprints), CPU
dtypes skipped with the reason (faked flags), the int8 quality-floor gate, torch-compile, OpenVINO as an
optional extra, and the report section that puts them on one scale."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import env as benv
from bench.engine import EqualityError, Session
from bench.env import environment, fingerprint
from bench.models import load_model
from bench.plan import Case, Plan, PlanError, load_plan, plan_from_dict
from bench.records import Record
from bench.runtimes import RUNTIMES, Runtime, get_runtime
from bench.runtimes.base import Variant, equality_gate
from pruning import PruneRecipe

ROOT = Path(__file__).resolve().parents[1]
HEADS = PruneRecipe("heads+ffn", 0.5)


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def session(tmp_path):
    case = Case("tiny-bert", PruneRecipe("dense"), "torch-dense", batch=2, seq_len=16, threads=1)
    # latency is timed here only to show a case that passes its gate gets one: a short cap, not the default 20 s
    s = Session(Plan((case,), memory=False, quality=False, time_cap_s=1.0), tmp_path / "run", "test")
    yield s
    s.close()


def _flags(monkeypatch, *flags: str) -> None:
    monkeypatch.delenv("PRUNEBENCH_FORCE_DTYPES", raising=False)
    monkeypatch.setattr(benv, "cpu_flags", lambda: tuple(flags))


# -- the runtime protocol -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(RUNTIMES))
def test_every_registered_runtime_implements_the_protocol(name):
    rt = get_runtime(name)
    assert isinstance(rt, Runtime) and rt.name == name and rt.help
    assert isinstance(rt.versions(), dict)
    assert rt.unavailable("cpu") is None or isinstance(rt.unavailable("cpu"), str)


def test_a_module_without_a_runtime_instance_is_refused_with_the_fix(monkeypatch):
    monkeypatch.setitem(RUNTIMES, "bogus", "bench.report.plots")
    with pytest.raises(TypeError, match="RUNTIME = ThatClass"):
        get_runtime("bogus")


def test_env_records_cpu_flags_and_every_runtimes_library_version():
    env = environment()
    assert isinstance(env["cpu_flags"], list) and set(env["cpu_flags"]) <= set(benv.CPU_FLAGS)
    assert "openvino" in env and "onnxruntime" in env  # from the runtimes' versions(), None where absent


# -- baselines: case ids and fingerprints --------------------------------------------------------------

def test_cross_dtype_baseline_is_its_own_case_with_its_own_fingerprint():
    own = Case("tiny-bert", HEADS, "torch-dense", dtype="bfloat16")
    vs_fp32 = Case("tiny-bert", HEADS, "torch-dense", dtype="bfloat16", baseline_dtype="float32")
    assert own.case_id == "tiny-bert/heads+ffn@0.50/torch-dense/cpu-bfloat16/b8s128"
    assert vs_fp32.case_id == own.case_id + "/vs-torch-dense-float32"
    assert own.baseline.case_id == "tiny-bert/dense@0.00/torch-dense/cpu-bfloat16/b8s128"
    assert vs_fp32.baseline.case_id == "tiny-bert/dense@0.00/torch-dense/cpu/b8s128"
    env = {"torch": "t", "cpu": "c"}
    assert fingerprint(own, env) != fingerprint(vs_fp32, env)


def test_cross_runtime_baseline_and_the_old_alias_name_are_the_same_case():
    ort = Case("tiny-bert", PruneRecipe("dense"), "onnxruntime")
    vs_torch = Case("tiny-bert", PruneRecipe("dense"), "onnxruntime", baseline_runtime="torch-dense")
    alias = Case("tiny-bert", PruneRecipe("dense"), "onnxruntime-vs-torch")
    assert ort.baseline.runtime == "onnxruntime" and vs_torch.baseline.runtime == "torch-dense"
    assert vs_torch.case_id == "tiny-bert/dense@0.00/onnxruntime/cpu/b8s128/vs-torch-dense-float32"
    assert alias == vs_torch and alias.case_id == vs_torch.case_id
    assert fingerprint(ort, {}) != fingerprint(vs_torch, {}) == fingerprint(alias, {})
    assert Case.from_dict(vs_torch.to_dict()) == vs_torch


def test_a_default_baseline_spelled_out_changes_neither_id_nor_fingerprint():
    implicit = Case("tiny-bert", HEADS, "torch-csr")
    explicit = Case("tiny-bert", HEADS, "torch-csr", baseline_runtime="torch-dense", baseline_dtype="float32")
    assert explicit == implicit and explicit.case_id == implicit.case_id
    assert "baseline_runtime" not in explicit.to_dict() and fingerprint(explicit, {}) == fingerprint(implicit, {})


def test_committed_baseline_records_keep_their_case_ids_and_fingerprints():
    """results/baseline is compared by case_id and fingerprint: the ci plan must reproduce both exactly."""
    base = ROOT / "results/baseline"
    committed = {r["case_id"]: r["fingerprint"] for r in map(json.loads, (base / "records.jsonl").read_text().splitlines())}
    env = json.loads((base / "env.json").read_text())
    plan = load_plan(ROOT / "bench/plans/ci.toml")
    assert {c.case_id for c in plan.cases} == set(committed)
    for c in plan.cases:
        assert fingerprint(c, env) == committed[c.case_id], c.case_id


def test_plans_and_the_cli_name_a_baseline():
    d = {"models": ["tiny-bert"], "runtimes": ["torch-dense", "onnxruntime"], "baseline": "torch-dense:float32",
         "dtype": ["float32", "bfloat16"], "recipes": [{"method": "dense"}]}
    ids = sorted(c.case_id for c in plan_from_dict(d).cases)
    assert ids == ["tiny-bert/dense@0.00/onnxruntime/cpu-bfloat16/b8s128/vs-torch-dense-float32",
                   "tiny-bert/dense@0.00/onnxruntime/cpu/b8s128/vs-torch-dense-float32",
                   "tiny-bert/dense@0.00/torch-dense/cpu-bfloat16/b8s128/vs-torch-dense-float32",
                   "tiny-bert/dense@0.00/torch-dense/cpu/b8s128"]
    per_recipe = plan_from_dict({"models": ["tiny-bert"], "runtimes": ["torch-dense"], "dtype": "bfloat16",
                                 "recipes": [{"method": "dense"}, {"method": "dense", "baseline": "torch-dense:float32"}]})
    assert [c.baseline.dtype for c in per_recipe.cases] == ["bfloat16", "float32"]


@pytest.mark.parametrize("bad,match", [("torch-dens:float32", "did you mean 'torch-dense'"), ("torch-dense:int4", "dtype 'int4'"),
                                       ("", "RUNTIME\\[:DTYPE\\]")])
def test_a_bad_baseline_is_a_plan_error_naming_the_fix(bad, match):
    with pytest.raises(PlanError, match=match):
        plan_from_dict({"models": ["tiny-bert"], "baseline": bad, "recipes": [{"method": "dense"}]})


def test_cli_bad_baseline_is_one_line_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--model", "tiny-bert", "--baseline", "nope:float32",
                           "--out", str(tmp_path / "r")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "unknown runtime 'nope'" in proc.stderr.strip().splitlines()[-1]


# -- dtypes on CPU ---------------------------------------------------------------------------------------

def test_bf16_on_a_cpu_without_the_flag_is_skipped_with_the_reason(session, monkeypatch):
    case = Case("tiny-bert", HEADS, "torch-dense", dtype="bfloat16", baseline_dtype="float32")
    _flags(monkeypatch, "avx", "avx2", "fma")
    reason = session.unavailable(case)
    assert "bfloat16" in reason and "avx512_bf16 or amx_bf16" in reason and "avx2" in reason
    _flags(monkeypatch, "avx2", "avx512f", "avx512_bf16")
    assert session.unavailable(case) is None
    _flags(monkeypatch, "avx2", "amx_tile", "amx_bf16")
    assert session.unavailable(case) is None


def test_fp16_needs_native_fp16_and_a_half_baseline_is_judged_too(session, monkeypatch):
    _flags(monkeypatch, "avx2", "avx512_bf16")
    fp16 = Case("tiny-bert", HEADS, "torch-dense", dtype="float16")
    assert "avx512_fp16 or amx_fp16" in session.unavailable(fp16)
    fp32_vs_bf16 = Case("tiny-bert", HEADS, "torch-dense", baseline_dtype="bfloat16")
    _flags(monkeypatch, "avx2")
    assert "its baseline" in session.unavailable(fp32_vs_bf16)
    assert session.unavailable(Case("tiny-bert", HEADS, "torch-dense")) is None
    monkeypatch.setenv("PRUNEBENCH_FORCE_DTYPES", "1")
    assert session.unavailable(fp16) is None


# -- int8: the quality-floor gate ---------------------------------------------------------------------------

def _zero_linears(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.zero_()
    return model


def _int8_case(runtime: str) -> Case:
    return Case("tiny-bert", PruneRecipe("global-l1", 0.5), runtime, batch=2, seq_len=16, threads=1)


@pytest.fixture
def layers_matter(monkeypatch):
    """tiny-bert with its Linear weights x10: at random init (std 0.02) the residual stream drowns the layers,
    so even zeroed weights keep a pooled cosine of 0.9998; scaled, zeroed weights give ~0.23 and int8 ~0.9998."""
    import copy

    from bench import variants

    loaded = copy.copy(load_model("tiny-bert"))
    loaded.model = copy.deepcopy(loaded.model)
    with torch.no_grad():
        for m in loaded.model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(10)
    monkeypatch.setitem(variants._MODELS, "tiny-bert", loaded)


@pytest.mark.parametrize("runtime", ["torch-int8", "onnxruntime-int8"])
def test_int8_passes_its_quality_floor_and_records_the_cosine(session, layers_matter, runtime):
    case = _int8_case(runtime)
    if session.unavailable(case):
        pytest.skip(session.unavailable(case))
    rec = Record()
    session.describe(case, rec)
    session.run(case, rec)
    assert rec.tolerance is None and rec.quality_floor == get_runtime(runtime).quality_floor == 0.9
    assert 0.9 <= rec.gate_cosine <= 1.0 and rec.max_abs_diff > 0  # int8 is not exact, and passes on the floor
    assert rec.latency_ratio is not None and rec.baseline == "tiny-bert/dense@0.00/torch-dense/cpu/b2s16"


def test_torch_int8_with_weights_zeroed_fails_with_the_number(session, layers_matter, monkeypatch):
    from bench.runtimes import torch_int8

    real = torch_int8.quantize
    monkeypatch.setattr(torch_int8, "quantize", lambda model: real(_zero_linears(model)))
    case = _int8_case("torch-int8")
    rec = Record()
    session.describe(case, rec)
    with pytest.raises(EqualityError, match=r"pooled cosine to fp32 torch-masked 0\.\d+ < 0\.9"):
        session.run(case, rec)
    assert rec.gate_cosine < 0.9 and rec.latency_ratio is None


def test_onnxruntime_int8_with_weights_zeroed_fails_with_the_number(session, layers_matter, monkeypatch):
    if get_runtime("onnxruntime-int8").unavailable("cpu"):
        pytest.skip(get_runtime("onnxruntime-int8").unavailable("cpu"))
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from bench.runtimes import onnx_int8

    real = onnx_int8.quantize_file

    def broken(src, dst):
        real(src, dst)
        model = onnx.load(str(dst))
        for init in model.graph.initializer:
            if init.data_type == onnx.TensorProto.INT8:  # the quantized weights
                init.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(init)), init.name))
        onnx.save(model, str(dst))
        return dst

    monkeypatch.setattr(onnx_int8, "quantize_file", broken)
    case = _int8_case("onnxruntime-int8")
    rec = Record()
    session.describe(case, rec)
    with pytest.raises(EqualityError, match=r"onnxruntime-int8 outputs fall below its quality floor: pooled cosine .* < 0\.9"):
        session.run(case, rec)


def test_the_gate_judges_pooled_cosine_not_elementwise_for_quantizing_runtimes():
    ref = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 4, dtype=torch.long)
    int8 = get_runtime("torch-int8")
    assert equality_gate(int8, "torch-int8", "float32", ref + 0.01, ref, mask).error is None
    assert "0.9" in equality_gate(int8, "torch-int8", "float32", -ref, ref, mask).error
    dense = get_runtime("torch-dense")
    assert "max abs diff" in equality_gate(dense, "torch-dense", "float32", ref + 0.01, ref, mask).error


# -- torch-compile ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_torch_compile_matches_torch_and_records_its_compile_time(session, tmp_path):
    rt = get_runtime("torch-compile")
    if rt.unavailable("cpu"):
        pytest.skip(rt.unavailable("cpu"))
    loaded = load_model("tiny-bert")
    inputs = loaded.batch(2, 16)
    variant = Variant(loaded, HEADS, inputs)
    torch.set_num_threads(1)
    runner = rt.prepare(variant, tmp_path, "cpu")
    with torch.inference_mode():
        ref = variant.masked()(**inputs).last_hidden_state
    gate = equality_gate(rt, rt.name, "float32", runner.outputs(), ref, inputs["attention_mask"])
    assert gate.error is None and gate.max_abs_diff <= 1e-4
    assert runner.record["compile_s"] > 0 and "inductor" in runner.info
    assert runner.model is not None and not hasattr(runner.model, "_orig_mod")  # counts run on the plain encoder


def test_torch_compile_failure_says_why(tmp_path, monkeypatch):
    class Refuses(torch.nn.Module):
        def forward(self, **inputs):
            raise RuntimeError("planted: inductor cannot lower this graph\nmore detail")

    def refuses(model, **kw):
        return Refuses()

    monkeypatch.setattr(torch, "compile", refuses)
    loaded = load_model("tiny-bert")
    with pytest.raises(RuntimeError, match="torch.compile failed \\(RuntimeError: planted: inductor cannot lower this graph\\)"):
        get_runtime("torch-compile").prepare(Variant(loaded, PruneRecipe("dense"), loaded.batch(1, 8)), tmp_path, "cpu")


# -- OpenVINO (optional extra) ------------------------------------------------------------------------------------

@pytest.mark.parametrize("runtime", ["openvino", "openvino-sparse-int8"])
def test_openvino_absent_is_skipped_with_the_install_hint(session, monkeypatch, runtime):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    reason = session.unavailable(Case("tiny-bert", PruneRecipe("dense"), runtime))
    assert "openvino" in reason and "pip install 'prunebench[openvino]'" in reason


def test_openvino_sparse_int8_without_amx_is_skipped_with_the_reason(monkeypatch):
    if importlib.util.find_spec("openvino") is None:
        pytest.skip("openvino is not installed")
    rt = get_runtime("openvino-sparse-int8")
    _flags(monkeypatch, "avx2", "avx512f", "avx512_vnni")
    assert "needs AMX (amx_int8 and amx_tile)" in rt.unavailable("cpu") and "avx512_vnni" in rt.unavailable("cpu")
    _flags(monkeypatch, "avx2", "amx_tile", "amx_int8", "amx_bf16")
    assert rt.unavailable("cpu") is None


@pytest.mark.parametrize("runtime", ["openvino", "openvino-sparse-int8"])
def test_openvino_runs_the_variant_within_its_gate(tmp_path, runtime):
    """Both paths run on any CPU (without AMX the plugin ignores the sparse-weights property); the engine
    skips openvino-sparse-int8 there, so its figures are never recorded as sparse ones."""
    if importlib.util.find_spec("openvino") is None:
        pytest.skip("openvino is not installed")
    rt = get_runtime(runtime)
    loaded = load_model("tiny-bert")
    inputs = loaded.batch(2, 16)
    variant = Variant(loaded, PruneRecipe("global-l1", 0.5), inputs)
    torch.set_num_threads(1)
    runner = rt.prepare(variant, tmp_path, "cpu")
    with torch.inference_mode():
        ref = variant.masked()(**inputs).last_hidden_state
    gate = equality_gate(rt, runtime, "float32", runner.outputs(), ref, inputs["attention_mask"])
    assert gate.error is None, gate.error
    assert (runner.artifact / "model.xml").is_file() and runner.artifact_bytes() > 0
    assert "INFERENCE_PRECISION_HINT=f32" in runner.info
    if runtime == "openvino-sparse-int8":
        assert "CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE=0.5" in runner.info


# -- the report section ------------------------------------------------------------------------------------------

def _row(recipe, runtime, dtype, ratio, cosine, status="ok", reason=None):
    return {"case_id": f"m/{recipe}/{runtime}/{dtype}", "status": status, "reason": reason, "model": "m",
            "method": recipe.split("@")[0], "recipe": recipe, "runtime": runtime, "dtype": dtype,
            "device": "cpu", "batch": 8, "seq_len": 128, "baseline_runtime": "torch-dense", "baseline_dtype": "float32",
            "latency_ratio": ratio, "latency_ratio_lo": None if ratio is None else ratio * 0.95,
            "latency_ratio_hi": None if ratio is None else ratio * 1.05, "quality_cosine": cosine,
            "size_bytes": 90_000_000, "peak_mem_mb": 400.0}


def test_alternatives_section_sorts_by_speed_and_states_a_verdict_from_the_rows(tmp_path):
    from bench.report import frame
    from bench.report.alternatives import PLOT, rows, section
    from bench.report.plots import save
    from bench.report.section_plots import alternatives_plot

    recs = [_row("dense@0.00", "torch-dense", "float32", 1.0, 1.0),
            _row("dense@0.00", "torch-int8", "float32", 0.6, 0.97),
            _row("dense@0.00", "onnxruntime", "float32", 0.8, 1.0),
            _row("heads+ffn@0.25", "torch-dense", "float32", 0.7, 0.995),
            _row("heads+ffn@0.50", "torch-dense", "float32", 0.5, 0.6),
            _row("dense@0.00", "torch-dense", "bfloat16", None, None, "skipped", "bfloat16 ... needs avx512_bf16")]
    lines = section(frame(recs), f"plots/{PLOT}")
    text = "\n".join(lines)
    assert lines[0] == "## Pruning and its alternatives on this machine"
    assert ("**Verdict:** Fastest at a cosine to dense of at least 0.99 on this machine: heads+ffn@0.25 · torch-dense · "
            "float32, 1.43x dense fp32 torch eager (95% CI [1.36, 1.50]) — a pruned variant.") in text
    order = [ln.split("|")[1].strip() + "/" + ln.split("|")[2].strip() for ln in text.splitlines() if ln.startswith("| ") and "@" in ln]
    assert order == ["heads+ffn@0.50/torch-dense", "dense@0.00/torch-int8", "heads+ffn@0.25/torch-dense",
                     "dense@0.00/onnxruntime", "dense@0.00/torch-dense"]
    assert "dense@0.00 · torch-dense · bfloat16: skipped: bfloat16 ... needs avx512_bf16" in text
    failed = {**_row("dense@0.00", "openvino", "float32", None, None, "failed"), "error": "Error: no such file"}
    assert "dense@0.00 · openvino · float32: failed: Error: no such file" in "\n".join(section(frame(recs + [failed])))
    assert "![Pruning and its alternatives: speedup vs quality](plots/alternatives_pareto.png)" in text
    assert save(alternatives_plot(rows(frame(recs))), tmp_path / "plots" / PLOT).stat().st_size > 0
    recs[3]["quality_cosine"] = 0.9
    worse = section(frame(recs))[4]
    assert "dense@0.00 · onnxruntime · float32, 1.25x" in worse and "no pruned variant keeps that quality" in worse
    assert rows(frame([r for r in recs if r["runtime"] == "torch-dense" and r["dtype"] == "float32"])).empty


@pytest.mark.slow
def test_alternatives_plan_runs_end_to_end_ok_or_skipped_with_a_reason(tmp_path):
    """The plan's dense and stacked rows without the compiler (a minute per case here), on the tiny model and a
    small shape: every row ok or skipped with a reason, every baseline dense fp32 torch, the section rendered."""
    import tomllib

    from bench.cli import main

    d = tomllib.loads((ROOT / "bench/plans/alternatives.toml").read_text())
    stacked = next(r for r in d["recipes"] if r["method"] == "heads+ffn" and r.get("dtype") == ["bfloat16"] and "recover" not in r)
    keep = [r for r in d["recipes"] if r["method"] == "dense"] + [{**stacked, "sparsity": [0.25]}]
    lines = [f"{k} = {json.dumps(v)}" for k, v in d.items() if k not in ("recipes", "runtimes", "models")]
    lines += ['models = ["tiny-bert"]', f"runtimes = {json.dumps([r for r in d['runtimes'] if r != 'torch-compile'])}"]
    for r in keep:
        lines += ["[[recipes]]"] + [f"{k} = {json.dumps([x for x in v if x != 'torch-compile'] if k == 'runtimes' else v)}"
                                    for k, v in r.items()]
    plan = tmp_path / "alt.toml"
    plan.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    assert main(["run", "--plan", str(plan), "--batch", "2", "--seq-len", "16", "--threads", "1", "--time-cap", "0.3",
                 "--no-memory", "--out", str(out)]) == 0  # in process: the process boundary is test_cli's
    recs = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert len(recs) == 15 and {r["method"] for r in recs} == {"dense", "heads+ffn"}
    assert all(r["status"] == "ok" or (r["status"] == "skipped" and r["reason"]) for r in recs), [r["error"] for r in recs]
    assert all(r["baseline"] == "tiny-bert/dense@0.00/torch-dense/cpu/b2s16" for r in recs)
    assert "## Pruning and its alternatives on this machine" in (out / "report.md").read_text()


def test_alternatives_verdict_uses_the_task_drop_where_rows_have_one(tmp_path):
    """With recall@1 and its paired drop on the rows, "still good" is a drop of at most 2 points vs dense fp32
    (not a cosine): a faster row with a 3-point drop loses to a slower one with a 1-point drop, and the table
    shows the change with its CI."""
    from bench.report import frame
    from bench.report.alternatives import PLOT, rows, section
    from bench.report.plots import save
    from bench.report.section_plots import alternatives_plot

    def task(row, r1, drop):
        return {**row, "quality_r1": r1, "quality_r1_drop": drop, "quality_r1_drop_lo": drop - 0.02,
                "quality_r1_drop_hi": drop + 0.02}

    recs = [task(_row("dense@0.00", "torch-dense", "float32", 1.0, 1.0), 0.86, 0.0),
            task(_row("dense@0.00", "torch-int8", "float32", 0.6, 0.999), 0.83, 0.03),
            task(_row("heads+ffn@0.25", "torch-dense", "float32", 0.7, 0.95), 0.85, 0.01)]
    text = "\n".join(section(frame(recs)))
    assert ("**Verdict:** Fastest at a R@1 drop of at most 2 points vs dense fp32 on this machine: heads+ffn@0.25 · "
            "torch-dense · float32, 1.43x") in text
    assert "0.830 (Δ -0.030 [-0.050, -0.010])" in text and "R@1 (Δ vs dense fp32 [CI])" in text
    assert save(alternatives_plot(rows(frame(recs))), tmp_path / "plots" / PLOT).stat().st_size > 0


def test_alternatives_section_states_prunebench_best_against_the_peers_best_at_equal_quality():
    """The peer's rows (st-*) take part in the quality bar like any row; the line compares the two fastest
    still-good rows as one ratio, and a fast peer row below the bar does not count."""
    from bench.report import frame
    from bench.report.alternatives import section

    recs = [_row("dense@0.00", "torch-dense", "float32", 1.0, 1.0),
            _row("layers@0.50", "torch-dense", "float32", 0.4, 0.995),
            _row("dense@0.00", "st-onnx", "float32", 0.8, 1.0),
            _row("dense@0.00", "st-onnx-qint8", "float32", 0.3, 0.95)]  # faster, but below the cosine bar
    text = "\n".join(section(frame(recs)))
    assert ("prunebench's fastest, layers@0.50 · torch-dense · float32 (0.40), takes 0.50x [0.45, 0.55] the time of "
            "the peer's fastest, dense@0.00 · st-onnx · float32 (0.80): 2.00x faster") in text
    none = "\n".join(section(frame(recs[:2])))
    assert "Against the peer" not in none
    lost = "\n".join(section(frame([recs[0], _row("dense@0.00", "st-onnx", "float32", 0.8, 0.5), recs[1]])))
    assert "no row of sentence-transformers' own backends kept" in lost
