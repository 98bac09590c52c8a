"""PruneRecipe, the method registry, and ``apply(model, recipe)``.

A recipe is a frozen, self-validating dataclass. Each method registers its transform with
``@register_method(name, ...)``; ``apply`` dispatches on the recipe's method name. Adding a method is
one decorated function in its own module.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, field
from typing import Callable

from torch import nn

from .targets import SCOPES

__all__ = ["METHODS", "MethodSpec", "PruneRecipe", "RecipeError", "apply", "method_spec", "register_method"]


class RecipeError(ValueError):
    """A recipe that cannot be built; the message names the field and the fix."""


@dataclass(frozen=True)
class MethodSpec:
    """What a method does and how it is configured."""

    name: str
    fn: Callable[[nn.Module, "PruneRecipe"], nn.Module]
    pattern: str  # unstructured | rows | n:m | heads | ffn | heads+ffn | none
    help: str
    norms: tuple[str, ...] = ()
    default_norm: str | None = None
    scoped: bool = True  # does the scope field mean anything for this method
    structured: bool = False  # removes weights physically (model shape changes)
    fixed_sparsity: float | None = None  # e.g. 2:4 is always 0.5
    allocations: tuple[str, ...] = ()
    requires: str | None = None  # optional package the method needs
    bake: Callable[[nn.Module], nn.Module] | None = None  # make permanent (default: prune.remove)
    scopes: tuple[str, ...] = SCOPES  # scopes the method accepts (e.g. N:M masks fit Linear weights only)


METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, **spec) -> Callable:
    """Register ``fn(model, recipe) -> model`` as the transform of method ``name``."""

    def deco(fn: Callable) -> Callable:
        if name in METHODS:
            raise RuntimeError(f"method {name!r} registered twice")
        METHODS[name] = MethodSpec(name=name, fn=fn, **spec)
        return fn

    return deco


def _suggest(word: str, choices) -> str:
    near = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def method_spec(name: str) -> MethodSpec:
    from . import _load_methods

    _load_methods()
    if name not in METHODS:
        raise RecipeError(
            f"unknown method {name!r}{_suggest(name, METHODS)}; known methods: {', '.join(sorted(METHODS))}"
        )
    return METHODS[name]


@dataclass(frozen=True)
class PruneRecipe:
    """One way of pruning: method, target sparsity, scope, importance norm, allocation, seed."""

    method: str = field(metadata={"help": "pruning method, see `prunebench list`"})
    sparsity: float = field(default=0.0, metadata={"help": "fraction removed, in [0, 1)"})
    scope: str = field(default="linear", metadata={"help": "seed | linear | all"})
    norm: str | None = field(default=None, metadata={"help": "importance: l1 | l2 | random (method-dependent)"})
    allocation: str | None = field(default=None, metadata={"help": "structured: uniform | global"})
    seed: int = field(default=0, metadata={"help": "seed for random methods"})

    def __post_init__(self) -> None:
        spec = method_spec(self.method)
        s = self.sparsity
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or not 0.0 <= s < 1.0:
            raise RecipeError(f"sparsity {s!r} is outside [0, 1); pass a fraction such as 0.5")
        if spec.fixed_sparsity is not None:
            object.__setattr__(self, "sparsity", spec.fixed_sparsity)
        if self.method == "dense" and s != 0.0:
            raise RecipeError("method 'dense' takes sparsity 0; use a pruning method for sparsity > 0")
        if self.scope not in SCOPES:
            raise RecipeError(f"unknown scope {self.scope!r}{_suggest(self.scope, SCOPES)}; choose one of {', '.join(SCOPES)}")
        if self.scope not in spec.scopes:
            raise RecipeError(f"method {self.method!r} takes scope {', '.join(spec.scopes)}, not {self.scope!r}; use scope = {spec.scopes[0]!r}")
        if self.norm is None:
            object.__setattr__(self, "norm", spec.default_norm)
        elif self.norm not in spec.norms:
            allowed = ", ".join(spec.norms) or "none (leave it out)"
            raise RecipeError(f"method {self.method!r} takes norm {allowed}, not {self.norm!r}")
        if spec.allocations:
            if self.allocation is None:
                object.__setattr__(self, "allocation", spec.allocations[0])
            elif self.allocation not in spec.allocations:
                raise RecipeError(
                    f"method {self.method!r} takes allocation {', '.join(spec.allocations)}, not {self.allocation!r}"
                )
        elif self.allocation is not None:
            raise RecipeError(f"method {self.method!r} takes no allocation; leave it out")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise RecipeError(f"seed {self.seed!r} must be an integer")

    @property
    def spec(self) -> MethodSpec:
        return method_spec(self.method)

    @property
    def label(self) -> str:
        """Readable, unique id of the recipe, e.g. ``global-l1@0.50`` or ``global-l1[seed]@0.20``."""
        spec = self.spec
        extras = []
        if spec.scoped and self.scope != "linear":
            extras.append(self.scope)
        if self.norm is not None and self.norm != spec.default_norm:
            extras.append(self.norm)
        if spec.allocations and self.allocation != spec.allocations[0]:
            extras.append(self.allocation)
        if self.seed != 0:
            extras.append(f"seed{self.seed}")
        tag = f"[{','.join(extras)}]" if extras else ""
        return f"{self.method}{tag}@{self.sparsity:.2f}"

    def to_dict(self) -> dict:
        return asdict(self)


def apply(model: nn.Module, recipe: PruneRecipe) -> nn.Module:
    """Prune ``model`` in place with ``recipe`` and return it (structured methods may return a new one)."""
    out = recipe.spec.fn(model, recipe)
    out.prunebench_recipe = recipe  # type: ignore[attr-defined]
    return out
