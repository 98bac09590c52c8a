"""Per-item scores of embeddings (linear probe, kNN vote, retrieval rank) and their statistics: a percentile
bootstrap 95% CI over evaluation items (seeded), and the paired drop vs dense on the same items with the same
resamples, so a variant identical to dense has a drop of exactly 0. Used by :mod:`bench.measure.quality`."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch

__all__ = ["BOOTSTRAP", "SEED", "Estimate", "estimates", "knn_vote", "probe_predictions", "retrieval_scores", "unit_rows"]

log = logging.getLogger("bench.measure.stats")

BOOTSTRAP = 1000  # resamples of the evaluation items
SEED = 0


def unit_rows(x: torch.Tensor) -> np.ndarray:
    """Each row scaled to unit length (float64), so a matrix product is cosine similarity."""
    return torch.nn.functional.normalize(x.double(), dim=1).numpy()


def probe_predictions(train: torch.Tensor, y_train: np.ndarray, test: torch.Tensor, seed: int) -> np.ndarray:
    """Labels a logistic-regression probe fit on frozen ``train`` embeddings predicts for ``test``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(solver="lbfgs", max_iter=1000, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(train.double().numpy(), y_train)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        log.debug("linear probe did not converge in 1000 lbfgs iterations; scored as it stands")
    return clf.predict(test.double().numpy())


def knn_vote(train: torch.Tensor, y_train: np.ndarray, test: torch.Tensor, k: int, classes: int) -> np.ndarray:
    """Majority label of the k nearest (cosine) train items; ties go to the label with the larger summed similarity."""
    sim = unit_rows(test) @ unit_rows(train).T
    k = min(k, sim.shape[1])
    nn_idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    labels = y_train[nn_idx]
    rows = np.repeat(np.arange(len(sim)), k)
    counts = np.zeros((len(sim), classes))
    sims = np.zeros((len(sim), classes))
    np.add.at(counts, (rows, labels.ravel()), 1)
    np.add.at(sims, (rows, labels.ravel()), np.take_along_axis(sim, nn_idx, 1).ravel())
    best = counts == counts.max(1, keepdims=True)
    return np.where(best, sims, -np.inf).argmax(1)


def retrieval_scores(queries: torch.Tensor, docs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each query's own document (same index) among all documents: recall@1 and reciprocal rank@10."""
    sim = unit_rows(queries) @ unit_rows(docs).T
    own = np.diag(sim)
    rank = 1 + (sim > own[:, None]).sum(1)
    return (rank == 1).astype(float), np.where(rank <= 10, 1.0 / rank, 0.0)


@dataclass(frozen=True)
class Estimate:
    """A figure with its bootstrap 95% CI and, for a variant, its paired drop vs dense (dense - variant,
    positive = quality lost) with that drop's CI."""

    value: float
    lo: float
    hi: float
    drop: float | None = None
    drop_lo: float | None = None
    drop_hi: float | None = None

    @property
    def measurable_drop(self) -> bool | None:
        """True when the drop's CI lies above 0 (quality measurably lost); None without a drop."""
        return None if self.drop_lo is None else self.drop_lo > 0


@lru_cache(maxsize=16)
def _indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """The bootstrap resamples of n items: one seeded draw, shared by dense and every variant (paired)."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _spearman(data: np.ndarray, idx: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    x, y = rankdata(data[idx, 0], axis=-1), rankdata(data[idx, 1], axis=-1)
    x, y = x - x.mean(-1, keepdims=True), y - y.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x * y).sum(-1) / np.sqrt((x * x).sum(-1) * (y * y).sum(-1))


def _stat(name: str, data: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return _spearman(data, idx) if name == "spearman" else data[idx].mean(-1)


def _ci(boot: np.ndarray) -> tuple[float, float]:
    lo, hi = np.nanpercentile(boot, [2.5, 97.5])
    return float(lo), float(hi)


def estimates(variant: Mapping[str, np.ndarray], dense: Mapping[str, np.ndarray] | None = None,
              resamples: int = BOOTSTRAP, seed: int = SEED) -> dict[str, Estimate]:
    """Each figure of ``variant``'s per-item scores with its CI, and (for each figure ``dense``, scored on the same
    items, also has) the paired drop dense - variant with its CI."""
    out = {}
    for name, v in variant.items():
        n = len(v)
        every = np.arange(n)[None]
        idx = _indices(n, resamples, seed)
        value, boot = float(_stat(name, v, every)[0]), _stat(name, v, idx)
        est = Estimate(value, *_ci(boot))
        d = None if dense is None else dense.get(name)
        if d is not None:
            if d.shape != v.shape:
                raise ValueError(f"{name}: dense and variant were scored on different items ({d.shape} vs {v.shape})")
            if name == "spearman":
                drop, dboot = float(_stat(name, d, every)[0]) - value, _stat(name, d, idx) - boot
            else:
                diff = d - v
                drop, dboot = float(diff.mean()), diff[idx].mean(-1)
            est = replace(est, drop=drop, drop_lo=_ci(dboot)[0], drop_hi=_ci(dboot)[1])
        out[name] = est
    return out
