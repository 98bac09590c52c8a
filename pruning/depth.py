"""Depth pruning: remove whole encoder layers, the coarsest structure and the cheapest to run.

Sparsity is the fraction of layers removed (``round(s * L)``, at least one layer kept). Which ones:
``allocation = "importance"`` (default) drops the layers whose skipping changes the model's
mean-pooled embeddings least on the calibration set (``pruning.importance.layer_scores``, one layer
at a time); ``allocation = "top"`` drops the top layers, which Sajjad et al. ("On the Effect of
Dropping Layers of Pre-trained Transformer Models") found works well for BERT, and needs no data.

``apply`` leaves the layers in place but skipped (a forward hook passes each one's input through),
so recovery and the masked runtimes see exactly the pruned computation; ``bake`` deletes them from
the layer stack and sets the config's layer count, so ``save_pruned`` / ``load_pruned`` round-trip.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from torch import nn

from .importance import layer_scores, skip_hooks
from .registry import MethodConfig, RecipeError, register_method, register_transform
from .shapes import kept_layers, layer_shapes, removed_layers_fraction
from .targets import layer_stack

__all__ = ["Depth", "bake_layers", "kept_layers", "removed_layers_fraction"]

log = logging.getLogger("pruning.depth")


@dataclass(frozen=True)
class Depth(MethodConfig):
    """Whole encoder layers (method ``layers``): sparsity is the fraction of layers removed, ``allocation``
    says which (``importance``: least change to the embeddings when skipped, on the calibration set; ``top``)."""

    allocation: str | None = None


def _choose(model: nn.Module, config: Depth, calibration) -> list[int]:
    n = len(layer_stack(model))
    drop = min(round(config.sparsity * n), n - 1)
    if config.allocation == "top":
        return list(range(n - drop, n))
    scores = layer_scores(model, calibration)
    log.info("layer scores (loss when skipped): %s", [round(float(s), 5) for s in scores])
    return sorted(int(i) for i in scores.argsort(stable=True)[:drop])


def bake_layers(model: nn.Module) -> nn.Module:
    """Delete the skipped layers from the stack and set the config's layer count."""
    skipped = sorted(getattr(model, "prunebench_skipped_layers", ()))
    for h in getattr(model, "prunebench_skip_handles", ()):
        h.remove()
    model.prunebench_skip_handles = ()
    stack = layer_stack(model)
    for i in reversed(skipped):
        del stack[i]
    model.config.num_hidden_layers = len(stack)
    model.prunebench_removed_layers = tuple(skipped)
    model.prunebench_skipped_layers = ()
    model.prunebench_structure = layer_shapes(model)
    return model


@register_transform(Depth)
def _layers(model: nn.Module, config: Depth, calibration=None) -> nn.Module:
    if config.allocation == "importance" and calibration is None:
        raise RecipeError("method 'layers' with allocation 'importance' needs a calibration set; pass calibration= or use allocation 'top'")
    drop = _choose(model, config, calibration)
    model.prunebench_dense_layers = len(layer_stack(model))
    model.prunebench_skipped_layers = tuple(drop)
    model.prunebench_skip_handles = tuple(skip_hooks(model, set(drop)))
    log.info("layers: skipping %s of %d", drop, model.prunebench_dense_layers)
    return model


register_method("layers", Depth, pattern="layers", structured=True, scoped=False, bake=bake_layers,
                allocations=("importance", "top"), data_aware=("importance",),
                help="whole encoder layers: those whose skipping changes the embeddings least (or the top ones); removed on bake")
