"""Repair a pruned encoder after heads / neurons / layers are removed, without labels.

``RecoveryConfig`` says which repair a recipe runs after the method's transform; ``recover`` runs it
on the masked model, in place, against a copy of the dense model:

- ``lstsq`` (``pruning.recover_lstsq``, after Kwon et al. 2022): each layer's output projections
  refitted by least squares so what reaches each LayerNorm matches the dense model's (``fit``:
  ``ridge``, the default, its strength picked per projection from ``pruning.recover_lstsq.RIDGE_GRID``,
  or Kwon's per-group ``scales``), folded into the weights;
- ``distill`` (``pruning.recover_distill``): training towards the dense model's mean-pooled
  embeddings for a stated time budget;
- ``lstsq+distill``: the one, then the other.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from torch import nn

from .calibration import Calibration
from .recover_distill import distill
from .recover_lstsq import RIDGE, layer_errors, lstsq
from .registry import RecipeError, suggest

__all__ = ["DEFAULT_RECOVER_SECONDS", "FITS", "RECOVERIES", "RIDGE", "Recovery", "RecoveryConfig", "distill",
           "layer_errors", "lstsq", "recover"]

log = logging.getLogger("pruning.recover")

# recovery after removal; lstsq fits: ridge re-fit of the output projections, or Kwon's one scale per
# kept head / neuron
RECOVERIES = ("none", "lstsq", "distill", "lstsq+distill")
FITS = ("ridge", "scales")
DEFAULT_RECOVER_SECONDS = 120.0


@dataclass(frozen=True)
class RecoveryConfig:
    """Which repair runs after a structured method: ``method`` (none | lstsq | distill | lstsq+distill),
    the lstsq ``fit`` (ridge | scales) and the distillation budget in ``seconds``; checked on construction."""

    method: str = "none"
    fit: str = "ridge"
    seconds: float = DEFAULT_RECOVER_SECONDS

    def __post_init__(self) -> None:
        if self.method not in RECOVERIES:
            raise RecipeError(f"unknown recovery {self.method!r}{suggest(str(self.method), RECOVERIES)}; choose one of {', '.join(RECOVERIES)}")
        if self.fit not in FITS:
            raise RecipeError(f"unknown lstsq fit {self.fit!r}; choose one of {', '.join(FITS)}")
        secs = self.seconds
        if isinstance(secs, bool) or not isinstance(secs, (int, float)) or not math.isfinite(secs) or secs <= 0:
            raise RecipeError(f"recover_seconds {secs!r} must be a positive number of seconds, e.g. 120")

    @property
    def parts(self) -> tuple[str, ...]:
        """The steps it runs, in order (empty for ``none``)."""
        return () if self.method == "none" else tuple(self.method.split("+"))

    def label_extras(self) -> list[str]:
        """What a recipe label shows of it: the method (``lstsq-scales`` for a non-default fit) and a
        non-default distillation budget (``60s``)."""
        if self.method == "none":
            return []
        extras = [self.method if self.fit == FITS[0] or "lstsq" not in self.parts else self.method.replace("lstsq", f"lstsq-{self.fit}")]
        if "distill" in self.parts and self.seconds != DEFAULT_RECOVER_SECONDS:
            extras.append(f"{self.seconds:g}s")
        return extras


@dataclass(frozen=True)
class Recovery:
    """What recovery did: method, seconds, and per fitted projection the relative reconstruction
    error of the pre-LayerNorm sum before and after (``errors``: ``[{layer, part, before, after}]``)."""

    method: str
    fit: str | None
    seconds: float
    calibration_size: int
    errors: tuple[dict, ...] = ()
    scales: tuple[dict, ...] = ()  # fit=scales: [{layer, part, kept, scales}] (kept input groups, their scales)
    distill_seconds: float = 0.0
    loss_curve: tuple[float, ...] = ()  # distillation loss, one per step
    steps: int = 0


def recover(student: nn.Module, dense: nn.Module, calibration: Calibration | None, config: RecoveryConfig,
            seed: int = 0) -> Recovery:
    """Run ``config`` (lstsq, distill or lstsq+distill) on the masked ``student``, in place; ``dense`` is the
    teacher, ``seed`` seeds the distillation's batch order."""
    if config.method == "none":
        return Recovery("none", None, 0.0, 0)
    if calibration is None:
        raise RecipeError(f"recovery {config.method!r} needs a calibration set")
    t0 = time.perf_counter()
    errors: list[dict] = []
    scales: list[dict] = []
    curve: list[float] = []
    spent, steps = 0.0, 0
    if "lstsq" in config.parts:
        errors, scales = lstsq(student, dense, calibration, config.fit)
    if "distill" in config.parts:
        curve, spent, steps = distill(student, dense, calibration, config.seconds, seed)
    seconds = time.perf_counter() - t0
    log.info("recovery %s took %.1f s on %d calibration sequences", config.method, seconds, calibration.size)
    return Recovery(config.method, config.fit if "lstsq" in config.parts else None, seconds, calibration.size,
                    tuple(errors), tuple(scales), spent, tuple(curve), steps)
