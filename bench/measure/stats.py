"""Per-item scores of embeddings (linear probe, kNN vote, retrieval rank) and their statistics: a percentile
bootstrap 95% CI over evaluation items (seeded), and the paired drop vs dense on the same items with the same
resamples, so a variant identical to dense has a drop of exactly 0. Used by :mod:`bench.measure.quality`.

Ties never count as hits, so a collapsed model (zero or constant embeddings) scores chance on every task metric:

- retrieval: a document tied with the query's own is as likely to be ranked first; each query scores the
  expected recall@1 and reciprocal rank@10 under a random order of the tied documents. Chance (every
  similarity equal) is recall@1 = 1/n and MRR@10 = H(min(n, 10))/n for n documents;
- kNN: items tied with the k-th nearest share its place (each gets an equal fraction of the remaining votes),
  so a constant embedding votes the train set's class proportions: it predicts the train majority class and
  scores that class's share of the eval items (chance for accuracy: the majority-class rate);
- linear probe: constant features leave only the intercept, which predicts the train majority class (the
  same chance);
- Spearman: a constant cosine has no order, so its correlation is 0 (not NaN).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch

__all__ = ["BOOTSTRAP", "SEED", "TIE", "Estimate", "estimates", "knn_vote", "probe_predictions", "retrieval_scores",
           "unit_rows"]

log = logging.getLogger("bench.measure.stats")

BOOTSTRAP = 1000  # resamples of the evaluation items
SEED = 0
TIE = 1e-9  # cosine similarities closer than this are tied (identical rows can differ by rounding in a matrix product)


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
    """Majority label of the k nearest (cosine) train items; ties go to the label with the larger summed similarity.

    Train items tied with the k-th nearest share the votes left after the strictly nearer ones, so the index order
    of tied items never decides the vote (a constant embedding votes the train set's class proportions)."""
    sim = unit_rows(test) @ unit_rows(train).T
    k = min(k, sim.shape[1])
    kth = -np.partition(-sim, k - 1, axis=1)[:, k - 1:k]
    above = sim > kth + TIE
    tied = ~above & (sim >= kth - TIE)
    share = (k - above.sum(1, keepdims=True)) / tied.sum(1, keepdims=True)
    weight = np.where(above, 1.0, np.where(tied, share, 0.0))
    onehot = np.eye(classes)[y_train]
    counts, sims = weight @ onehot, (weight * sim) @ onehot
    best = counts >= counts.max(1, keepdims=True) - TIE
    return np.where(best, sims, -np.inf).argmax(1)


def retrieval_scores(queries: torch.Tensor, docs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per query, recall@1 and reciprocal rank@10 of its own document (same index) among all documents.

    Documents tied with the own one (within :data:`TIE`) are ranked in a random order: the scores are their
    expectation over that order, so ties are never hits (all-equal similarities give chance, 1/n)."""
    sim = unit_rows(queries) @ unit_rows(docs).T
    own = np.diag(sim)[:, None]
    better = (sim > own + TIE).sum(1)
    tied = (sim >= own - TIE).sum(1) - better  # the own document included
    ranks = better[:, None] + np.arange(1, 11)[None, :]  # the own document's possible ranks, 10 at most counted
    inside = np.arange(10)[None, :] < tied[:, None]
    rr = np.where(inside & (ranks <= 10), 1.0 / ranks, 0.0).sum(1) / tied
    r1 = np.where(better == 0, 1.0 / tied, 0.0)
    return r1, rr


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
    den = np.sqrt((x * x).sum(-1) * (y * y).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (x * y).sum(-1) / np.where(den > 0, den, 1.0), 0.0)  # no order (a constant): 0


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
