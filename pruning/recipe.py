"""PruneRecipe (the short form of a Recipe), ``apply(model, recipe)`` and ``bake(model)``.

A Recipe is a typed **method config** (one frozen dataclass per method family, a
``pruning.registry.MethodConfig`` subclass that checks itself, its transform registered against its
type) plus a **recovery config** (``pruning.recover.RecoveryConfig``) and the calibration size the
data-aware steps read. ``PruneRecipe("heads+ffn", 0.5, importance="fisher", recover="lstsq")`` is its
flat, hashable short form, the one plans, records and caches use: on construction it builds and
checks ``recipe.config`` and ``recipe.recovery`` and fills the method's defaults back into its
fields. A family's own knobs (fields of its config beyond the shared ones) travel in ``options``
(``PruneRecipe.from_dict`` routes a flat mapping's extra keys there), so a new knob touches its
method's module only. This module imports no method module: importing ``pruning`` registers them.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from torch import nn

from .masks import remove_masks
from .recover import DEFAULT_RECOVER_SECONDS, FITS, RECOVERIES, RecoveryConfig, recover
from .registry import MethodConfig, MethodSpec, RecipeError, method_spec, suggest, transform_for
from .targets import SCOPES

__all__ = ["DEFAULT_CALIBRATION", "FITS", "MIN_CALIBRATION", "PruneRecipe", "RECOVERIES", "apply", "bake", "recipe_keys"]

log = logging.getLogger("pruning.recipe")

# fewest calibration sequences a data-aware step is allowed to run on (below it the estimates are noise)
MIN_CALIBRATION = {"importance": 8, "lstsq": 16, "distill": 8}
DEFAULT_CALIBRATION = 256

# the shared knobs a PruneRecipe hands to its method config where the config has them
_SHARED = ("scope", "norm", "allocation", "importance")
_DATA_AWARE_FIELDS = ("importance", "recover", "fit", "calibration", "recover_seconds")


@dataclass(frozen=True)
class PruneRecipe:
    """One way of pruning: method, target sparsity, the method's knobs, recovery, calibration size."""

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
    options: tuple[tuple[str, Any], ...] = field(default=(), metadata={"help": "the method config's own knobs, name -> value"})

    def __post_init__(self) -> None:
        spec = method_spec(self.method)
        config = self._method_config(spec)
        recovery = RecoveryConfig(self.recover, self.fit, self.recover_seconds)
        if recovery.method != "none" and not spec.structured:
            raise RecipeError(f"recovery {self.recover!r} needs a method that removes weights (heads, ffn, heads+ffn, layers), not {self.method!r}; use recover = 'none'")
        object.__setattr__(self, "config", config)
        object.__setattr__(self, "recovery", recovery)
        n = self.calibration
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise RecipeError(f"calibration {n!r} must be a positive number of sequences, e.g. 256")
        for step, need in self.calibration_steps().items():
            if n < need:
                raise RecipeError(f"calibration {n} is too small for {step}: it needs at least {need} sequences; set calibration >= {need}")

    def _method_config(self, spec: MethodSpec) -> MethodConfig:
        """Build (and so check) the method's config from the shared fields and ``options``, then fill the
        method's defaults back into the shared fields (``norm=None`` -> ``'l1'`` for heads, ...)."""
        opts = self.options.items() if isinstance(self.options, Mapping) else self.options
        try:
            opts = tuple(sorted((str(k), v) for k, v in opts))
            hash(opts)
        except (TypeError, ValueError):
            raise RecipeError(f"options {self.options!r} must map knob names to hashable values, e.g. {{'block': 16}}") from None
        object.__setattr__(self, "options", opts)
        own = spec.config.knob_names()
        kwargs: dict[str, Any] = {k: getattr(self, k) for k in _SHARED if k in own}
        for name, value in opts:
            if name not in own or name in kwargs or name == "seed":
                extra = [k for k in own if k not in _SHARED and k != "seed"]
                raise RecipeError(f"method {self.method!r} has no option {name!r}{suggest(name, extra)}; "
                                  f"its options: {', '.join(extra) or 'none'}")
            kwargs[name] = value
        config: MethodConfig = spec.config(method=self.method, sparsity=self.sparsity, seed=self.seed, **kwargs)
        if self.scope not in SCOPES:  # a method config without a scope ignores it, but it must be a scope
            raise RecipeError(f"unknown scope {self.scope!r}{suggest(self.scope, SCOPES)}; choose one of {', '.join(SCOPES)}")
        for knob in _SHARED:  # a shared knob the method's config does not have must be left out
            value = getattr(self, knob)
            if knob not in own and value is not None and knob != "scope":  # scope means nothing to unscoped methods
                if knob == "allocation":
                    raise RecipeError(f"method {self.method!r} takes no allocation; leave it out")
                raise RecipeError(f"method {self.method!r} takes {knob} none (leave it out), not {value!r}")
        object.__setattr__(self, "sparsity", config.sparsity)
        # a knob spelled out at its default is left out, so it changes neither label, fingerprint nor equality
        object.__setattr__(self, "options", tuple((k, v) for k, v in opts if not (type(v) is type(config.default(k))
                                                                                  and v == config.default(k))))
        for knob in _SHARED:
            if knob in own:
                object.__setattr__(self, knob, getattr(config, knob))
        return config

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PruneRecipe:
        """The recipe a flat mapping describes (``to_dict``'s output, a plan's recipe table): keys that are
        not PruneRecipe fields are the method config's own knobs."""
        names = {f.name for f in fields(cls)} - {"options"}
        opts = {k: v for k, v in d.items() if k not in names}
        return cls(**{k: v for k, v in d.items() if k in names}, options=opts)

    @classmethod
    def of(cls, config: MethodConfig, recovery: RecoveryConfig | None = None,
           calibration: int = DEFAULT_CALIBRATION) -> PruneRecipe:
        """The recipe of a method config and an optional recovery config (the long form of the short one)."""
        recovery = recovery or RecoveryConfig()
        knobs = {k: getattr(config, k) for k in config.knob_names()}
        shared = {k: knobs.pop(k) for k in (*_SHARED, "seed") if k in knobs}
        return cls(config.method, config.sparsity, **shared, recover=recovery.method, fit=recovery.fit,
                   calibration=calibration, recover_seconds=recovery.seconds, options=knobs)

    def calibration_steps(self) -> dict[str, int]:
        """The data-aware steps of this recipe and the fewest calibration sequences each needs."""
        steps: dict[str, int] = {}
        aware = self.config.data_step()
        if aware is not None:
            steps[f"importance {aware!r}"] = MIN_CALIBRATION["importance"]
        for part in self.recovery.parts:
            steps[f"recovery {part!r}"] = MIN_CALIBRATION[part]
        return steps

    @property
    def needs_calibration(self) -> bool:
        return bool(self.calibration_steps())

    @property
    def spec(self) -> MethodSpec:
        return method_spec(self.method)

    @property
    def pattern(self) -> str:
        """What the method removes: unstructured | rows | n:m | heads | ffn | heads+ffn | layers | none."""
        return self.spec.pattern

    @property
    def label(self) -> str:
        """Readable, unique id of the recipe, e.g. ``global-l1@0.50`` or ``global-l1[seed]@0.20``."""
        recovery = self.recovery.label_extras()  # [the recovery, then a non-default budget]
        cal = [f"cal{self.calibration}"] if self.needs_calibration and self.calibration != DEFAULT_CALIBRATION else []
        extras = self.config.label_extras() + recovery[:1] + cal + recovery[1:]
        tag = f"[{','.join(extras)}]" if extras else ""
        return f"{self.method}{tag}@{self.sparsity:.2f}"

    def to_dict(self) -> dict:
        """The recipe as a flat dict. The data-aware fields appear only where they differ from the method's
        defaults, so a recipe written before they existed keeps its fingerprint (records are compared by it);
        the method config's own knobs (``options``) follow, flat, where there are any."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "options"}
        plain = PruneRecipe(self.method, self.sparsity, scope=self.scope, norm=self.norm, allocation=self.allocation,
                            seed=self.seed, options=self.options)
        for k in _DATA_AWARE_FIELDS:
            if d[k] == getattr(plain, k):
                del d[k]
        d.update(self.options)
        return d


def recipe_keys(method: str) -> set[str]:
    """The keys a flat recipe mapping of ``method`` may have: PruneRecipe's fields and its config's own knobs."""
    spec = method_spec(method)
    return ({f.name for f in fields(PruneRecipe)} - {"options"}) | set(spec.config.knob_names())


def apply(model: nn.Module, recipe: PruneRecipe, calibration=None) -> nn.Module:
    """Prune ``model`` in place with ``recipe`` and return it, masked (structured methods may return a new one).

    The transform registered against ``type(recipe.config)`` runs. Data-aware importance and recovery
    read ``calibration`` (a ``pruning.calibration.Calibration``). With a recovery, the dense model is
    copied first (it is the teacher), the groups are masked, and the masked model is repaired in place
    (``pruning.recover``); ``bake`` then shrinks it as usual and ``model.prunebench_recovery`` says what
    recovery did and how long it took."""
    if recipe.needs_calibration and calibration is None:
        steps = ", ".join(recipe.calibration_steps())
        raise RecipeError(f"recipe {recipe.label} needs a calibration set for {steps}; pass calibration=")
    if calibration is not None and recipe.needs_calibration:
        need = max(recipe.calibration_steps().values())
        if calibration.size < need:
            raise RecipeError(f"the calibration set has {calibration.size} sequences; recipe {recipe.label} needs at least {need}")
    dense = copy.deepcopy(model).eval() if recipe.recovery.parts else None
    log.debug("%s: %s transform", recipe.label, type(recipe.config).__name__)
    out = transform_for(recipe.config)(model, recipe.config, calibration)
    out.prunebench_recipe = recipe  # type: ignore[attr-defined]
    if dense is not None:
        out.prunebench_recovery = recover(out, dense, calibration, recipe.recovery, recipe.seed)  # type: ignore[attr-defined]
    return out


def bake(model: nn.Module) -> nn.Module:
    """Make a pruned model permanent: ``prune.remove`` for mask methods, or the method's own bake
    (structured methods remove the masked heads/neurons physically)."""
    recipe = getattr(model, "prunebench_recipe", None)
    if recipe is not None and recipe.spec.bake is not None:
        out = recipe.spec.bake(model)
        out.prunebench_recipe = recipe
        return out
    return remove_masks(model)
