"""prunebench's pruning core: turn any Hugging Face encoder into pruned variants.

    from pruning import PruneRecipe, apply, bake
    model = apply(model, PruneRecipe("global-l1", 0.5))   # masks on, as torch.nn.utils.prune leaves it
    model = bake(model)                                   # prune.remove: zeros baked in
"""

from __future__ import annotations

import importlib

from .recipe import METHODS, PruneRecipe, RecipeError, apply, method_spec, register_method
from .targets import SCOPES, EncoderTargets, TargetError, discover, scope_params

__all__ = [
    "METHODS",
    "SCOPES",
    "EncoderTargets",
    "PruneRecipe",
    "RecipeError",
    "TargetError",
    "apply",
    "bake",
    "discover",
    "method_spec",
    "register_method",
    "scope_params",
]

# One module per family of methods; importing a module registers its methods.
_METHOD_MODULES = ("unstructured", "semi_structured", "structured", "depth", "peers")
_loaded = False


def _load_methods() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for name in _METHOD_MODULES:
            importlib.import_module(f"{__name__}.{name}")


def bake(model):
    """Make a pruned model permanent: ``prune.remove`` for mask methods, or the method's own bake
    (structured methods remove the masked heads/neurons physically)."""
    from .unstructured import bake as _remove_masks

    recipe = getattr(model, "prunebench_recipe", None)
    if recipe is not None and recipe.spec.bake is not None:
        out = recipe.spec.bake(model)
        out.prunebench_recipe = recipe
        return out
    return _remove_masks(model)
