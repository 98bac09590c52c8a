"""prunebench's pruning core: turn any Hugging Face encoder into pruned variants.

    from pruning import PruneRecipe, apply, bake
    model = apply(model, PruneRecipe("global-l1", 0.5))   # masks on, as torch.nn.utils.prune leaves it
    model = bake(model)                                   # prune.remove: zeros baked in

This package only re-exports. Importing it imports each method family's module (one per family:
its config dataclass, its transform, its ``register_method`` lines), which registers the methods in
``pruning.registry``; no module here imports this package or a method module it does not use.
"""

from __future__ import annotations

from . import depth, peers, semi_structured, structured, unstructured  # noqa: F401  (registers the methods)
from .depth import Depth
from .peers import TorchPruning
from .recipe import PruneRecipe, apply, bake, recipe_keys
from .recover import RecoveryConfig
from .registry import METHODS, MethodConfig, RecipeError, method_spec, register_method, register_transform
from .semi_structured import NM
from .structured import Structured
from .targets import SCOPES, EncoderTargets, TargetError, discover, scope_params
from .unstructured import Dense, Unstructured

__all__ = [
    "METHODS",
    "NM",
    "SCOPES",
    "Dense",
    "Depth",
    "EncoderTargets",
    "MethodConfig",
    "PruneRecipe",
    "RecipeError",
    "RecoveryConfig",
    "Structured",
    "TargetError",
    "TorchPruning",
    "Unstructured",
    "apply",
    "bake",
    "discover",
    "method_spec",
    "recipe_keys",
    "register_method",
    "register_transform",
    "scope_params",
]
