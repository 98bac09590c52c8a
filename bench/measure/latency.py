"""Latency as a ratio to the case's baseline, measured interleaved round by round in one process.

Absolute times drift +-30% on shared machines, so the tracked figure is the median of per-pair
ratios (variant / baseline, timed back to back) with a percentile-bootstrap 95% CI. Rounds go on
until the CI half-width is within the target or the time cap is reached.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = ["Latency", "PairedTimer", "bootstrap_median_ci", "measure_paired", "sample_stats"]

Z95 = 1.959964
# Asymptotic efficiency of the median vs the mean for normal data: sd(median) ~ 1.2533 sd / sqrt(n).
_MEDIAN_SE = 1.2533


def bootstrap_median_ci(values, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the median (deterministic for a given seed)."""
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    meds = np.median(v[rng.integers(0, v.size, size=(n_boot, v.size))], axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(meds, [alpha, 1 - alpha])
    return float(lo), float(hi)


def sample_stats(samples) -> dict[str, float | int | str | list[float]]:
    """Summary of raw timings (seconds) with the keys of a pytest-benchmark ``stats`` entry, so rounds
    timed outside the fixture (an isolated child's) sit in benchmark.json like the fixture's own.

    Quartiles are numpy's linear interpolation; outliers are counted as pytest-benchmark defines them
    (beyond mean +- stddev, and beyond the quartiles +- 1.5 IQR)."""
    v = np.asarray(samples, dtype=float)
    if v.size == 0:
        raise ValueError("sample_stats needs at least one sample")
    mean = float(v.mean())
    stddev = float(v.std(ddof=1)) if v.size > 1 else 0.0
    q1, q3 = (float(x) for x in np.quantile(v, [0.25, 0.75]))
    median = float(np.median(v))  # as the record's latency_ms
    iqr = q3 - q1
    lo_fence, hi_fence = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    inside = v[(v >= lo_fence) & (v <= hi_fence)]
    sd_out = int(((v < mean - stddev) | (v > mean + stddev)).sum())
    iqr_out = int(v.size - inside.size)
    total = float(v.sum())
    return {"min": float(v.min()), "max": float(v.max()), "mean": mean, "stddev": stddev, "rounds": int(v.size),
            "median": median, "iqr": iqr, "q1": q1, "q3": q3, "iqr_outliers": iqr_out, "stddev_outliers": sd_out,
            "outliers": f"{sd_out};{iqr_out}", "ld15iqr": float(inside.min()), "hd15iqr": float(inside.max()),
            "ops": v.size / total if total else 0.0, "total": total, "data": [float(x) for x in v], "iterations": 1}


@dataclass(frozen=True)
class Latency:
    """Raw paired samples (seconds) and the statistics derived from them."""

    variant_s: tuple[float, ...]
    baseline_s: tuple[float, ...]
    target: float
    ratios: tuple[float, ...] = field(init=False)
    ratio: float = field(init=False)
    ratio_lo: float = field(init=False)
    ratio_hi: float = field(init=False)

    def __post_init__(self) -> None:
        if len(self.variant_s) != len(self.baseline_s) or not self.variant_s:
            raise ValueError("latency needs equal, non-empty lists of paired samples")
        if min(self.variant_s + self.baseline_s) <= 0:
            raise ValueError("latency samples must be positive")
        r = tuple(v / b for v, b in zip(self.variant_s, self.baseline_s))
        lo, hi = bootstrap_median_ci(r)
        object.__setattr__(self, "ratios", r)
        object.__setattr__(self, "ratio", float(np.median(r)))
        object.__setattr__(self, "ratio_lo", lo)
        object.__setattr__(self, "ratio_hi", hi)

    @property
    def rounds(self) -> int:
        return len(self.ratios)

    @property
    def half_width(self) -> float:
        """CI half-width relative to the median ratio (nan with fewer than two pairs)."""
        return (self.ratio_hi - self.ratio_lo) / 2 / self.ratio

    @property
    def cv(self) -> float:
        """Coefficient of variation of the per-pair ratios."""
        r = np.asarray(self.ratios)
        return float(r.std(ddof=1) / r.mean()) if r.size > 1 else float("nan")

    @property
    def unstable(self) -> bool:
        return not (self.half_width <= self.target) or self.cv >= 0.10

    def variant_percentile_ms(self, q: float) -> float | None:
        """The variant's ``q`` quantile in ms, or None when the rounds cannot support it.

        A q-quantile needs at least 1 / (1 - q) samples (p90: 10, p99: 100) so that some sample lies
        above it; with fewer, any number would only be the maximum under another name."""
        if not 0 < q < 1:
            raise ValueError(f"quantile {q!r} must be in (0, 1)")
        if len(self.variant_s) < math.ceil(round(1 / (1 - q), 9)):
            return None
        return float(np.quantile(self.variant_s, q) * 1e3)

    @property
    def variant_ms(self) -> float:
        return float(np.median(self.variant_s) * 1e3)

    @property
    def baseline_ms(self) -> float:
        return float(np.median(self.baseline_s) * 1e3)

    def record_fields(self) -> dict[str, float | int | bool | None]:
        """The flat record fields: latency_ms and baseline_latency_ms (medians), latency_ratio[_lo|_hi],
        latency_cv, rounds, unstable, and the variant's latency_p90_ms / latency_p99_ms (None without enough rounds)."""
        p90, p99 = self.variant_percentile_ms(0.90), self.variant_percentile_ms(0.99)
        return {"latency_ms": round(self.variant_ms, 4), "baseline_latency_ms": round(self.baseline_ms, 4),
                "latency_ratio": self.ratio, "latency_ratio_lo": self.ratio_lo, "latency_ratio_hi": self.ratio_hi,
                "latency_cv": self.cv, "rounds": self.rounds, "unstable": self.unstable,
                "latency_p90_ms": None if p90 is None else round(p90, 4), "latency_p99_ms": None if p99 is None else round(p99, 4)}


class PairedTimer:
    """Times the baseline once per round, as pytest-benchmark's ``pedantic(setup=...)`` hook."""

    def __init__(self, baseline: Callable[[], float]):
        self.baseline = baseline
        self.samples: list[float] = []

    def time_baseline(self) -> None:
        self.samples.append(self.baseline())


def rounds_needed(ratios, target: float) -> int:
    """Rounds for the median's CI half-width to reach ``target`` (normal approximation on log ratios)."""
    logs = np.log(np.asarray(ratios, dtype=float))
    sd = float(logs.std(ddof=1)) if logs.size > 1 else 0.1
    return math.ceil((Z95 * _MEDIAN_SE * sd / target) ** 2)


def measure_paired(
    variant: Callable[[], float],
    baseline: Callable[[], float],
    *,
    target: float = 0.03,
    time_cap_s: float = 20.0,
    warmup: int = 2,
    min_rounds: int = 8,
    max_rounds: int = 400,
    pilot: int = 5,
    benchmark=None,
) -> Latency:
    """Paired timing: warm-up, a pilot to size the run, the main run, then extra rounds until the CI
    target or the time cap. ``variant``/``baseline`` return seconds for one call. With a
    pytest-benchmark fixture, the main run goes through ``benchmark.pedantic`` so its JSON holds it."""
    start = time.perf_counter()
    for _ in range(warmup):
        baseline()
        variant()
    v: list[float] = []
    b: list[float] = []

    def pair(i: int) -> None:  # alternate order so neither side always runs first
        if i % 2:
            v.append(variant())
            b.append(baseline())
        else:
            b.append(baseline())
            v.append(variant())

    for i in range(pilot):
        pair(i)
    per_pair = (time.perf_counter() - start) / (warmup + pilot)
    left = time_cap_s - (time.perf_counter() - start)
    want = max(min_rounds, rounds_needed([x / y for x, y in zip(v, b)], target)) - len(v)
    n_main = int(max(1, min(want, max_rounds - len(v), left / per_pair)))
    if benchmark is not None:
        timer = PairedTimer(baseline)
        benchmark.pedantic(variant, setup=timer.time_baseline, rounds=n_main, warmup_rounds=0, iterations=1)
        v += list(benchmark.stats.stats.data)
        b += timer.samples
    else:
        for i in range(n_main):
            pair(i)
    while len(v) < max_rounds and time.perf_counter() - start + per_pair < time_cap_s:
        lat = Latency(tuple(v), tuple(b), target)
        if lat.half_width <= target and len(v) >= min_rounds:
            break
        for i in range(max(2, len(v) // 4)):
            pair(i)
    return Latency(tuple(v), tuple(b), target)
