"""Save a pruned (masked, possibly recovered) model's state and rebuild it on a fresh dense copy.

Data-aware importance and recovery cost seconds to minutes, and a masked model cannot be deep-copied,
so a variant is built once and kept as a ``Snapshot``: its state dict (``weight_orig`` and
``weight_mask`` of every masked tensor, the recovered weights), the skipped layers of a depth-pruned
model, and what recovery reported. ``restore`` puts the same masks on a fresh dense model and loads
the state, so the rebuilt model computes exactly what the first one did.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import prune

__all__ = ["Snapshot", "restore", "snapshot"]


@dataclass(frozen=True)
class Snapshot:
    """Everything needed to rebuild a masked model on a fresh dense copy of its source."""

    state: dict[str, torch.Tensor]
    recipe: object  # pruning.PruneRecipe
    recovery: object | None  # pruning.recover.Recovery
    skipped_layers: tuple[int, ...] = ()
    dense_layers: int | None = None


def snapshot(model: nn.Module) -> Snapshot:
    """A CPU copy of a masked model's state and pruning attributes."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return Snapshot(state, getattr(model, "prunebench_recipe", None), getattr(model, "prunebench_recovery", None),
                    tuple(getattr(model, "prunebench_skipped_layers", ())), getattr(model, "prunebench_dense_layers", None))


def restore(model: nn.Module, snap: Snapshot) -> nn.Module:
    """Put ``snap``'s masks on the dense ``model`` (in place), load its state, and return it."""
    for name, mod in model.named_modules():
        for pname in ("weight", "bias"):
            key = f"{name}.{pname}_mask" if name else f"{pname}_mask"
            if key in snap.state:
                prune.custom_from_mask(mod, pname, snap.state[key].to(getattr(mod, pname).device))
    model.load_state_dict(snap.state, strict=True)
    if snap.skipped_layers:
        from .importance import skip_hooks

        model.prunebench_dense_layers = snap.dense_layers
        model.prunebench_skipped_layers = snap.skipped_layers
        model.prunebench_skip_handles = tuple(skip_hooks(model, set(snap.skipped_layers)))
    model.prunebench_recipe = snap.recipe
    if snap.recovery is not None:
        model.prunebench_recovery = snap.recovery
    return model
