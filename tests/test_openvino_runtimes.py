"""OpenVINO as users run it: openvino-auto (the CPU plugin at its default precision) names the precision the
plugin chose and is gated by that precision's rule (bf16 only where bf16 was chosen, forced through a patched
plugin answer so this runs on any CPU); openvino-int8 (NNCF static int8) hands NNCF the corpus's calibration
split and nothing quality is reported on (a planted quantizer fed report items is caught); both are skipped
with the install hint where openvino or nncf is missing."""

from __future__ import annotations

import importlib.util
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bench import env as benv
from bench import steps
from bench.data import corpus
from bench.engine import Session
from bench.models import load_model
from bench.plan import Case, Plan
from bench.runtimes import get_runtime
from bench.runtimes import openvino_fp32, openvino_int8
from bench.runtimes.base import HALF_TOLERANCE, ROUNDING_REF, Runner, Variant, equality_gate
from bench.runtimes.int8 import QUALITY_FLOOR
from bench.variants import ServedEncoder, unavailable
from pruning import PruneRecipe

HINT = "pip install 'prunebench[openvino]'"
needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino is not installed")


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-bert")


def _prepare(runtime: str, loaded, tmp_path, recipe: PruneRecipe | None = None):
    torch.set_num_threads(1)
    variant = Variant(loaded, recipe or PruneRecipe("global-l1", 0.5), loaded.batch(2, 16))
    return get_runtime(runtime).prepare(variant, tmp_path, "cpu"), variant


# -- openvino-auto: the precision the plugin chose, and the gate that follows it --------------------------------

@needs_openvino
@pytest.mark.parametrize("chosen,computes", [("bf16", "bfloat16"), ("f32", None)])
def test_openvino_auto_compiles_without_a_hint_and_names_the_precision_the_plugin_chose(tiny, tmp_path, monkeypatch,
                                                                                      chosen, computes):
    monkeypatch.setattr(openvino_fp32, "chosen_precision", lambda compiled: chosen)
    runner, _ = _prepare("openvino-auto", tiny, tmp_path)
    assert "INFERENCE_PRECISION_HINT" not in runner.config  # the plugin picks; the memory child compiles the same
    assert f"INFERENCE_PRECISION_HINT={chosen} (the plugin's default on this CPU)" in runner.info
    assert runner.computes == computes


@needs_openvino
def test_openvino_auto_reports_what_the_compiled_model_says(tiny, tmp_path):
    """Unpatched: the info names the compiled model's own INFERENCE_PRECISION_HINT, bf16 exactly where this CPU has
    bf16 instructions (OpenVINO's documented default), and the fixed openvino row stays f32."""
    runner, _ = _prepare("openvino-auto", tiny, tmp_path / "auto")
    actual = openvino_fp32.chosen_precision(runner.compiled)
    assert actual == ("bf16" if {"avx512_bf16", "amx_bf16"} & set(benv.cpu_flags()) else "f32")
    assert f"INFERENCE_PRECISION_HINT={actual} (the plugin's default" in runner.info
    fixed, _ = _prepare("openvino", tiny, tmp_path / "fixed")
    assert openvino_fp32.chosen_precision(fixed.compiled) == "f32" and fixed.computes is None


@needs_openvino
def test_openvino_auto_refuses_a_precision_it_has_no_rule_for(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(openvino_fp32, "chosen_precision", lambda compiled: "f8e4m3")
    with pytest.raises(RuntimeError, match="compiled in f8e4m3, a precision prunebench has no equality rule for"):
        _prepare("openvino-auto", tiny, tmp_path)


@pytest.fixture
def auto_session(tmp_path):
    case = Case("tiny-bert", PruneRecipe("dense"), "openvino-auto", batch=2, seq_len=16, threads=1)
    s = Session(Plan((case,), memory=False, quality=False), tmp_path / "run", "test")
    yield s, case
    s.close()


def test_openvino_auto_gate_uses_the_bf16_rule_only_where_the_plugin_chose_bf16(auto_session):
    """Outputs off by half the bf16 tolerance pass where the runner computes bf16 and fail the openvino row's fp32
    rule where it computes f32 (the case's dtype is float32 either way); twice the bf16 tolerance fails both."""
    session, case = auto_session
    ref, rounding = session.reference(case), session.reference_rounding(case)
    scale = rounding / ROUNDING_REF if rounding > ROUNDING_REF else 1.0
    bf16_tol = HALF_TOLERANCE["bfloat16"] * float(ref.abs().max()) * scale

    def gate(computes, off):
        out = ref.clone()
        out[0, 0, 0] += off
        built = SimpleNamespace(runner=SimpleNamespace(computes=computes, outputs=lambda: out))
        return steps.equality(session, case, built).gate

    bf16, f32 = gate("bfloat16", bf16_tol / 2), gate(None, bf16_tol / 2)
    assert case.dtype == "float32"
    assert bf16.error is None and bf16.tolerance == pytest.approx(bf16_tol)
    assert f32.tolerance == pytest.approx(1e-4 * scale) and "outputs differ from torch-masked" in f32.error
    assert "max abs diff" in gate("bfloat16", 2 * bf16_tol).error


@pytest.mark.parametrize("computes,served", [("bfloat16", True), (None, False)])
def test_quality_scores_what_the_runner_serves_where_it_chose_another_precision(auto_session, monkeypatch, computes, served):
    """A float32 case whose runner computes bf16 changes the numbers like a bf16 case: quality scores the runner's
    own outputs (ServedEncoder), not the fp32 variant; a runner that computes f32 shares the variant's score."""
    session, case = auto_session
    seen = {}

    def measure(dense, variant, net, *args, **kwargs):
        seen["net"] = net(variant)
        return "scored"

    monkeypatch.setattr(session, "_quality", SimpleNamespace(measure=measure))
    runner = Runner()
    runner.computes = computes
    assert session.quality(case, runner) == "scored"
    assert isinstance(seen["net"], ServedEncoder) == served
    assert (seen["net"].runner is runner) if served else True


# -- openvino-int8: NNCF on the calibration split only ------------------------------------------------------------

@pytest.fixture
def fake_nncf(monkeypatch):
    """An nncf module that records what ``quantize`` is handed and returns the model unchanged."""
    seen: dict = {}
    mod = types.ModuleType("nncf")
    mod.ModelType = SimpleNamespace(TRANSFORMER="transformer")

    class Dataset:
        def __init__(self, items, transform=None):
            self.items = list(items)

    def quantize(model, dataset, **kwargs):
        seen.update(model=model, items=dataset.items, kwargs=kwargs)
        return model

    mod.Dataset, mod.quantize = Dataset, quantize
    monkeypatch.setitem(sys.modules, "nncf", mod)
    return seen


def _assert_calibration_split(items: list[dict], loaded) -> None:
    """``items`` are the calibration split's articles, tokenized as the model's input, in order, and none is a
    selection or report article (the items quality is chosen or reported on)."""
    def ids(article):
        return loaded.encode([article.text], 128)["input_ids"].numpy()

    s = corpus.splits()
    assert len(items) == len(s.calibration)
    for item, article in zip(items, s.calibration):
        assert np.array_equal(item["input_ids"], ids(article)), f"item is not calibration article {article.id}"
    held_out = {ids(a).tobytes() for a in (*s.selection, *s.report)}
    assert not [i for i in items if i["input_ids"].tobytes() in held_out], "NNCF was handed held-out (scored) items"


@needs_openvino
def test_openvino_int8_hands_nncf_the_calibration_split_only(tiny, tmp_path, fake_nncf):
    runner, variant = _prepare("openvino-int8", tiny, tmp_path)
    _assert_calibration_split(fake_nncf["items"], tiny)
    assert fake_nncf["kwargs"] == {"model_type": "transformer", "subset_size": len(corpus.splits().calibration)}
    assert set(fake_nncf["items"][0]) == {p.get_any_name() for p in runner.compiled.inputs}
    fixed = variant.inputs["input_ids"].numpy().tobytes()
    assert all(i["input_ids"].tobytes() != fixed for i in fake_nncf["items"])  # nor the timed batch
    assert (runner.artifact / "model.xml").is_file() and "NNCF PTQ" in runner.info


def _report_only(seed: int = 0):
    return corpus.splits(seed).report


def _one_report_article_slipped_in(seed: int = 0):
    s = corpus.splits(seed)
    return (*s.calibration[:-1], s.report[0])


@needs_openvino
@pytest.mark.parametrize("fault,says", [(_report_only, "assert 250 == 256"),
                                        (_one_report_article_slipped_in, "is not calibration article")])
def test_a_quantizer_handed_report_items_is_caught(tiny, tmp_path, fake_nncf, monkeypatch, fault, says):
    """Planted faults: calibration drawn from the report split, or one report article among the calibration
    ones. The check the test above makes must fail on each."""
    monkeypatch.setattr(openvino_int8, "calibration_articles", fault)
    _prepare("openvino-int8", tiny, tmp_path)
    with pytest.raises(AssertionError, match=says):
        _assert_calibration_split(fake_nncf["items"], tiny)


@needs_openvino
@pytest.mark.skipif(importlib.util.find_spec("nncf") is None, reason="nncf is not installed")
def test_openvino_int8_quantizes_a_pruned_variant_within_its_quality_floor(tiny, tmp_path):
    """Real NNCF on tiny-bert heads+ffn@0.5: the IR holds int8 FakeQuantize nodes, the gate is the quality floor
    (pooled cosine, whatever precision the plugin chose for the float rest), nncf's version is recorded."""
    runner, variant = _prepare("openvino-int8", tiny, tmp_path, PruneRecipe("heads+ffn", 0.5))
    rt = get_runtime("openvino-int8")
    assert rt.quality_floor == QUALITY_FLOOR and rt.versions()["nncf"]
    assert "FakeQuantize" in (runner.artifact / "model.xml").read_text()
    with torch.inference_mode():
        ref = variant.masked()(**variant.inputs).last_hidden_state
    gate = equality_gate(rt, rt.name, runner.computes or "float32", runner.outputs(), ref, variant.inputs["attention_mask"])
    assert gate.error is None and gate.tolerance is None and gate.cosine >= QUALITY_FLOOR
    broken = equality_gate(rt, rt.name, "float32", torch.randn_like(ref), ref, variant.inputs["attention_mask"])
    assert "below its quality floor" in broken.error


# -- missing packages ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("missing,runtime,says", [("openvino", "openvino-auto", "optional openvino package"),
                                                  ("openvino", "openvino-int8", "optional openvino package"),
                                                  ("nncf", "openvino-int8", "optional nncf package")])
def test_a_missing_package_skips_the_case_with_the_install_hint(monkeypatch, missing, runtime, says):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a))
    if runtime == "openvino-int8" and missing == "nncf" and real("openvino") is None:
        pytest.skip("openvino is not installed: its own reason comes first")
    reason = unavailable(Case("tiny-bert", PruneRecipe("dense"), runtime))
    assert says in reason and HINT in reason and "\n" not in reason


def test_the_roofline_judges_openvino_as_shipped_against_the_peak_it_computes_in(monkeypatch):
    """openvino-int8's matmuls are int8, openvino-auto's bf16 where the CPU has it: judged against the fp32 peak they
    read 320% of it in results/alternatives-xeon-v3."""
    import bench.env
    from bench.measure.roofline import applicable_peak
    from bench.runtimes import get_runtime

    peaks = {"float32": 400.0, "bfloat16": 1600.0, "int8": 3700.0}
    assert applicable_peak(peaks, "float32", get_runtime("openvino-int8").compute_dtype) == ("int8", 3700.0)
    monkeypatch.setattr(bench.env, "cpu_flags", lambda: ("avx2", "avx512f", "amx_bf16", "amx_tile"))
    assert applicable_peak(peaks, "float32", get_runtime("openvino-auto").compute_dtype) == ("bfloat16", 1600.0)
    monkeypatch.setattr(bench.env, "cpu_flags", lambda: ("avx2", "fma"))
    assert applicable_peak(peaks, "float32", get_runtime("openvino-auto").compute_dtype) == ("float32", 400.0)
