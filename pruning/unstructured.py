"""Unstructured and row-wise pruning through ``torch.nn.utils.prune``, exactly as the tutorial does it.

Masks stay on the model (``weight_orig`` + ``weight_mask`` + a forward pre-hook) until ``bake``
(= ``prune.remove``) makes them permanent. Sparsity is exact: a global recipe removes
``round(target * n)`` weights of the whole scope, a local one ``round(target * n_t)`` of each tensor.
``wanda`` (Sun et al. 2023) is data-aware: a weight's score is ``|W_ij| * ||X_j||_2`` (the norm of its
input feature over the calibration tokens), and the lowest ``round(target * in_features)`` of each
output row go, so every row keeps the same number of weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import prune

from .masks import is_masked, masked_params, sparsity_of
from .masks import remove_masks as bake
from .registry import MethodConfig, RecipeError, register_method, register_transform
from .targets import scope_params

__all__ = ["Dense", "Unstructured", "bake", "is_masked", "masked_params", "sparsity_of", "wanda_mask", "wanda_scores"]


@dataclass(frozen=True)
class Dense(MethodConfig):
    """The unpruned model: sparsity 0, no knobs."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sparsity != 0.0:
            raise RecipeError(f"method {self.method!r} takes sparsity 0; use a pruning method for sparsity > 0")


@dataclass(frozen=True)
class Unstructured(MethodConfig):
    """Masks on single weights (or whole rows, ``ln-structured``) of the ``scope``'s tensors: ``norm``
    for ln-structured, ``importance = "wanda"`` for the data-aware method, ``seed`` for random ones."""

    scope: str = "linear"
    norm: str | None = None
    importance: str | None = None


@register_transform(Dense)
def _dense(model: nn.Module, config: Dense, calibration=None) -> nn.Module:
    return model


def _global(model: nn.Module, config: Unstructured, method) -> nn.Module:
    params = scope_params(model, config.scope)
    torch.manual_seed(config.seed)
    prune.global_unstructured(params, pruning_method=method, amount=config.sparsity)
    return model


def _local(model: nn.Module, config: Unstructured, fn) -> nn.Module:
    torch.manual_seed(config.seed)
    for module, name in scope_params(model, config.scope):
        fn(module, name, amount=config.sparsity)
    return model


def _ln_structured(model: nn.Module, config: Unstructured) -> nn.Module:
    n = 1 if config.norm == "l1" else 2
    return _local(model, config, lambda m, name, amount: prune.ln_structured(m, name, amount=amount, n=n, dim=0))


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


def _wanda(model: nn.Module, config: Unstructured, calibration) -> nn.Module:
    linears = [m for m, _ in scope_params(model, config.scope)]
    for lin, score in zip(linears, wanda_scores(model, linears, calibration)):
        prune.custom_from_mask(lin, "weight", wanda_mask(score, config.sparsity))
    return model


_KINDS = {
    "global-l1": lambda model, c, cal: _global(model, c, prune.L1Unstructured),
    "global-random": lambda model, c, cal: _global(model, c, prune.RandomUnstructured),
    "local-l1": lambda model, c, cal: _local(model, c, prune.l1_unstructured),
    "local-random": lambda model, c, cal: _local(model, c, prune.random_unstructured),
    "ln-structured": lambda model, c, cal: _ln_structured(model, c),
    "wanda": _wanda,
}


@register_transform(Unstructured)
def _unstructured(model: nn.Module, config: Unstructured, calibration=None) -> nn.Module:
    return _KINDS[config.method](model, config, calibration)


register_method("dense", Dense, pattern="none", help="no pruning: the baseline every case is measured against", scoped=False)
register_method("global-l1", Unstructured, pattern="unstructured", help="smallest |w| across the whole scope (prune.global_unstructured)")
register_method("global-random", Unstructured, pattern="unstructured", help="random weights across the whole scope, seeded")
register_method("local-l1", Unstructured, pattern="unstructured", help="smallest |w| of each tensor (prune.l1_unstructured)")
register_method("local-random", Unstructured, pattern="unstructured", help="random weights of each tensor, seeded")
register_method("ln-structured", Unstructured, pattern="rows", norms=("l1", "l2"), default_norm="l1",
                help="whole output rows of each tensor by Ln norm (prune.ln_structured, dim 0): masked, not removed")
register_method("wanda", Unstructured, pattern="unstructured", scopes=("linear",), importances=("wanda",), data_aware=("wanda",),
                help="data-aware: lowest |W_ij|*||X_j|| of each Linear row (Wanda), on the calibration set")
