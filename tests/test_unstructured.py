"""Unstructured recipes hit their sparsity exactly, and masked = baked."""

from __future__ import annotations

import math

import pytest
import torch

from pruning import PruneRecipe, RecipeError, apply, bake, scope_params
from pruning.unstructured import is_masked, masked_params
from tests.conftest import TINY


def _mask_zeros(params):
    zeros = total = 0
    for m, name in params:
        mask = getattr(m, name + "_mask")
        zeros += int((mask == 0).sum())
        total += mask.numel()
    return zeros, total


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("method", ["global-l1", "global-random"])
@pytest.mark.parametrize("sparsity", [0.2, 0.5, 0.9])
@pytest.mark.parametrize("scope", ["seed", "linear", "all"])
def test_global_methods_hit_exact_sparsity_over_the_scope(tiny_models, name, method, sparsity, scope):
    model = apply(tiny_models[name].fresh(), PruneRecipe(method, sparsity, scope=scope))
    zeros, total = _mask_zeros(scope_params(model, scope))
    assert zeros == round(sparsity * total)


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("method", ["local-l1", "local-random"])
@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.95])
def test_local_methods_hit_exact_sparsity_per_tensor(tiny_models, name, method, sparsity):
    model = apply(tiny_models[name].fresh(), PruneRecipe(method, sparsity))
    for m, pname in scope_params(model, "linear"):
        zeros, total = _mask_zeros([(m, pname)])
        assert zeros == round(sparsity * total)


def test_global_l1_removes_the_smallest_magnitudes(tiny_models):
    dense = tiny_models["tiny-bert"].fresh()
    all_w = torch.cat([m.weight.detach().abs().flatten() for m, _ in scope_params(dense, "linear")])
    model = apply(tiny_models["tiny-bert"].fresh(), PruneRecipe("global-l1", 0.5))
    kept = torch.cat([(m.weight_orig.detach().abs() * m.weight_mask).flatten() for m, _ in scope_params(model, "linear")])
    pruned_max = torch.cat([(m.weight_orig.detach().abs()[m.weight_mask == 0]) for m, _ in scope_params(model, "linear")]).max()
    assert pruned_max <= kept[kept > 0].min()
    assert pruned_max <= all_w.kthvalue(math.ceil(0.5 * all_w.numel()) + 1).values


def test_ln_structured_masks_whole_rows(tiny_models):
    model = apply(tiny_models["tiny-bert"].fresh(), PruneRecipe("ln-structured", 0.5, norm="l2"))
    for m, _ in scope_params(model, "linear"):
        rows = m.weight_mask.sum(dim=1)
        assert set(rows.tolist()) <= {0.0, float(m.in_features)}
        assert int((rows == 0).sum()) == round(0.5 * m.out_features)


def test_random_methods_are_seeded(tiny_models):
    a = apply(tiny_models["tiny-bert"].fresh(), PruneRecipe("global-random", 0.5, seed=3))
    b = apply(tiny_models["tiny-bert"].fresh(), PruneRecipe("global-random", 0.5, seed=3))
    c = apply(tiny_models["tiny-bert"].fresh(), PruneRecipe("global-random", 0.5, seed=4))
    ma = [m.weight_mask for m, _ in masked_params(a)]
    assert all(torch.equal(x, m.weight_mask) for x, (m, _) in zip(ma, masked_params(b)))
    assert not all(torch.equal(x, m.weight_mask) for x, (m, _) in zip(ma, masked_params(c)))


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("recipe", [PruneRecipe("global-l1", 0.5), PruneRecipe("local-l1", 0.7, scope="all"),
                                    PruneRecipe("global-l1", 0.2, scope="seed"), PruneRecipe("ln-structured", 0.5)])
def test_masked_and_baked_outputs_are_equal(tiny_models, name, recipe):
    loaded = tiny_models[name]
    inputs = loaded.batch(2, 16)
    masked = apply(loaded.fresh(), recipe).eval()
    assert is_masked(masked)
    with torch.inference_mode():
        before = masked(**inputs).last_hidden_state
        baked = bake(masked)
        assert not is_masked(baked)
        after = baked(**inputs).last_hidden_state
    assert (before - after).abs().max().item() <= 1e-5


def test_masked_and_baked_are_equal_on_minilm(minilm):
    inputs = minilm.batch(2, 32)
    masked = apply(minilm.fresh(), PruneRecipe("global-l1", 0.5)).eval()
    with torch.inference_mode():
        before = masked(**inputs).last_hidden_state
        after = bake(masked)(**inputs).last_hidden_state
    assert (before - after).abs().max().item() <= 1e-5


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="global-l1", sparsity=1.0), r"outside \[0, 1\)"),
    (dict(method="global-l1", sparsity=-0.1), r"outside \[0, 1\)"),
    (dict(method="global-l1", sparsity=float("nan")), r"outside \[0, 1\)"),
    (dict(method="globl-l1", sparsity=0.5), "did you mean 'global-l1'"),
    (dict(method="global-l1", sparsity=0.5, scope="everything"), "unknown scope"),
    (dict(method="global-l1", sparsity=0.5, norm="l2"), "takes norm"),
    (dict(method="ln-structured", sparsity=0.5, norm="l3"), "takes norm l1, l2"),
    (dict(method="dense", sparsity=0.5), "takes sparsity 0"),
    (dict(method="global-l1", sparsity=0.5, allocation="global"), "takes no allocation"),
])
def test_bad_recipes_name_the_field(kwargs, match):
    with pytest.raises(RecipeError, match=match):
        PruneRecipe(**kwargs)


def test_recipe_labels_are_unique_and_readable():
    assert PruneRecipe("global-l1", 0.5).label == "global-l1@0.50"
    assert PruneRecipe("global-l1", 0.2, scope="seed").label == "global-l1[seed]@0.20"
    assert PruneRecipe("ln-structured", 0.5, norm="l2").label == "ln-structured[l2]@0.50"
    assert PruneRecipe("dense").label == "dense@0.00"
