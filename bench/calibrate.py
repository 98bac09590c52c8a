"""Calibration sets from the corpus's calibration split, and data-aware variants built once per run.

A recipe that reads data (fisher/activation importance, Wanda, recovery) gets its calibration set
here: the first ``recipe.calibration`` articles of ``bench.data.corpus.splits(seed).calibration``
(title + first paragraph, never scored), tokenized by the model's own tokenizer to ``SEQ_LEN``
tokens. The pruned-and-recovered model is built once per (model, recipe) and kept as a
``pruning.snapshot.Snapshot`` in memory and, when ``PRUNEBENCH_VARIANT_CACHE`` names a directory
(the run's work directory: isolated cases and memory children read it too), on disk; every runtime
of the variant then restores it instead of pruning and recovering again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import torch
from torch import nn

from pruning import PruneRecipe, RecipeError, apply
from pruning.calibration import Calibration
from pruning.snapshot import Snapshot, restore, snapshot

__all__ = ["BATCH", "CACHE_ENV", "SEQ_LEN", "build_masked", "calibration_for", "check_calibration", "record_fields"]

log = logging.getLogger("bench.calibrate")

SEQ_LEN = 128  # calibration tokens per article (title + first paragraph rarely exceed it)
BATCH = 16
CACHE_ENV = "PRUNEBENCH_VARIANT_CACHE"
_BUILT: dict[tuple, tuple[Snapshot, float]] = {}
_CALIBRATIONS: dict[tuple, Calibration] = {}


def check_calibration(recipe: PruneRecipe, seed: int = 0) -> None:
    """Raise RecipeError if the corpus's calibration split is smaller than the recipe asks for."""
    from bench.data.corpus import splits

    have = len(splits(seed).calibration)
    if recipe.needs_calibration and recipe.calibration > have:
        raise RecipeError(f"calibration {recipe.calibration} is more than the corpus's calibration split ({have} articles); "
                          f"set calibration <= {have}")


def calibration_for(loaded, recipe: PruneRecipe, seed: int = 0) -> Calibration:
    """The calibration set a recipe reads: ``recipe.calibration`` corpus articles, tokenized by ``loaded``."""
    from bench.data.corpus import splits

    check_calibration(recipe, seed)
    key = (id(loaded), recipe.calibration, seed)
    if key not in _CALIBRATIONS:
        texts = [a.text for a in splits(seed).calibration[:recipe.calibration]]
        _CALIBRATIONS[key] = Calibration(tuple(loaded._encode(texts[i:i + BATCH], SEQ_LEN, False) for i in range(0, len(texts), BATCH)))
    return _CALIBRATIONS[key]


def _disk(loaded, recipe: PruneRecipe) -> Path | None:
    root = os.environ.get(CACHE_ENV)
    if not root:
        return None
    key = hashlib.sha256(repr((loaded.name, loaded.source, sorted(recipe.to_dict().items()))).encode()).hexdigest()[:16]
    return Path(root) / f"variant-{key}.pt"


def build_masked(loaded, recipe: PruneRecipe) -> tuple[nn.Module, float]:
    """The recipe's masked (and recovered) model on a fresh copy of ``loaded``, and the seconds the
    data-aware build took the first time (importance + recovery; 0 for recipes that read no data)."""
    if not recipe.needs_calibration:
        return apply(loaded.fresh(), recipe), 0.0
    key = (loaded.name, id(loaded), recipe)
    if key not in _BUILT:
        path = _disk(loaded, recipe)
        if path is not None and path.exists():
            snap, secs = torch.load(path, weights_only=False)
        else:
            t0 = time.perf_counter()
            model = apply(loaded.fresh(), recipe, calibration_for(loaded, recipe))
            secs = time.perf_counter() - t0
            snap = snapshot(model)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                torch.save((snap, secs), tmp)
                tmp.replace(path)
            log.info("built %s in %.1f s", recipe.label, secs)
        _BUILT[key] = (snap, secs)
    snap, secs = _BUILT[key]
    return restore(loaded.fresh(), snap), secs


def record_fields(loaded, recipe: PruneRecipe) -> dict:
    """Flat record fields of a variant built by ``build_masked``: importance, recovery method, seconds
    and loss curve, calibration size (recovery figures only once the variant has been built)."""
    snap, secs = _BUILT.get((loaded.name, id(loaded), recipe), (None, 0.0))
    rec = getattr(snap, "recovery", None)
    curve = list(getattr(rec, "loss_curve", ()) or ())
    if len(curve) > 50:  # keep the record small: 50 evenly spaced points of the curve
        step = len(curve) / 50
        curve = [curve[int(i * step)] for i in range(50)] + [curve[-1]]
    return {
        "importance": recipe.importance,
        "recovery_method": recipe.recover,
        "recovery_fit": recipe.fit if "lstsq" in recipe.recover else None,
        "recovery_seconds": round(rec.seconds, 3) if rec is not None else None,
        "distill_seconds": round(rec.distill_seconds, 3) if rec is not None and rec.distill_seconds else None,
        "distill_loss": [round(x, 6) for x in curve] or None,
        "distill_steps": rec.steps if rec is not None and rec.distill_seconds else None,
        # per fitted projection: relative pre-LayerNorm error before / after and the ridge strength it chose
        "recovery_errors": [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in e.items() if k != "validation"}
                            for e in rec.errors] if rec is not None and rec.errors else None,
        "build_seconds": round(secs, 3) if snap is not None else None,
        "calibration_size": recipe.calibration if recipe.needs_calibration else None,
    }
