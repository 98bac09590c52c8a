"""Latency as a ratio to the case's baseline, timed in balanced blocks in one process.

Absolute times drift +-30% on shared machines, so the tracked figure is a ratio to the baseline timed
beside it. Rounds are grouped in blocks (``bench.measure.paired``): within a block the two sides
alternate (baseline first, then variant first, ...), an even number of pairs, so an effect of running
first cancels; the block's ratio is the geometric mean of its pair ratios. The 95% CI is a t interval
over the blocks' log ratios, so drift between blocks widens it instead of hiding in thousands of
correlated pairs. A case asks "faster, slower, or within the +-10% band?": its verdict is decided once
the CI lies entirely inside the band or entirely outside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["BAND", "FLAG_TARGET", "Latency", "sample_stats", "verdict"]

BAND = 0.10  # a ratio within 1 +- BAND is "unchanged"; a case's question is which side of the band it is on
FLAG_TARGET = 0.05  # without a precision target, an undecided figure wider than +-5% is flagged
DRIFT_P = 0.01  # two-sided p of the halves' difference below which blocks are said to drift


def sample_stats(samples) -> dict[str, float | int | str | list[float]]:
    """Summary of raw timings (seconds) with the keys of a pytest-benchmark ``stats`` entry, so rounds
    timed outside the fixture sit in benchmark.json like the fixture's own.

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


def verdict(lo: float, hi: float, band: float = BAND) -> str:
    """``faster`` / ``slower`` when the CI lies entirely below / above the band around 1, ``unchanged`` when
    it lies entirely inside it, ``undecided`` otherwise (more rounds could still change the answer)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "undecided"
    if hi < 1 - band:
        return "faster"
    if lo > 1 + band:
        return "slower"
    if 1 - band <= lo and hi <= 1 + band:
        return "unchanged"
    return "undecided"


def _t_interval(logs: np.ndarray, alpha: float) -> tuple[float, float]:
    """Two-sided 1 - alpha t interval of the mean of ``logs`` (nan with fewer than two values)."""
    if logs.size < 2:
        return (float("nan"), float("nan"))
    from scipy.stats import t

    half = float(t.ppf(1 - alpha / 2, logs.size - 1)) * float(logs.std(ddof=1)) / math.sqrt(logs.size)
    return float(logs.mean() - half), float(logs.mean() + half)


def _drifts(logs: np.ndarray, size: float) -> bool:
    """Whether the second half of the blocks differs from the first by more than ``size`` (relative) and
    beyond chance (Welch's t test, p < DRIFT_P)."""
    if logs.size < 4:
        return False
    from scipy.stats import ttest_ind

    first, second = logs[: logs.size // 2], logs[logs.size // 2:]
    if abs(math.expm1(second.mean() - first.mean())) <= size:
        return False
    if first.std() == 0 and second.std() == 0:
        return True
    return bool(ttest_ind(first, second, equal_var=False).pvalue < DRIFT_P)


@dataclass(frozen=True)
class Latency:
    """Raw paired samples (seconds, in timing order), the blocks they were timed in, and the statistics
    derived from them. ``target`` is the precision target (relative CI half-width) where a gate needs
    one, None where the verdict is the question; ``alpha`` is the error rate of this interval (smaller
    than 0.05 after sequential looks, see ``bench.measure.paired``); ``stop`` says why timing ended."""

    variant_s: tuple[float, ...]
    baseline_s: tuple[float, ...]
    target: float | None = None
    block_pairs: int = 2
    alpha: float = 0.05
    band: float = BAND
    stop: str | None = None
    ratios: tuple[float, ...] = field(init=False)
    block_ratios: tuple[float, ...] = field(init=False)
    ratio: float = field(init=False)
    ratio_lo: float = field(init=False)
    ratio_hi: float = field(init=False)

    def __post_init__(self) -> None:
        if len(self.variant_s) != len(self.baseline_s) or not self.variant_s:
            raise ValueError("latency needs equal, non-empty lists of paired samples")
        if min(self.variant_s + self.baseline_s) <= 0:
            raise ValueError("latency samples must be positive")
        if self.block_pairs < 1:
            raise ValueError(f"block_pairs must be at least 1, got {self.block_pairs}")
        r = np.asarray(self.variant_s) / np.asarray(self.baseline_s)
        n_blocks = max(1, r.size // self.block_pairs)
        blocks = np.array([b.mean() for b in np.array_split(np.log(r[: n_blocks * self.block_pairs]), n_blocks)])
        lo, hi = _t_interval(blocks, self.alpha)
        object.__setattr__(self, "ratios", tuple(float(x) for x in r))
        object.__setattr__(self, "block_ratios", tuple(float(x) for x in np.exp(blocks)))
        object.__setattr__(self, "ratio", float(np.exp(blocks.mean())))
        object.__setattr__(self, "ratio_lo", math.exp(lo) if math.isfinite(lo) else float("nan"))
        object.__setattr__(self, "ratio_hi", math.exp(hi) if math.isfinite(hi) else float("nan"))

    @property
    def rounds(self) -> int:
        return len(self.ratios)

    @property
    def blocks(self) -> int:
        return len(self.block_ratios)

    @property
    def half_width(self) -> float:
        """CI half-width relative to the ratio (nan with fewer than two blocks)."""
        return (self.ratio_hi - self.ratio_lo) / 2 / self.ratio

    @property
    def cv(self) -> float:
        """Coefficient of variation of the per-pair ratios (recorded; per-forward jitter, not the figure's error)."""
        r = np.asarray(self.ratios)
        return float(r.std(ddof=1) / r.mean()) if r.size > 1 else float("nan")

    @property
    def verdict(self) -> str:
        return verdict(self.ratio_lo, self.ratio_hi, self.band)

    @property
    def decided(self) -> bool:
        """Whether more rounds could no longer change the verdict (the CI is inside or outside the band)."""
        return self.verdict != "undecided"

    @property
    def drift(self) -> bool:
        """Whether the ratio moved between the first and second half of the blocks (beyond chance and the target)."""
        return _drifts(np.log(np.asarray(self.block_ratios)), self.target or FLAG_TARGET)

    @property
    def unstable(self) -> bool:
        """What makes the figure untrustworthy: drift between blocks, or a CI wider than the precision
        target (with a target: always; without one: only while the verdict is undecided)."""
        wide = not (self.half_width <= (self.target or FLAG_TARGET))
        return self.drift or (wide and (self.target is not None or not self.decided))

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

    def record_fields(self) -> dict[str, float | int | bool | str | None]:
        """The flat record fields: latency_ms and baseline_latency_ms (medians), latency_ratio[_lo|_hi],
        latency_cv, rounds, unstable, the variant's latency_p90_ms / latency_p99_ms (None without enough
        rounds), and the protocol's latency_blocks, latency_half_width, latency_verdict, latency_decided,
        latency_drift, latency_stop."""
        p90, p99 = self.variant_percentile_ms(0.90), self.variant_percentile_ms(0.99)
        hw = self.half_width
        return {"latency_ms": round(self.variant_ms, 4), "baseline_latency_ms": round(self.baseline_ms, 4),
                "latency_ratio": self.ratio, "latency_ratio_lo": self.ratio_lo, "latency_ratio_hi": self.ratio_hi,
                "latency_cv": self.cv, "rounds": self.rounds, "unstable": self.unstable,
                "latency_p90_ms": None if p90 is None else round(p90, 4), "latency_p99_ms": None if p99 is None else round(p99, 4),
                "latency_blocks": self.blocks, "latency_half_width": hw if math.isfinite(hw) else None,
                "latency_verdict": self.verdict, "latency_decided": self.decided, "latency_drift": self.drift,
                "latency_stop": self.stop}
