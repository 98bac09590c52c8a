"""Prune masks as ``torch.nn.utils.prune`` leaves them: find them, bake them, measure the zeros.

The default ``bake`` of every mask method (``prune.remove``) lives here, below the method modules, so
``pruning.recipe`` and the structured methods can bake masks without importing a method module.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils import prune

from .targets import Param

__all__ = ["is_masked", "masked_params", "remove_masks", "sparsity_of"]


def masked_params(model: nn.Module) -> list[Param]:
    """Every ``(module, name)`` that carries a prune mask."""
    return [(m, k[: -len("_mask")]) for m in model.modules() for k, _ in m.named_buffers(recurse=False) if k.endswith("_mask")]


def is_masked(model: nn.Module) -> bool:
    """True when any parameter of ``model`` carries a prune mask."""
    return bool(masked_params(model))


def remove_masks(model: nn.Module) -> nn.Module:
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
