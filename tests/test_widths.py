"""Kernel-friendly FFN widths (``multiple_of``): every layer keeps a multiple of N FFN neurons, the achieved
sparsity stays within one multiple of the target (the nearest multiple where the allocation is uniform), the
option is part of the recipe's id and fingerprint (spelled out at 1, it is neither), and a bad value is a
one-line error, exit 2."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel

from bench.case import Case
from bench.env import fingerprint
from bench.plan import builtin_plan, plan_from_dict
from pruning import PruneRecipe, RecipeError, apply, bake, discover
from pruning.structured import layer_shapes
from pruning.widths import rounded_counts

from .forked_cli import run_many

SIZES = (200, 200, 200)  # FFN neurons per layer of the seeded model: not a multiple of 16 or 64


@pytest.fixture(scope="module")
def encoder() -> BertModel:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=64, hidden_size=32, intermediate_size=SIZES[0], num_hidden_layers=len(SIZES),
                     num_attention_heads=4, max_position_embeddings=32)
    return BertModel(cfg).eval()


def _fresh(encoder: BertModel) -> BertModel:
    model = BertModel(encoder.config).eval()
    model.load_state_dict(encoder.state_dict())
    return model


def _widths(model) -> list[int]:
    return [s["ffn_size"] for s in layer_shapes(model)]


def _kept(model) -> list[set[int]]:
    return [set(torch.nonzero(f.inp.weight_mask.any(1)).flatten().tolist()) for f in discover(model).ffn]


@pytest.mark.parametrize("allocation", ["uniform", "global"])
@pytest.mark.parametrize("multiple", [16, 64])
@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.62])
def test_kept_widths_are_multiples_and_sparsity_is_within_one_multiple(encoder, allocation, multiple, sparsity):
    recipe = PruneRecipe("heads+ffn", sparsity, allocation=allocation, options={"multiple_of": multiple})
    masked = apply(_fresh(encoder), recipe)
    widths = _widths(masked)
    assert all(w % multiple == 0 and multiple <= w <= n for w, n in zip(widths, SIZES)), widths
    achieved = 1 - sum(widths) / sum(SIZES)
    assert abs(achieved - sparsity) <= multiple / sum(SIZES) * (len(SIZES) if allocation == "uniform" else 1) / 2 + 1e-9
    if allocation == "uniform":  # each layer: the multiple nearest its target width
        assert all(abs(w - n * (1 - sparsity)) <= multiple / 2 for w, n in zip(widths, SIZES)), widths
    plain = apply(_fresh(encoder), PruneRecipe("heads+ffn", sparsity, allocation=allocation))
    for rounded, unrounded in zip(_kept(masked), _kept(plain)):  # the same ranking decides: one set holds the other
        assert rounded <= unrounded or unrounded <= rounded
    assert [s["num_heads"] for s in layer_shapes(masked)] == [s["num_heads"] for s in layer_shapes(plain)]
    shrunk = bake(masked)
    assert [f.neurons for f in discover(shrunk).ffn] == widths
    inputs = {"input_ids": torch.randint(0, 64, (2, 12)), "attention_mask": torch.ones(2, 12, dtype=torch.long)}
    with torch.inference_mode():
        ref = apply(_fresh(encoder), recipe)(**inputs).last_hidden_state
        assert (shrunk(**inputs).last_hidden_state - ref).abs().max() <= 1e-5


def test_global_rounding_gives_lost_multiples_back_where_most_was_lost():
    # global kept 100, 130 and 70 of 200 each (total 300 = target); floors to 64s are 64, 128, 64 (256):
    # the lost 44 neurons round to one multiple, given to the layer that lost most (100 -> 128)
    assert rounded_counts([200] * 3, [100, 130, 70], 0.5, 64, "global") == [128, 128, 64]
    assert rounded_counts([200] * 3, [100, 100, 100], 0.5, 64, "uniform") == [128, 128, 128]  # 100 is nearer 128 than 64
    with pytest.raises(RecipeError, match="layer 1 has 48 FFN neurons, fewer than multiple_of 64"):
        rounded_counts([200, 48], [100, 24], 0.5, 64, "uniform")


def test_multiple_of_is_part_of_the_recipe_id_and_fingerprint_and_1_is_the_default():
    base = dict(allocation="global", importance="fisher", recover="lstsq")
    plain, one = PruneRecipe("heads+ffn", 0.5, **base), PruneRecipe("heads+ffn", 0.5, **base, options={"multiple_of": 1})
    r16, r64 = (PruneRecipe("heads+ffn", 0.5, **base, options={"multiple_of": m}) for m in (16, 64))
    assert r64.label == "heads+ffn[global,fisher,multiple_of64,lstsq]@0.50" and r64.to_dict()["multiple_of"] == 64
    assert PruneRecipe.from_dict(r64.to_dict()) == r64
    from argparse import Namespace

    from bench.export import recipe_from

    flags = dict.fromkeys(("method", "sparsity", "norm", "allocation", "seed", "importance", "recover", "fit", "calibration",
                           "recover_seconds"))
    assert recipe_from(r64.label, Namespace(**flags)) == r64  # `prunebench export` reads the label back
    cases = [Case("minilm", r, "torch-dense") for r in (plain, one, r16, r64)]
    assert len({c.case_id for c in cases}) == 3 and len({fingerprint(c, {}) for c in cases}) == 3
    assert one == plain and cases[0].case_id == cases[1].case_id and fingerprint(cases[0], {}) == fingerprint(cases[1], {})
    assert "multiple_of" not in one.to_dict()
    widths = builtin_plan("widths")
    assert {c.recipe for c in widths.cases} == {plain, r16, r64} and {c.dtype for c in widths.cases} == {"float32", "bfloat16"}
    default = {c.case_id: fingerprint(c, {}) for c in builtin_plan("default").cases}
    same = [c for c in widths.cases if c.recipe == plain and c.dtype == "float32"]
    assert [default[c.case_id] for c in same] == [fingerprint(c, {}) for c in same]  # no rounding: the default plan's case


@pytest.mark.parametrize("value, match", [(0, "multiple_of 0 must be a positive integer"),
                                          (-8, "multiple_of -8 must be a positive integer"),
                                          (1.5, "multiple_of 1.5 must be a positive integer"),
                                          ("64", "multiple_of '64' must be a positive integer"),
                                          (True, "multiple_of True must be a positive integer")])
def test_bad_multiple_of_in_a_plan_is_refused_with_the_fix(value, match):
    with pytest.raises(RecipeError, match=match):
        plan_from_dict({"models": ["tiny-bert"], "runtimes": ["torch-dense"],
                        "recipes": [{"method": "heads+ffn", "sparsity": 0.5, "multiple_of": value}]})
    with pytest.raises(RecipeError, match="removes no FFN neurons"):
        PruneRecipe("heads", 0.5, options={"multiple_of": 16})


def test_bad_multiple_of_on_the_cli_is_one_line_exit_2(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text('models = ["tiny-bert"]\nruntimes = ["torch-dense"]\n[[recipes]]\nmethod = "heads+ffn"\n'
                    'sparsity = 0.5\nmultiple_of = 2.5\n')
    run = ["run", "--model", "tiny-bert", "--runtimes", "torch-dense", "--no-memory", "--out", str(tmp_path / "out")]
    cases = [(run + ["--multiple-of", "0"], "multiple_of 0 must be a positive integer"),
             (run + ["--multiple-of=-16"], "multiple_of -16 must be a positive integer"),
             (run + ["--multiple-of", "sixteen"], "--multiple-of 'sixteen' is not an integer"),
             (run + ["--multiple-of", "1.5"], "--multiple-of '1.5' is not an integer"),
             (run + ["--methods", "global-l1", "--multiple-of", "16"], "recipes[0] has unknown key(s) multiple_of"),
             (["run", "--plan", str(plan), "--no-memory", "--out", str(tmp_path / "out2")], "multiple_of 2.5 must be a positive"),
             (["prune", "--model", "tiny-bert", "--method", "heads+ffn", "--sparsity", "0.5", "--multiple-of", "-1",
               "--out", str(tmp_path / "p")], "multiple_of -1 must be a positive integer")]
    for proc, (_, words) in zip(run_many([(argv, tmp_path) for argv, _ in cases], env={"HF_HUB_OFFLINE": "1"}), cases):
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-1500:]
        assert lines[0].startswith("prunebench: error: ") and words in lines[0], lines[0]


def test_prune_keeps_multiples_of_the_flag(tmp_path, capsys):
    from bench import cli

    assert cli.main(["prune", "--model", "tiny-bert", "--method", "ffn", "--sparsity", "0.3", "--multiple-of", "16",
                     "--out", str(tmp_path / "p")]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "FFN size per layer" in ln)
    assert line.split(":")[1].split() == ["48", "48"]  # tiny-bert: 64 neurons, 0.3 -> 44.8 kept -> nearest 16-multiple
