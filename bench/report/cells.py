"""How one figure reads in the report: a number, a latency ratio with its CI, a ratio in words.

Pure functions shared by the report's sections (``markdown``, ``claim``, ``structured``).
"""

from __future__ import annotations

import math

__all__ = ["ci_cell", "fmt", "is_num", "latency_verdict", "ratio_word"]


def is_num(x) -> bool:
    """Whether ``x`` is a figure (not None, not NaN)."""
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def latency_verdict(ratio, lo, hi) -> str:
    """Say what the latency ratio's 95% CI shows: faster, slower, or no measurable change."""
    if not all(is_num(v) for v in (ratio, lo, hi)):
        return "not measured"
    ci = f"{ratio:.2f}x [{lo:.2f}, {hi:.2f}]"
    if hi < 1.0:
        return f"faster: {ci}"
    if lo > 1.0:
        return f"slower: {ci}"
    return f"no measurable change: {ci}"


def ratio_word(r, noise: float = 0.0) -> str:
    """``smaller (0.50x)``, ``larger (1.20x)``, or ``unchanged (1.00x)`` within ``noise`` of 1; ``n/a`` without a figure."""
    if not is_num(r):
        return "n/a"
    if abs(r - 1) <= noise:
        return f"unchanged ({r:.2f}x)"
    return f"{'smaller' if r < 1 else 'larger'} ({r:.2f}x)"


def fmt(x, spec: str = ".2f", suffix: str = "") -> str:
    """``x`` in ``spec`` (and ``suffix``), or "–" when there is no figure."""
    return f"{x:{spec}}{suffix}" if is_num(x) else "–"


def ci_cell(row: dict) -> str:
    """``0.80 [0.75, 0.85]``: a record's latency ratio with its 95% CI, ⚠ when unstable; "–" when not measured."""
    if not is_num(row.get("latency_ratio")):
        return "–"
    flag = " ⚠" if row.get("unstable") else ""
    return f"{row['latency_ratio']:.2f} [{row['latency_ratio_lo']:.2f}, {row['latency_ratio_hi']:.2f}]{flag}"
