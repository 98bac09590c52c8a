"""Data-aware pruning and recovery: importance scores are deterministic, lstsq lowers the reconstruction
error of a layer with a head removed, the recovered shrunk model equals its masked + scaled form and
round-trips save/load, distillation stops at its time budget, Wanda's sparsity is exact, depth pruning
bakes to what it masked, and bad values exit 2 with one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from bench.calibrate import calibration_for
from bench.models import load_model
from pruning import PruneRecipe, RecipeError, apply, bake, discover
from pruning.importance import group_scores, layer_scores
from pruning.recover import layer_errors, lstsq
from pruning.semi_structured import check_nm
from pruning.structured import save_pruned

from .forked_cli import run_many

CAL = 16  # calibration articles: the smallest lstsq accepts, enough for a tiny config


@pytest.fixture(scope="module")
def bert():
    return load_model("tiny-bert")


@pytest.fixture(scope="module")
def cal(bert):
    return calibration_for(bert, PruneRecipe("heads", 0.25, recover="lstsq", calibration=CAL))


def _out(model, inputs) -> torch.Tensor:
    with torch.inference_mode():
        return model.eval()(**inputs).last_hidden_state


@pytest.mark.parametrize("importance", ["magnitude", "activation", "fisher"])
def test_importance_scores_are_deterministic(bert, cal, importance):
    a = group_scores(bert.fresh(), ("heads", "ffn"), importance, "l1", cal, seed=0)
    b = group_scores(bert.fresh(), ("heads", "ffn"), importance, "l1", cal, seed=0)
    for kind in ("heads", "ffn"):
        assert all(torch.equal(x, y) for x, y in zip(a[kind], b[kind]))
        assert all(bool((x >= 0).all()) and x.dtype == torch.float32 for x in a[kind])
    assert [len(x) for x in a["heads"]] == [4, 4] and [len(x) for x in a["ffn"]] == [64, 64]


def test_data_aware_importance_chooses_differently_from_weight_norm(bert, cal):
    keep = {imp: [s.argsort()[-2:].tolist() for s in group_scores(bert.fresh(), ("ffn",), imp, "l1", cal)["ffn"]]
            for imp in ("magnitude", "fisher")}
    assert keep["magnitude"] != keep["fisher"]


@pytest.mark.parametrize("fit", ["ridge", "scales"])
def test_lstsq_lowers_the_reconstruction_error_of_a_layer_with_one_head_removed(bert, cal, fit):
    dense = bert.fresh().eval()
    model = apply(bert.fresh(), PruneRecipe("heads", 0.25)).eval()  # one of 4 heads per layer
    before = layer_errors(model, dense, cal)
    errors, _ = lstsq(model, dense, cal, fit)
    after = layer_errors(model, dense, cal)
    att0 = [e["error"] for e in before if e["layer"] == 0 and e["part"] == "att"][0]
    att0_after = [e["error"] for e in after if e["layer"] == 0 and e["part"] == "att"][0]
    assert att0 > 0 and att0_after < att0
    # the fit's own bookkeeping agrees with the measured forwards, before and after
    fitted = [e for e in errors if e["layer"] == 0 and e["part"] == "att"][0]
    assert fitted["before"] == pytest.approx(att0, rel=1e-4)
    assert fitted["after"] == pytest.approx(att0_after, rel=1e-3, abs=1e-9)


def test_recovered_shrunk_model_equals_masked_and_scaled_form_and_round_trips(bert, cal, tmp_path):
    recipe = PruneRecipe("heads+ffn", 0.5, recover="lstsq", fit="scales", calibration=CAL)
    recovered = apply(bert.fresh(), recipe, cal)
    scales = recovered.prunebench_recovery.scales
    assert len(scales) == 4  # two layers x (attention, FFN)
    # the same masks without recovery, then each kept group's scale put on its output-projection columns
    plain = apply(bert.fresh(), PruneRecipe("heads+ffn", 0.5))
    t = discover(plain)
    with torch.no_grad():
        for sc in scales:
            if sc["part"] == "att":
                lin, size = t.attention[sc["layer"]].output, t.attention[sc["layer"]].head_size
            else:
                lin, size = t.ffn[sc["layer"]].out, 1
            for g, s in zip(sc["kept"], sc["scales"]):
                lin.weight_orig[:, g * size:(g + 1) * size] *= s
    inputs = bert.batch(2, 16)
    shrunk = bake(recovered)
    assert torch.allclose(_out(shrunk, inputs), _out(plain, inputs), atol=1e-5)
    assert not torch.allclose(_out(shrunk, inputs), _out(bake(apply(bert.fresh(), PruneRecipe("heads+ffn", 0.5))), inputs), atol=1e-6)
    save_pruned(shrunk, tmp_path / "m", bert.tokenizer, weights=bert.weights)
    back = load_model(str(tmp_path / "m"))
    assert torch.allclose(_out(back.model, inputs), _out(shrunk, inputs), atol=1e-6)


def test_ridge_recovery_masked_equals_baked(bert, cal):
    masked = apply(bert.fresh(), PruneRecipe("heads+ffn", 0.5, importance="fisher", recover="lstsq", calibration=CAL), cal)
    inputs = bert.batch(2, 16)
    ref = _out(masked, inputs)
    assert torch.allclose(_out(bake(masked), inputs), ref, atol=1e-5)


def test_distillation_stops_after_its_time_budget(bert, cal):
    recipe = PruneRecipe("heads+ffn", 0.5, recover="distill", recover_seconds=1.0, calibration=CAL)
    model = apply(bert.fresh(), recipe, cal)
    rec = model.prunebench_recovery
    assert rec.steps >= 1 and len(rec.loss_curve) == rec.steps
    assert 1.0 <= rec.distill_seconds < 30  # stops after the budget; loose upper bound: one step's overrun
    # masked weights stay masked through training: baking gives the same model
    inputs = bert.batch(2, 16)
    assert torch.allclose(_out(bake(model), inputs), _out(model, inputs), atol=1e-5)


@pytest.mark.parametrize("sparsity", [0.3, 0.5])
def test_wanda_sparsity_is_exact_per_row(bert, cal, sparsity):
    model = apply(bert.fresh(), PruneRecipe("wanda", sparsity, calibration=CAL), cal)
    for lin in discover(model).linears():
        zeros = (lin.weight_mask == 0).sum(dim=1)
        assert bool((zeros == round(sparsity * lin.in_features)).all())


def test_wanda_nm_keeps_the_pattern(bert, cal):
    model = bake(apply(bert.fresh(), PruneRecipe("2:4", importance="wanda", calibration=CAL), cal))
    plain = bake(apply(bert.fresh(), PruneRecipe("2:4")))
    lins, plain_lins = discover(model).linears(), discover(plain).linears()
    assert all(check_nm(lin.weight, 2, 4) for lin in lins)
    assert any(not torch.equal(a.weight != 0, b.weight != 0) for a, b in zip(lins, plain_lins))


@pytest.mark.parametrize("allocation", ["importance", "top"])
def test_depth_pruning_removes_layers_and_bakes_to_what_it_masked(bert, cal, allocation, tmp_path):
    recipe = PruneRecipe("layers", 0.5, allocation=allocation, recover="lstsq", calibration=CAL)
    masked = apply(bert.fresh(), recipe, cal)
    inputs = bert.batch(2, 16)
    ref = _out(masked, inputs)
    shrunk = bake(masked)
    assert len(discover(shrunk).attention) == 1 and shrunk.config.num_hidden_layers == 1
    assert torch.allclose(_out(shrunk, inputs), ref, atol=1e-5)
    save_pruned(shrunk, tmp_path / "d", bert.tokenizer, weights=bert.weights)
    assert torch.allclose(_out(load_model(str(tmp_path / "d")).model, inputs), ref, atol=1e-5)


def test_layer_scores_are_deterministic(bert, cal):
    assert torch.equal(layer_scores(bert.fresh(), cal), layer_scores(bert.fresh(), cal))


def test_recipe_labels_and_checks():
    assert PruneRecipe("heads+ffn", 0.5, importance="fisher", recover="lstsq").label == "heads+ffn[fisher,lstsq]@0.50"
    assert PruneRecipe("heads+ffn", 0.5).label == "heads+ffn@0.50"
    with pytest.raises(RecipeError, match="too small"):
        PruneRecipe("heads+ffn", 0.5, recover="lstsq", calibration=4)
    with pytest.raises(RecipeError, match="recover_seconds"):
        PruneRecipe("heads+ffn", 0.5, recover="distill", recover_seconds=0)
    with pytest.raises(RecipeError, match="needs a calibration set"):
        apply(load_model("tiny-bert").fresh(), PruneRecipe("heads", 0.5, importance="fisher"))


BAD_VALUES = [
    (["--importance", "bogus"], "importance"),
    (["--recover", "bogus"], "unknown recovery"),
    (["--recover", "distill", "--recover-seconds", "0"], "recover_seconds"),
    (["--recover", "lstsq", "--calibration", "4"], "too small"),
    (["--recover", "lstsq", "--calibration", "100000"], "calibration split"),
]


RECOVERED = ("--importance", "fisher", "--recover", "lstsq", "--calibration", "16")  # good values: saves a model


@pytest.fixture(scope="module")
def prune_runs(tmp_path_factory) -> dict[tuple[str, ...], subprocess.CompletedProcess]:
    """``prunebench prune`` with each bad value below, and with RECOVERED, run concurrently, each in a process
    of its own (tests/forked_cli.py)."""
    root = tmp_path_factory.mktemp("bad-values")
    argvs = [tuple(args) for args, _ in BAD_VALUES] + [RECOVERED]
    prune = ["prune", "--model", "tiny-bert", "--method", "heads+ffn", "--sparsity", "0.5"]
    return dict(zip(argvs, run_many([([*prune, "--out", str(root / f"o{i}"), *argv], None) for i, argv in enumerate(argvs)], timeout=300)))


@pytest.mark.parametrize("args, needle", BAD_VALUES)
def test_bad_values_exit_2_with_one_line(prune_runs, args, needle):
    p = prune_runs[tuple(args)]
    assert p.returncode == 2, p.stderr
    lines = [x for x in p.stderr.splitlines() if x.startswith("prunebench:")]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in p.stderr


def test_prune_cli_saves_the_recovered_model(prune_runs):
    p = prune_runs[RECOVERED]
    out = p.args[p.args.index("--out") + 1]
    assert p.returncode == 0, p.stderr
    assert "recovery: lstsq" in p.stdout
    assert load_model(str(out)).model is not None


def test_ridge_strength_is_picked_per_projection_with_a_fallback_and_a_fixed_grid(bert, monkeypatch):
    """With enough calibration batches each projection's strength is the grid value with the least held-out
    error; with one batch (nothing to hold out) it is RIDGE; a one-value grid fixes it."""
    import pruning.recover_lstsq as rec

    cal64 = calibration_for(bert, PruneRecipe("heads", 0.25, recover="lstsq", calibration=64))
    dense = bert.fresh().eval()
    errors, _ = lstsq(apply(bert.fresh(), PruneRecipe("heads", 0.25)).eval(), dense, cal64, "ridge")
    assert len(errors) == 4 and all(e["after"] < e["before"] for e in errors)
    assert all(f"{e['ridge']:g}" == min(e["validation"], key=e["validation"].get) for e in errors)
    one = calibration_for(bert, PruneRecipe("heads", 0.25, recover="lstsq", calibration=CAL))
    fixed, _ = lstsq(apply(bert.fresh(), PruneRecipe("heads", 0.25)).eval(), dense, one, "ridge")
    assert all(e["ridge"] == rec.RIDGE and "validation" not in e for e in fixed)
    monkeypatch.setattr(rec, "RIDGE_GRID", (0.3,))
    pinned, _ = lstsq(apply(bert.fresh(), PruneRecipe("heads", 0.25)).eval(), dense, cal64, "ridge")
    assert all(e["ridge"] == 0.3 and list(e["validation"]) == ["0.3"] for e in pinned)


def test_held_out_calibration_batches_stay_out_of_the_fit_the_strength_is_chosen_with(bert, monkeypatch):
    """The validation error of each strength is the error, on the held-out batches (every VALIDATION_EVERY-th),
    of a fit made on the other batches alone: fitting on those alone (a one-value grid) and measuring the
    first projection's error on the held-out batches by forwards gives the same errors up to one constant (the
    two are normalised by different energies). Were the held-out batches in the fit, the validation errors
    would be in-sample errors of another solution and the ratios would differ."""
    import pruning.recover_lstsq as rec
    from pruning.calibration import Calibration

    cal = calibration_for(bert, PruneRecipe("heads", 0.5, recover="lstsq", calibration=128))
    every = rec.VALIDATION_EVERY
    held = [b for i, b in enumerate(cal.batches) if i % every == every - 1]
    train = [b for i, b in enumerate(cal.batches) if i % every != every - 1]
    assert held and len(train) >= every
    dense = bert.fresh().eval()
    errors, _ = lstsq(apply(bert.fresh(), PruneRecipe("heads", 0.5)).eval(), dense, cal, "ridge")
    validation = errors[0]["validation"]  # layer 0, attention output: its inputs do not depend on earlier fits
    grid = rec.RIDGE_GRID
    measured = []
    for c in grid:
        monkeypatch.setattr(rec, "RIDGE_GRID", (c,))
        student = apply(bert.fresh(), PruneRecipe("heads", 0.5)).eval()
        lstsq(student, dense, Calibration(tuple(train)), "ridge")
        measured.append(layer_errors(student, dense, Calibration(tuple(held)))[0]["error"])
    ratios = [validation[f"{c:g}"] / m for c, m in zip(grid, measured)]
    assert max(measured) > 1.01 * min(measured)  # the strengths differ on the held-out batches
    assert ratios == pytest.approx([ratios[0]] * len(ratios), rel=1e-3)


def test_quality_study_scores_each_recipe_once_and_refuses_a_bad_grid(tmp_path):
    plan = tmp_path / "p.toml"
    plan.write_text('name = "s"\nmodels = ["tiny-bert"]\nruntimes = ["torch-dense", "torch-masked"]\n'
                    '[[recipes]]\nmethod = "heads+ffn"\nsparsity = [0.5]\n'
                    '[[recipes]]\nmethod = "heads+ffn"\nsparsity = [0.5]\nrecover = "lstsq"\ncalibration = 16\n')
    from bench.study import main

    assert main(["--plan", str(plan), "--out", str(tmp_path / "o"), "--ridge-grid", "0.3"]) == 0
    import json

    rows = [json.loads(x) for x in (tmp_path / "o" / "study.jsonl").read_text().splitlines()]
    assert [r["recipe"] for r in rows] == ["heads+ffn@0.50", "heads+ffn[lstsq,cal16]@0.50"]
    assert all(r["status"] == "ok" and 0 < r["quality_cosine"] <= 1 for r in rows) and rows[1]["ridge_grid"] == [0.3]
    assert all("scored=selection" in r["quality_split"] for r in rows)  # chosen on selection, never on report
    assert rows[1]["quality_cosine"] != rows[0]["quality_cosine"]
    report = (tmp_path / "o" / "report.md").read_text()
    assert "python -m bench.study --plan" in report and "| heads+ffn[lstsq,cal16]@0.50 | ok |" in report
    for bad in ("0", "x,1"):
        proc = subprocess.run([sys.executable, "-m", "bench.study", "--plan", str(plan), "--out", str(tmp_path / "b"),
                               "--ridge-grid", bad], capture_output=True, text=True)
        assert proc.returncode == 2 and "--ridge-grid" in proc.stderr and "Traceback" not in proc.stderr


def test_a_recovered_variants_record_fields_say_what_recovery_did(bert):
    """The record of a data-aware variant carries its recovery: seconds, each fitted projection's error before
    and after with the ridge strength it chose, and for distillation its steps and loss curve."""
    from bench.calibrate import build_masked, record_fields

    recipe = PruneRecipe("heads+ffn", 0.5, recover="lstsq+distill", recover_seconds=0.5, calibration=CAL)
    assert record_fields(bert, recipe)["recovery_errors"] is None  # not built yet
    build_masked(bert, recipe)
    f = record_fields(bert, recipe)
    assert f["recovery_method"] == "lstsq+distill" and f["recovery_fit"] == "ridge" and f["recovery_seconds"] > 0
    errs = f["recovery_errors"]
    assert [(e["layer"], e["part"]) for e in errs] == [(0, "att"), (0, "ffn"), (1, "att"), (1, "ffn")]
    assert all(e["after"] < e["before"] and "ridge" in e and "validation" not in e for e in errs)
    assert f["distill_steps"] >= 1 and len(f["distill_loss"]) == min(f["distill_steps"], 51)
