"""The roofline of the alternatives section: each row's achieved GFLOP/s and its fraction of the matmul peak
that bounds it (``bench.measure.roofline``: measured per dtype at the run's start), and one sentence on how far
the fastest row is from that limit. Records made before these fields existed show "–" and no sentence.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
import pandas as pd

__all__ = ["COLUMNS", "cells", "sentence"]

COLUMNS = ("GFLOP/s", "of peak")
_SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "int8": "int8"}


def _num(x) -> bool:
    return isinstance(x, Real) and not isinstance(x, (bool, np.bool_)) and not math.isnan(x)


def _g(x: float) -> str:
    """A rate or a time to three significant figures, without an exponent: 1680, 215, 1.68, 0.00272."""
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _pct(x: float) -> str:
    """A fraction as a percentage, two significant figures below 1% (0.061%), one decimal above (40.0%)."""
    return f"{x:.1%}" if x >= 0.01 else f"{x * 100:.2g}%"


def cells(r: dict) -> dict[str, str]:
    """A row's roofline cells: achieved GFLOP/s, and its fraction of the peak with that peak's dtype; "–" where the
    record has no figure (an old record, a GPU row, a case that was not timed)."""
    achieved, frac, dtype = r.get("achieved_gflops"), r.get("peak_fraction"), r.get("peak_dtype")
    return {COLUMNS[0]: _g(achieved) if _num(achieved) else "–",
            COLUMNS[1]: f"{_pct(frac)} of {_SHORT.get(dtype, dtype)}" if _num(frac) and isinstance(dtype, str) else "–"}


def sentence(ok: pd.DataFrame) -> str | None:
    """How far the fastest row (lowest latency ratio among ``ok``, the section's measured rows) is from the limit:
    its achieved rate, its fraction of the peak, and the latency it would have at that peak (latency x fraction).
    Where the fastest row has no roofline figures the fastest that has them is named as such; None where none has."""
    need = ("latency_ratio", "latency_ms", "achieved_gflops", "peak_gflops", "peak_fraction", "peak_dtype")
    if ok.empty or not set(need) <= set(ok.columns):
        return None
    by_speed = ok.sort_values("latency_ratio", kind="stable")
    has = [all(_num(r.get(k)) for k in need[:-1]) and isinstance(r.get("peak_dtype"), str)
           for r in by_speed.to_dict("records")]
    if not any(has):
        return None
    r = by_speed[has].iloc[0].to_dict()
    who = "the fastest row" if has[0] else "the fastest row with a roofline figure"
    dtype = _SHORT.get(r["peak_dtype"], r["peak_dtype"])
    return (f"**Roofline:** {who}, {r['label']}, computes {_g(r['achieved_gflops'])} GFLOP/s, "
            f"{_pct(r['peak_fraction'])} of this CPU's {dtype} matmul peak ({_g(r['peak_gflops'])} GFLOP/s, measured by a "
            f"matmul probe at the run's start): at that peak it would take {_g(r['latency_ms'] * r['peak_fraction'])} ms "
            f"per forward instead of {_g(r['latency_ms'])} ms.")
