"""Sparse-format runtimes (torch-csr, torch-bsr, torch-semi24, onnxruntime): every method x runtime pair
passes the equality gate or is skipped with a reason; ORT export keeps token_type_ids; artifacts are
each runtime's own format; unavailable reasons without CUDA; the gate fails a mismatching case."""

import json
from pathlib import Path

import pytest
import torch

from bench.engine import EqualityError, Session
from bench.plan import Case, Plan, PlanError, load_plan, plan_from_dict
from bench.runtimes import RUNTIMES, get_runtime
from bench.runtimes.base import HALF_TOLERANCE, Variant, equality_gate
from bench.models import load_model
from bench.variants import build_runner
from pruning import METHODS, PruneRecipe, discover, method_spec

method_spec("dense")  # load every method module so METHODS is complete at collection
ROOT = Path(__file__).resolve().parents[1]
SPARSE_FORMATS = ["torch-csr", "torch-bsr", "torch-semi24", "onnxruntime", "onnxruntime-vs-torch"]


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """build_runner sets torch's thread count per case: give other tests back the one they had."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    case = Case("tiny-bert", PruneRecipe("dense"), "torch-dense", batch=2, seq_len=16, threads=1)
    s = Session(Plan((case,), memory=False, quality=False), tmp_path_factory.mktemp("run"), "test")
    yield s
    s.close()


# Why a case may be skipped on a machine, by runtime: a phrase its reason must contain (a missing GPU, package, CPU
# feature or kernel). A runtime not listed here runs everywhere, so a skip of one is a failure; any runtime may skip
# a method whose optional package is missing.
SKIP_CAUSES = {
    "torch-semi24": ("needs a CUDA GPU", "needs compute capability", "runs float16 or bfloat16", "runs 2:4 weights only"),
    "onnxruntime": ("package is not installed",),
    "onnxruntime-int8": ("package is not installed",),
    "torch-int8": ("no x86/fbgemm quantized engine",),
    "openvino": ("needs the optional openvino package", "converts the ONNX export and needs"),
    "openvino-sparse-int8": ("needs the optional openvino package", "converts the ONNX export and needs", "needs AMX"),
    "openvino-auto": ("needs the optional openvino package", "converts the ONNX export and needs"),
    "openvino-int8": ("needs the optional openvino package", "converts the ONNX export and needs", "optional nncf package"),
}


def _skip_for_a_known_cause(case: Case, reason: str) -> None:
    """Skip ``case`` after checking that its reason is one line naming a cause this runtime (or method) can have."""
    package = case.recipe.spec.requires
    known = SKIP_CAUSES.get(case.runtime, ()) + ((f"needs the optional package {package!r}",) if package else ())
    assert "\n" not in reason and any(cause in reason for cause in known), f"{case.case_id} skipped: {reason}"
    pytest.skip(reason)


def _gate(session: Session, case: Case, workdir: Path) -> tuple[float, float]:
    """What the engine does before timing: the case's outputs vs torch-masked, and the allowed diff."""
    reason = session.unavailable(case)
    if reason is not None:
        _skip_for_a_known_cause(case, reason)
    runner = build_runner(case, workdir)
    ref = session.reference(case)
    out = runner.outputs()
    assert out.shape == ref.shape
    return float((out - ref).abs().max()), get_runtime(case.runtime).tolerance(case.dtype, ref)


# the runtimes of the alternatives issue (int8, OpenVINO) run a few methods each (each prepare takes seconds);
# torch-compile (a minute of compiling per case here) has its own tests in test_alternatives.py, and the peer's
# st-* runtimes (dense only, run in the peer's own venv) theirs in test_peer.py
ALTERNATIVES = {"onnxruntime-int8", "torch-int8", "openvino", "openvino-sparse-int8", "openvino-auto", "openvino-int8"}
PEER = {rt for rt in RUNTIMES if rt.startswith("st-")}
MATRIX = [("tiny-bert", m, rt) for m in sorted(METHODS) for rt in RUNTIMES if rt not in ALTERNATIVES | PEER | {"torch-compile"}]
MATRIX += [("tiny-bert", m, rt) for m in ("dense", "global-l1", "heads+ffn") for rt in sorted(ALTERNATIVES)]
MATRIX += [(model, m, rt) for model in ("tiny-distilbert", "tiny-roberta") for m in ("global-l1", "2:4") for rt in SPARSE_FORMATS]


@pytest.mark.parametrize("model,method,runtime", MATRIX, ids=[f"{a}/{b}/{c}" for a, b, c in MATRIX])
def test_every_method_runtime_pair_passes_equality_or_is_skipped_with_reason(session, tiny_models, tmp_path, model, method,
                                                                            runtime):
    case = Case(model, PruneRecipe(method, 0.0 if method == "dense" else 0.5), runtime, batch=2, seq_len=16, threads=1)
    reason = session.unavailable(case)
    if reason is not None:
        _skip_for_a_known_cause(case, reason)
    ref = session.reference(case)
    runner = build_runner(case, tmp_path)
    mask = tiny_models[model].batch(2, 16)["attention_mask"]  # the case's fixed batch (seeded: the same on every load)
    # judged in the dtype the runner computes in (openvino-auto: the plugin's default, bf16 where the CPU has it)
    gate = equality_gate(get_runtime(case.runtime), case.runtime, runner.computes or case.dtype, runner.outputs(), ref, mask)
    assert gate.error is None, f"{case.case_id}: {gate.error}"


@pytest.mark.parametrize("runtime", ["torch-csr", "torch-bsr", "onnxruntime"])
def test_fp32_sparse_format_gate_refuses_outputs_off_by_2e4(runtime):
    """A sparse format or an export that computes another function by 2e-4 is caught before timing (the fp32
    gate of these runtimes allows at most 1e-4); an output off by 1e-6 (fp32 summation order) passes."""
    rt, ref = get_runtime(runtime), torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 4, dtype=torch.long)
    assert "outputs differ from torch-masked" in equality_gate(rt, runtime, "float32", ref + 2e-4, ref, mask).error
    assert equality_gate(rt, runtime, "float32", ref + 1e-6, ref, mask).error is None


def test_half_precision_tolerance_scales_with_the_reference():
    ref = torch.tensor([[-4.0, 2.0]])
    assert get_runtime("torch-semi24").tolerance("float16", ref) == pytest.approx(HALF_TOLERANCE["float16"] * 4.0)
    assert get_runtime("torch-csr").tolerance("float32", ref) == 1e-4


def test_torch_dense_in_half_precision_passes_the_half_tolerance(session, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEBENCH_FORCE_DTYPES", "1")  # numerics only: run bf16 even on a CPU without bf16 kernels
    case = Case("tiny-bert", PruneRecipe("2:4"), "torch-dense", batch=2, seq_len=16, threads=1, dtype="bfloat16")
    diff, tol = _gate(session, case, tmp_path)
    assert 0 < diff <= tol


@pytest.mark.parametrize("name", ["torch-csr", "torch-bsr", "torch-semi24", "onnxruntime", "onnxruntime-vs-torch"])
def test_runtime_modules_are_registered_with_their_baseline(name):
    if name in RUNTIMES:
        rt = get_runtime(name)
        assert rt.name == name and rt.help
    base = Case("tiny-bert", PruneRecipe("global-l1", 0.5), name).baseline
    expected = "onnxruntime" if name == "onnxruntime" else "torch-dense"
    assert base.runtime == expected and base.recipe.method == "dense"


def test_semi24_says_why_it_cannot_run_without_cuda():
    rt = get_runtime("torch-semi24")
    assert "CUDA" in rt.unavailable("cpu") and "use device cuda" in rt.unavailable("cpu")
    if not torch.cuda.is_available():
        assert "CUDA is not available" in rt.unavailable("cuda")
    fp32 = Case("tiny-bert", PruneRecipe("2:4"), "torch-semi24", device="cpu")
    assert "float16 or bfloat16" in rt.incompatible(fp32)
    unstructured = Case("tiny-bert", PruneRecipe("global-l1", 0.5), "torch-semi24", dtype="float16")
    assert "2:4 weights only" in rt.incompatible(unstructured)
    assert rt.incompatible(Case("tiny-bert", PruneRecipe("2:4"), "torch-semi24", dtype="float16")) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the reason given when CUDA is absent")
def test_semi24_prepare_refuses_without_cuda(tmp_path):
    from bench.runtimes import RuntimeUnavailable

    loaded = load_model("tiny-bert")
    with pytest.raises(RuntimeUnavailable, match="CUDA"):
        get_runtime("torch-semi24").prepare(Variant(loaded, PruneRecipe("2:4"), loaded.batch(2, 16), "float16"), tmp_path, "cuda")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_semi24_passes_the_half_precision_gate_on_a_capable_gpu(session, tmp_path, dtype):
    reason = get_runtime("torch-semi24").unavailable("cuda")
    if reason:
        pytest.skip(reason)
    case = Case("tiny-bert", PruneRecipe("2:4"), "torch-semi24", device="cuda", batch=2, seq_len=16, threads=1, dtype=dtype)
    diff, tol = _gate(session, case, tmp_path)
    assert diff <= tol


@pytest.mark.parametrize("runtime", ["torch-csr", "torch-bsr", "onnxruntime"])
def test_float32_only_runtimes_skip_half_precision_with_reason(runtime):
    case = Case("tiny-bert", PruneRecipe("global-l1", 0.5), runtime, dtype="float16")
    assert "float32" in get_runtime(runtime).incompatible(case)


# -- ONNX Runtime ------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["tiny-bert", "tiny-roberta", "tiny-distilbert"])
def test_ort_keeps_token_type_ids_as_input_and_matches_torch_at_another_shape(tmp_path, model):
    loaded = load_model(model)
    variant = Variant(loaded, PruneRecipe("global-l1", 0.5), loaded.batch(2, 16))
    runner = get_runtime("onnxruntime").prepare(variant, tmp_path, "cpu")
    takes_types = "token_type_ids" in variant.inputs
    assert ("token_type_ids" in runner.input_names) == takes_types
    other = loaded.batch(3, 9, seed=1)  # shape differs from the export's
    if takes_types and loaded.config.type_vocab_size > 1:
        other["token_type_ids"][:, 5:] = 1  # would be ignored (wrong output) if the export had baked zeros in
    with torch.inference_mode():
        ref = variant.baked()(**other).last_hidden_state
    assert (runner.outputs(other) - ref).abs().max() <= 1e-4


def test_ort_export_puts_a_training_mode_model_in_eval_mode(tmp_path):
    from bench.runtimes.onnx_runtime import OrtRunner, export

    loaded = load_model("tiny-bert")  # dropout 0.1: a training-mode export would not match
    x = loaded.batch(2, 16)
    path = export(loaded.fresh().train(), x, tmp_path / "m.onnx")
    with torch.inference_mode():
        ref = loaded.model(**x).last_hidden_state
    assert (OrtRunner(path, x, "cpu", 1).outputs() - ref).abs().max() <= 1e-4


def test_ort_session_uses_all_graph_optimisations_and_the_case_threads(tmp_path):
    import onnxruntime as ort

    loaded = load_model("tiny-bert")
    torch.set_num_threads(2)
    runner = get_runtime("onnxruntime").prepare(Variant(loaded, PruneRecipe("dense"), loaded.batch(2, 16)), tmp_path, "cpu")
    opts = runner.session.get_session_options()
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert opts.intra_op_num_threads == 2
    assert runner.session.get_providers() == ["CPUExecutionProvider"]
    assert runner.artifact.suffix == ".onnx" and runner.artifact_bytes() > 0


# -- torch-csr / torch-bsr ---------------------------------------------------------------------------

@pytest.mark.parametrize("runtime,layout", [("torch-csr", torch.sparse_csr), ("torch-bsr", torch.sparse_bsr)])
def test_sparse_artifact_holds_sparse_encoder_weights_and_shrinks_at_high_sparsity(tmp_path, runtime, layout):
    loaded = load_model("tiny-bert")
    variant = Variant(loaded, PruneRecipe("global-l1", 0.95), loaded.batch(2, 16))
    runner = get_runtime(runtime).prepare(variant, tmp_path, "cpu")
    state = torch.load(runner.artifact, weights_only=False)
    sparse = {k: v for k, v in state.items() if v.layout == layout}
    assert len(sparse) == len(discover(loaded.model).linears())
    assert all(v.col_indices().dtype == torch.int32 for v in sparse.values())
    dense_linear = sum(lin.weight.numel() * 4 for lin in discover(loaded.model).linears())
    sparse_bytes = sum(v.values().numel() * 4 + v.col_indices().numel() * 4 + v.crow_indices().numel() * 4 for v in sparse.values())
    if runtime == "torch-csr":
        assert sparse_bytes < 0.2 * dense_linear
    else:  # unstructured zeros rarely empty a whole 32x32 block: BSR stores nearly every block
        assert sparse_bytes > 0.5 * dense_linear


def test_bsr_block_comes_from_the_environment_and_falls_back_to_a_common_divisor(tmp_path, monkeypatch):
    loaded = load_model("tiny-bert")  # Linear dims 32 and 64
    variant = Variant(loaded, PruneRecipe("global-l1", 0.5), loaded.batch(2, 16))
    monkeypatch.setenv("PRUNEBENCH_BSR_BLOCK", "48")
    runner = get_runtime("torch-bsr").prepare(variant, tmp_path, "cpu")
    assert "block=16" in runner.info
    with torch.inference_mode():
        ref = variant.masked()(**variant.inputs).last_hidden_state
    assert (runner.outputs() - ref).abs().max() <= 1e-4
    monkeypatch.setenv("PRUNEBENCH_BSR_BLOCK", "big")
    with pytest.raises(ValueError, match="PRUNEBENCH_BSR_BLOCK"):
        get_runtime("torch-bsr").prepare(variant, tmp_path, "cpu")


def test_equality_gate_fails_the_case_with_the_numbers(session, tmp_path, monkeypatch):
    csr = get_runtime("torch-csr")
    real = csr.prepare

    def off_by_a_bit(variant, workdir, device):
        runner = real(variant, workdir, device)
        linear = runner.net.encoder.layer[0].output.dense
        linear.bias[0] += 1e-2  # one feature: LayerNorm cancels a shift of all of them
        return runner

    monkeypatch.setattr(csr, "prepare", off_by_a_bit)
    from bench.records import Record

    case = Case("tiny-bert", PruneRecipe("global-l1", 0.5), "torch-csr", batch=2, seq_len=16, threads=1)
    rec = Record()
    session.describe(case, rec)
    with pytest.raises(EqualityError, match=r"max abs diff [0-9.e-]+ > tolerance 0\.0001"):
        session.run(case, rec)
    assert rec.max_abs_diff > 1e-4 and rec.latency_ratio is None


# -- plans -------------------------------------------------------------------------------------------

def test_sweep_plan_covers_sparse_runtimes_dense_ort_vs_torch_and_24_on_cuda_in_fp16():
    plan = load_plan(ROOT / "bench/plans/sweep.toml")
    by_rt: dict[str, list[Case]] = {}
    for c in plan.cases:
        by_rt.setdefault(c.runtime, []).append(c)
    for rt in ("torch-csr", "torch-bsr", "onnxruntime"):
        own = [c for c in by_rt[rt] if c.baseline_runtime is None]
        assert sorted(c.recipe.sparsity for c in own) == [0.5, 0.7, 0.8, 0.9, 0.95, 0.99]
        assert {c.device for c in by_rt[rt]} == {"cpu"}
    (vs,) = [c for c in by_rt["onnxruntime"] if c.baseline_runtime is not None]
    assert vs.recipe.method == "dense" and vs.baseline.runtime == "torch-dense"
    assert vs.case_id.endswith("/vs-torch-dense-float32")
    (semi,) = by_rt["torch-semi24"]
    assert (semi.recipe.method, semi.device, semi.dtype) == ("2:4", "cuda", "float16")
    assert semi.baseline.dtype == "float16" and semi.baseline.runtime == "torch-dense"


def test_recipe_dtype_must_be_a_known_dtype():
    with pytest.raises(PlanError, match="dtype"):
        plan_from_dict({"models": ["tiny-bert"], "runtimes": ["torch-dense"], "recipes": [{"method": "2:4", "dtype": "float8"}]})


def test_cli_run_records_each_format_and_reports_break_even(tmp_path):
    from bench.cli import main

    out = tmp_path / "run"
    assert main(["run", "--model", "tiny-bert", "--methods", "global-l1", "--sparsity", "0.5,0.9", "--runtimes",
                 "torch-csr,onnxruntime,torch-semi24", "--batch", "2", "--seq-len", "16", "--threads", "1", "--time-cap", "0.3",
                 "--no-memory", "--out", str(out)]) == 0  # in process: the process boundary is test_cli's
    recs = {r["case_id"]: r for r in map(json.loads, (out / "records.jsonl").read_text().splitlines())}
    assert len(recs) == 6
    for cid, r in recs.items():
        if r["runtime"] == "torch-semi24":
            assert r["status"] == "skipped" and "CUDA" in r["reason"]
            continue
        assert r["status"] == "ok", r["error"]
        assert r["max_abs_diff"] <= 1e-4 and r["runtime_info"]
        assert r["size_safetensors_ratio"] == pytest.approx(r["size_bytes"] / r["dense_safetensors_bytes"])
    assert recs["tiny-bert/global-l1@0.90/torch-csr/cpu/b2s16"]["size_ratio"] < 1.0  # vs the dense safetensors
    report = (out / "report.md").read_text()
    assert "## Break-even sparsity" in report
    assert list((out / "plots").glob("breakeven-tiny-bert-cpu-b2s16.png"))


def test_fp32_gate_allows_twice_the_references_own_rounding_error_and_says_so():
    """A recovered model's larger sums round more: the fp32 gate scales the runtime's tolerance by the
    reference's fp32-vs-float64 error over ROUNDING_REF (5e-6), never below the runtime's own tolerance, and a
    diff beyond it still fails with the numbers."""
    rt = get_runtime("torch-dense")
    ref, mask = torch.zeros(1, 4, 3), torch.ones(1, 4, dtype=torch.long)
    out = ref + 5e-5
    assert equality_gate(rt, "torch-dense", "float32", out, ref, mask).error  # 5e-5 > 1e-5
    widened = equality_gate(rt, "torch-dense", "float32", out, ref, mask, rounding=4e-5)
    assert widened.error is None and widened.tolerance == pytest.approx(8e-5)
    failed = equality_gate(rt, "torch-dense", "float32", ref + 1e-4, ref, mask, rounding=4e-5)
    assert "fp32 rounding error 4e-05 vs float64 / 5e-06" in failed.error and failed.tolerance == pytest.approx(8e-5)
    ort = equality_gate(get_runtime("onnxruntime"), "onnxruntime", "float32", ref + 5e-4, ref, mask, rounding=4e-5)
    assert ort.error is None and ort.tolerance == pytest.approx(8e-4)  # 1e-4 x 8
    assert equality_gate(rt, "torch-dense", "float32", out, ref, mask, rounding=1e-7).tolerance == 1e-5
    half = equality_gate(rt, "torch-dense", "bfloat16", out, ref + 1, mask, rounding=4e-5)  # half: relative x 8
    assert half.tolerance == pytest.approx(HALF_TOLERANCE["bfloat16"] * 1.0 * 8)


def test_reference_rounding_is_measured_in_float64_without_touching_the_cached_masked_model(session):
    case = Case("tiny-bert", PruneRecipe("heads+ffn", 0.5), "torch-dense", batch=2, seq_len=16, threads=1)
    rounding = session.reference_rounding(case)
    masked = session.masked(case.model, case.recipe)
    assert all(p.dtype == torch.float32 for p in masked.parameters())
    inputs = load_model("tiny-bert").batch(2, 16)
    with torch.inference_mode():
        wide = masked.double()(**inputs).last_hidden_state
    masked.float()
    assert rounding == pytest.approx(float((session.reference(case).double() - wide).abs().max()), rel=1e-6)
    assert 0 < rounding < 1e-5


def test_case_workdirs_hold_no_character_a_tool_splits_on_and_stay_distinct(session):
    """OpenVINO's convert_model split ``.../heads+ffn[fisher,lstsq]@0.25...`` at the comma and failed the case."""
    a = Case("tiny-bert", PruneRecipe("heads+ffn", 0.25, importance="fisher", recover="lstsq"), "openvino", batch=2, seq_len=16)
    b = Case("tiny-bert", PruneRecipe("heads+ffn", 0.25, importance="fisher"), "openvino", batch=2, seq_len=16)
    da, db = session.workdir(a), session.workdir(b)
    assert da.is_dir() and da != db
    assert not set(",[] ") & set(da.name), da.name
