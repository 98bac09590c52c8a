"""The method registry: method configs and the transform registered against each config type.

A method family (unstructured masks, N:M, heads/FFN removal, depth, a peer library) is one frozen
config dataclass, a subclass of ``MethodConfig``, that checks itself in ``__post_init__``, and one
transform registered against that type with ``@register_transform(ConfigType)``; ``transform_for``
dispatches on ``type(config)`` (as torchao's ``quantize_`` does). Each method name of the family is
one ``register_method(name, ConfigType, ...)`` line in the family's module, saying which values of
the shared knobs it takes. A family's own knob is a field of its config: nothing here or in
``pruning.recipe`` changes for it. This module imports no method module (they import it).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, fields
from typing import Callable

from torch import nn

from .targets import SCOPES

__all__ = ["METHODS", "MethodConfig", "MethodSpec", "RecipeError", "TRANSFORMS", "method_spec", "register_method",
           "register_transform", "suggest", "transform_for"]

Transform = Callable[..., nn.Module]  # (model, config, calibration=None) -> model


class RecipeError(ValueError):
    """A recipe that cannot be built; the message names the field and the fix."""


@dataclass(frozen=True)
class MethodSpec:
    """What a method does, which config type configures it, and which values of the shared knobs it takes."""

    name: str
    config: type
    pattern: str  # unstructured | rows | n:m | heads | ffn | heads+ffn | layers | none
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
TRANSFORMS: dict[type, Transform] = {}


def register_method(name: str, config: type, **spec) -> MethodSpec:
    """Register method ``name`` as configured by ``config`` (a ``MethodConfig`` subclass with a registered transform)."""
    if name in METHODS:
        raise RuntimeError(f"method {name!r} registered twice")
    if not (isinstance(config, type) and issubclass(config, MethodConfig)):
        raise TypeError(f"method {name!r}: config must be a MethodConfig subclass, not {config!r}")
    METHODS[name] = MethodSpec(name=name, config=config, **spec)
    return METHODS[name]


def register_transform(config_type: type) -> Callable[[Transform], Transform]:
    """Register ``fn(model, config, calibration=None) -> model`` as the transform of ``config_type``."""

    def deco(fn: Transform) -> Transform:
        if config_type in TRANSFORMS:
            raise RuntimeError(f"a transform for {config_type.__name__} is registered twice")
        TRANSFORMS[config_type] = fn
        return fn

    return deco


def transform_for(config: MethodConfig) -> Transform:
    """The transform registered against ``type(config)``."""
    try:
        return TRANSFORMS[type(config)]
    except KeyError:
        raise RecipeError(f"no transform is registered for {type(config).__name__}; "
                          "decorate one with @register_transform") from None


def suggest(word: str, choices) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    near = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def method_spec(name: str) -> MethodSpec:
    """The registered method ``name`` (importing ``pruning`` registers every built-in method)."""
    if name not in METHODS:
        raise RecipeError(f"unknown method {name!r}{suggest(name, METHODS)}; known methods: {', '.join(sorted(METHODS))}")
    return METHODS[name]


# the shared knobs, in the order a label lists them; a family's own knobs follow in field order
_LABEL_ORDER = ("scope", "norm", "allocation", "seed", "importance")


@dataclass(frozen=True)
class MethodConfig:
    """Base of every method family's config: which method of the family, its target sparsity, a seed.

    Subclasses add the knobs their methods take as fields. The shared ones (``scope``, ``norm``,
    ``allocation``, ``importance``; None where the method's registration supplies the default) are
    checked here against the method's ``MethodSpec``; a family's own knob is checked in the family's
    ``__post_init__``, after calling this one."""

    method: str
    sparsity: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        spec = method_spec(self.method)
        if not isinstance(self, spec.config):
            raise RecipeError(f"method {self.method!r} is configured by {spec.config.__name__}, not {type(self).__name__}")
        s = self.sparsity
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or not 0.0 <= s < 1.0:
            raise RecipeError(f"sparsity {s!r} is outside [0, 1); pass a fraction such as 0.5")
        if spec.fixed_sparsity is not None:
            object.__setattr__(self, "sparsity", spec.fixed_sparsity)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise RecipeError(f"seed {self.seed!r} must be an integer")
        own = self.knob_names()
        for knob, check in (("scope", self._check_scope), ("norm", self._check_norm),
                            ("allocation", self._check_allocation), ("importance", self._check_importance)):
            if knob in own:  # the shared knobs this family has, checked against the method's registration
                check()

    @property
    def spec(self) -> MethodSpec:
        return method_spec(self.method)

    @classmethod
    def knob_names(cls) -> tuple[str, ...]:
        """The config's knobs: every field but ``method`` and ``sparsity``."""
        return tuple(f.name for f in fields(cls) if f.name not in ("method", "sparsity"))

    def default(self, knob: str):
        """The value of ``knob`` a label leaves out: the method's registered default, else the field's."""
        spec = self.spec
        registered = {"scope": "linear", "norm": spec.default_norm,
                      "allocation": spec.allocations[0] if spec.allocations else None,
                      "importance": spec.importances[0] if spec.importances else None}
        if knob in registered:
            return registered[knob]
        return next(f.default for f in fields(self) if f.name == knob)

    def label_extras(self) -> list[str]:
        """The knobs that differ from their defaults, as a label shows them (``l2``, ``global``, ``seed3``)."""
        names = sorted(self.knob_names(), key=lambda n: _LABEL_ORDER.index(n) if n in _LABEL_ORDER else len(_LABEL_ORDER))
        out = []
        for name in names:
            value = getattr(self, name)
            if value == self.default(name) or (name == "scope" and not self.spec.scoped):
                continue
            out.append(value if isinstance(value, str) else f"{name}{value}")
        return out

    def data_step(self) -> str | None:
        """The knob value that makes this config read a calibration set (e.g. importance 'fisher'), or None."""
        aware = self.spec.data_aware
        for name in ("importance", "allocation"):
            value = getattr(self, name, None)
            if value is not None and value in aware:
                return value
        return None

    # -- checks the families share --------------------------------------------------------
    def _choose(self, knob: str, choices: tuple[str, ...], default: str | None) -> None:
        """Fill ``knob`` with ``default`` when None, else refuse a value outside ``choices``."""
        value = getattr(self, knob)
        if value is None:
            object.__setattr__(self, knob, default)
        elif value not in choices:
            allowed = ", ".join(choices) or "none (leave it out)"
            hint = suggest(value, choices) if knob == "importance" else ""
            raise RecipeError(f"method {self.method!r} takes {knob} {allowed}, not {value!r}{hint}")

    def _check_scope(self) -> None:
        scope, spec = getattr(self, "scope"), self.spec
        if scope not in SCOPES:
            raise RecipeError(f"unknown scope {scope!r}{suggest(scope, SCOPES)}; choose one of {', '.join(SCOPES)}")
        if scope not in spec.scopes:
            raise RecipeError(f"method {self.method!r} takes scope {', '.join(spec.scopes)}, not {scope!r}; use scope = {spec.scopes[0]!r}")

    def _check_norm(self) -> None:
        self._choose("norm", self.spec.norms, self.spec.default_norm)

    def _check_importance(self) -> None:
        imp = self.spec.importances
        self._choose("importance", imp, imp[0] if imp else None)

    def _check_allocation(self) -> None:
        spec = self.spec
        if spec.allocations:
            self._choose("allocation", spec.allocations, spec.allocations[0])
        elif getattr(self, "allocation") is not None:
            raise RecipeError(f"method {self.method!r} takes no allocation; leave it out")
