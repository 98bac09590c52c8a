"""N:M semi-structured pruning (2:4, 4:8): exact pattern per group, magnitude order, scope, errors."""

import pytest
import torch

from bench.models import load_model
from pruning import PruneRecipe, RecipeError, apply, bake, discover
from pruning.semi_structured import NM_PATTERNS, check_nm, nm_mask, nm_violations

MODELS = ["tiny-bert", "tiny-distilbert", "tiny-roberta"]


@pytest.mark.parametrize("method", sorted(NM_PATTERNS))
def test_nm_mask_keeps_exactly_n_of_every_m(method):
    n, m = NM_PATTERNS[method]
    torch.manual_seed(0)
    w = torch.randn(16, 64)
    mask = nm_mask(w, n, m)
    per_group = mask.reshape(16, 64 // m, m).sum(-1)
    assert (per_group == n).all()
    assert check_nm(w * mask, n, m)


def test_nm_mask_keeps_the_largest_magnitudes_of_each_group():
    w = torch.tensor([[1.0, -4.0, 3.0, 0.5, 0.1, 0.2, -0.3, 0.05]])
    assert nm_mask(w, 2, 4).tolist() == [[False, True, True, False, False, True, True, False]]


def test_check_nm_counts_groups_that_break_the_pattern():
    w = torch.ones(2, 8)
    w[0, 4:] = torch.tensor([1.0, 0.0, 0.0, 1.0])  # groups: [4 nonzeros], [2], [4], [4]
    w[1, :4] = torch.tensor([0.0, 1.0, 0.0, 1.0])
    assert nm_violations(w, 2, 4) == 2
    assert not check_nm(w, 2, 4)
    assert check_nm(w * nm_mask(w, 2, 4), 2, 4)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("method", sorted(NM_PATTERNS))
def test_nm_method_gives_exact_pattern_and_half_sparsity_on_every_encoder_linear(model, method):
    n, m = NM_PATTERNS[method]
    net = bake(apply(load_model(model).fresh(), PruneRecipe(method)))
    linears = discover(net).linears()
    assert linears
    zeros = total = 0
    for lin in linears:
        w = lin.weight
        # random-init weights have no exact zeros, so every group holds exactly n nonzeros
        assert ((w.reshape(w.shape[0], -1, m) != 0).sum(-1) == n).all()
        zeros, total = zeros + int((w == 0).sum()), total + w.numel()
    assert zeros / total == 1 - n / m


def test_nm_masks_keep_torch_masked_and_torch_dense_equal():
    loaded = load_model("tiny-bert")
    x = loaded.batch(2, 16)
    masked = apply(loaded.fresh(), PruneRecipe("2:4")).eval()
    with torch.inference_mode():
        out_masked = masked(**x).last_hidden_state
        out_baked = bake(masked)(**x).last_hidden_state
    assert torch.equal(out_masked, out_baked)


def test_nm_sparsity_is_fixed_at_one_minus_n_over_m():
    assert PruneRecipe("2:4", 0.9).sparsity == 0.5
    assert PruneRecipe("4:8").label == "4:8@0.50"


@pytest.mark.parametrize("scope", ["all", "seed"])
def test_nm_rejects_scopes_beyond_linear_weights(scope):
    with pytest.raises(RecipeError, match=f"takes scope linear, not '{scope}'"):
        PruneRecipe("2:4", scope=scope)


def test_nm_rejects_linear_widths_not_divisible_by_m():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    net = BertModel(BertConfig(hidden_size=36, intermediate_size=72, num_hidden_layers=1, num_attention_heads=4, vocab_size=100))
    with pytest.raises(RecipeError, match="divisible by M"):
        apply(net, PruneRecipe("4:8"))
