"""PruneRecipe, the method registry, and ``apply(model, recipe)``.

A recipe is a frozen, self-validating dataclass. Each method registers its transform with
``@register_method(name, ...)``; ``apply`` dispatches on the recipe's method name. Adding a method is
one decorated function in its own module.
"""

from __future__ import annotations

import copy
import difflib
import math
from dataclasses import asdict, dataclass, field
from typing import Callable

from torch import nn

from .targets import SCOPES

__all__ = ["FITS", "METHODS", "MIN_CALIBRATION", "MethodSpec", "PruneRecipe", "RECOVERIES", "RecipeError", "apply",
           "method_spec", "register_method"]

# recovery after removal (pruning/recover.py); lstsq fits: ridge re-fit of the output projections, or
# Kwon's one scale per kept head / neuron
RECOVERIES = ("none", "lstsq", "distill", "lstsq+distill")
FITS = ("ridge", "scales")
# fewest calibration sequences a data-aware step is allowed to run on (below it the estimates are noise)
MIN_CALIBRATION = {"importance": 8, "lstsq": 16, "distill": 8}
DEFAULT_CALIBRATION = 256
DEFAULT_RECOVER_SECONDS = 120.0


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
    importances: tuple[str, ...] = ()  # importance scores the method takes; the first is the default
    data_aware: tuple[str, ...] = ()  # those of them (or allocations) that read the calibration set


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
    importance: str | None = field(default=None, metadata={"help": "which groups go: magnitude | activation | fisher | wanda (method-dependent)"})
    recover: str = field(default="none", metadata={"help": "after removal: none | lstsq | distill | lstsq+distill (structured methods)"})
    fit: str = field(default="ridge", metadata={"help": "lstsq recovery: ridge (re-fit output projections) | scales (Kwon's per-group scales)"})
    calibration: int = field(default=DEFAULT_CALIBRATION, metadata={"help": "calibration sequences for data-aware importance and recovery"})
    recover_seconds: float = field(default=DEFAULT_RECOVER_SECONDS, metadata={"help": "distillation time budget, seconds"})

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
        self._check_data(spec)

    def _check_data(self, spec: MethodSpec) -> None:
        """Importance, recovery and calibration fields: known values, and only where they mean something."""
        if self.importance is None:
            object.__setattr__(self, "importance", spec.importances[0] if spec.importances else None)
        elif self.importance not in spec.importances:
            allowed = ", ".join(spec.importances) or "none (leave it out)"
            raise RecipeError(f"method {self.method!r} takes importance {allowed}, not {self.importance!r}{_suggest(self.importance, spec.importances)}")
        if self.recover not in RECOVERIES:
            raise RecipeError(f"unknown recovery {self.recover!r}{_suggest(str(self.recover), RECOVERIES)}; choose one of {', '.join(RECOVERIES)}")
        if self.recover != "none" and not spec.structured:
            raise RecipeError(f"recovery {self.recover!r} needs a method that removes weights (heads, ffn, heads+ffn, layers), not {self.method!r}; use recover = 'none'")
        if self.fit not in FITS:
            raise RecipeError(f"unknown lstsq fit {self.fit!r}; choose one of {', '.join(FITS)}")
        secs = self.recover_seconds
        if isinstance(secs, bool) or not isinstance(secs, (int, float)) or not math.isfinite(secs) or secs <= 0:
            raise RecipeError(f"recover_seconds {secs!r} must be a positive number of seconds, e.g. 120")
        n = self.calibration
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise RecipeError(f"calibration {n!r} must be a positive number of sequences, e.g. 256")
        for step, need in self.calibration_steps().items():
            if n < need:
                raise RecipeError(f"calibration {n} is too small for {step}: it needs at least {need} sequences; set calibration >= {need}")

    def calibration_steps(self) -> dict[str, int]:
        """The data-aware steps of this recipe and the fewest calibration sequences each needs."""
        spec = self.spec
        steps: dict[str, int] = {}
        if self.importance in spec.data_aware or (self.allocation is not None and self.allocation in spec.data_aware):
            steps[f"importance {self.importance or self.allocation!r}"] = MIN_CALIBRATION["importance"]
        for part in self.recover.split("+"):
            if part != "none":
                steps[f"recovery {part!r}"] = MIN_CALIBRATION[part]
        return steps

    @property
    def needs_calibration(self) -> bool:
        return bool(self.calibration_steps())

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
        if spec.importances and self.importance != spec.importances[0]:
            extras.append(self.importance)
        if self.recover != "none":
            extras.append(self.recover if self.fit == FITS[0] or "lstsq" not in self.recover else self.recover.replace("lstsq", f"lstsq-{self.fit}"))
        if self.needs_calibration and self.calibration != DEFAULT_CALIBRATION:
            extras.append(f"cal{self.calibration}")
        if "distill" in self.recover and self.recover_seconds != DEFAULT_RECOVER_SECONDS:
            extras.append(f"{self.recover_seconds:g}s")
        tag = f"[{','.join(extras)}]" if extras else ""
        return f"{self.method}{tag}@{self.sparsity:.2f}"

    def to_dict(self) -> dict:
        """The recipe as a flat dict. The data-aware fields appear only where they differ from the method's
        defaults, so a recipe written before they existed keeps its fingerprint (records are compared by it)."""
        d = asdict(self)
        plain = asdict(PruneRecipe(self.method, self.sparsity, scope=self.scope, norm=self.norm,
                                   allocation=self.allocation, seed=self.seed))
        for k in _DATA_AWARE_FIELDS:
            if d[k] == plain[k]:
                del d[k]
        return d


_DATA_AWARE_FIELDS = ("importance", "recover", "fit", "calibration", "recover_seconds")


def apply(model: nn.Module, recipe: PruneRecipe, calibration=None) -> nn.Module:
    """Prune ``model`` in place with ``recipe`` and return it, masked (structured methods may return a new one).

    Data-aware importance and recovery read ``calibration`` (a ``pruning.calibration.Calibration``).
    With a recovery, the dense model is copied first (it is the teacher), the groups are masked, and
    the masked model is repaired in place (``pruning.recover``); ``bake`` then shrinks it as usual and
    ``model.prunebench_recovery`` says what recovery did and how long it took."""
    if recipe.needs_calibration and calibration is None:
        steps = ", ".join(recipe.calibration_steps())
        raise RecipeError(f"recipe {recipe.label} needs a calibration set for {steps}; pass calibration=")
    if calibration is not None and recipe.needs_calibration:
        need = max(recipe.calibration_steps().values())
        if calibration.size < need:
            raise RecipeError(f"the calibration set has {calibration.size} sequences; recipe {recipe.label} needs at least {need}")
    dense = copy.deepcopy(model).eval() if recipe.recover != "none" else None
    spec = recipe.spec
    out = spec.fn(model, recipe, calibration) if spec.data_aware else spec.fn(model, recipe)
    out.prunebench_recipe = recipe  # type: ignore[attr-defined]
    if dense is not None:
        from .recover import recover

        out.prunebench_recovery = recover(out, dense, calibration, recipe)  # type: ignore[attr-defined]
    return out
