"""Unstructured and row-wise pruning through ``torch.nn.utils.prune``, exactly as the tutorial does it.

Masks stay on the model (``weight_orig`` + ``weight_mask`` + a forward pre-hook) until ``bake``
(= ``prune.remove``) makes them permanent. Sparsity is exact: a global recipe removes
``round(target * n)`` weights of the whole scope, a local one ``round(target * n_t)`` of each tensor.
``wanda`` (Sun et al. 2023) is data-aware: a weight's score is ``|W_ij| * ||X_j||_2`` (the norm of its
input feature over the calibration tokens), and the lowest ``round(target * in_features)`` of each
output row go, so every row keeps the same number of weights.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

from .recipe import PruneRecipe, register_method
from .targets import Param, scope_params

__all__ = ["bake", "is_masked", "masked_params", "sparsity_of", "wanda_mask", "wanda_scores"]


def _global(model: nn.Module, recipe: PruneRecipe, method) -> nn.Module:
    params = scope_params(model, recipe.scope)
    torch.manual_seed(recipe.seed)
    prune.global_unstructured(params, pruning_method=method, amount=recipe.sparsity)
    return model


def _local(model: nn.Module, recipe: PruneRecipe, fn) -> nn.Module:
    torch.manual_seed(recipe.seed)
    for module, name in scope_params(model, recipe.scope):
        fn(module, name, amount=recipe.sparsity)
    return model


@register_method("dense", pattern="none", help="no pruning: the baseline every case is measured against", scoped=False)
def _dense(model: nn.Module, recipe: PruneRecipe) -> nn.Module:
    return model


@register_method("global-l1", pattern="unstructured", help="smallest |w| across the whole scope (prune.global_unstructured)")
def _global_l1(model: nn.Module, recipe: PruneRecipe) -> nn.Module:
    return _global(model, recipe, prune.L1Unstructured)


@register_method("global-random", pattern="unstructured", help="random weights across the whole scope, seeded")
def _global_random(model: nn.Module, recipe: PruneRecipe) -> nn.Module:
    return _global(model, recipe, prune.RandomUnstructured)


@register_method("local-l1", pattern="unstructured", help="smallest |w| of each tensor (prune.l1_unstructured)")
def _local_l1(model: nn.Module, recipe: PruneRecipe) -> nn.Module:
    return _local(model, recipe, prune.l1_unstructured)


@register_method("local-random", pattern="unstructured", help="random weights of each tensor, seeded")
def _local_random(model: nn.Module, recipe: PruneRecipe) -> nn.Module:
    return _local(model, recipe, prune.random_unstructured)


@register_method(
    "ln-structured",
    pattern="rows",
    help="whole output rows of each tensor by Ln norm (prune.ln_structured, dim 0): masked, not removed",
    norms=("l1", "l2"),
    default_norm="l1",
)
def _ln_structured(model: nn.Module, recipe: PruneRecipe) -> nn.Module:
    n = 1 if recipe.norm == "l1" else 2
    return _local(model, recipe, lambda m, name, amount: prune.ln_structured(m, name, amount=amount, n=n, dim=0))


def wanda_scores(model: nn.Module, linears: list[nn.Linear], calibration) -> list[torch.Tensor]:
    """Per Linear, ``|W| * ||X_j||_2`` (the input-feature norms read off the calibration set)."""
    from .importance import input_norms

    norms = input_norms(model, linears, calibration)
    return [lin.weight.detach().abs().float() * n.to(lin.weight.device)[None, :] for lin, n in zip(linears, norms)]


def wanda_mask(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep all but the ``round(sparsity * in_features)`` lowest scores of each row (ties: lower index goes)."""
    drop = round(sparsity * score.shape[1])
    mask = torch.ones_like(score, dtype=torch.bool)
    if drop:
        idx = torch.argsort(score, dim=1, stable=True)[:, :drop]
        mask.scatter_(1, idx, False)
    return mask


@register_method("wanda", pattern="unstructured", scopes=("linear",), importances=("wanda",), data_aware=("wanda",),
                 help="data-aware: lowest |W_ij|*||X_j|| of each Linear row (Wanda), on the calibration set")
def _wanda(model: nn.Module, recipe: PruneRecipe, calibration=None) -> nn.Module:
    linears = [m for m, _ in scope_params(model, recipe.scope)]
    for lin, score in zip(linears, wanda_scores(model, linears, calibration)):
        prune.custom_from_mask(lin, "weight", wanda_mask(score, recipe.sparsity))
    return model


def masked_params(model: nn.Module) -> list[Param]:
    """Every ``(module, name)`` that carries a prune mask."""
    return [(m, k[: -len("_mask")]) for m in model.modules() for k, _ in m.named_buffers(recurse=False) if k.endswith("_mask")]


def is_masked(model: nn.Module) -> bool:
    return bool(masked_params(model))


def bake(model: nn.Module) -> nn.Module:
    """Make masks permanent (``prune.remove``): plain dense tensors with zeros, no hooks."""
    for module, name in masked_params(model):
        prune.remove(module, name)
    return model


def sparsity_of(params: list[Param]) -> float:
    """Fraction of exact zeros over the effective tensors of ``params``."""
    zeros = total = 0
    for module, name in params:
        t = getattr(module, name)
        zeros += int((t == 0).sum())
        total += t.numel()
    return zeros / total if total else 0.0
