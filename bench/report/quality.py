"""Quality in the report: table cells, a variant's quality verdict, and the task metric a plot shows.

Pure functions of one record (a dict with the fields :mod:`bench.measure.quality` writes). A drop is
*measurable* when the 95% CI of the paired drop vs dense excludes 0.
"""

from __future__ import annotations

import logging
import math

__all__ = ["TASK_FIGURES", "delta_cell", "quality_columns", "quality_verdict", "task_figure"]

log = logging.getLogger("bench.report.quality")

# (value field, drop field, label), most sensitive first: the first one a record has leads its verdict and plot
TASK_FIGURES = (
    ("quality_r1", "quality_r1_drop", "R@1"),
    ("quality_spearman", "quality_spearman_drop", "Spearman"),
    ("quality_probe_acc", "quality_probe_drop", "probe acc"),
    ("quality_knn_acc", "quality_knn_drop", "kNN acc"),
    ("quality_mrr10", "quality_mrr10_drop", "MRR@10"),
)


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x)


def delta_cell(r: dict, value: str, drop: str) -> str:
    """``0.728 (Δ -0.184 [-0.240, -0.128])``: the figure, then variant - dense with its 95% CI; "–" if absent."""
    v = r.get(value)
    if not _num(v):
        return "–"
    d, lo, hi = r.get(drop), r.get(f"{drop}_lo"), r.get(f"{drop}_hi")
    if not all(_num(x) for x in (d, lo, hi)):
        return f"{v:.3f}"
    return f"{v:.3f} (Δ {-d:+.3f} [{-hi:+.3f}, {-lo:+.3f}])"


def quality_columns(r: dict) -> dict[str, str]:
    """The report table's quality cells of one record."""
    cos = f"{r['quality_cosine']:.3f}" if _num(r.get("quality_cosine")) else "–"
    if r.get("quality_meaningful") is False and cos != "–":
        cos += " (random-init)"
    cols = {"R@1 (Δ vs dense [CI])": delta_cell(r, "quality_r1", "quality_r1_drop"),
            "probe acc (Δ [CI])": delta_cell(r, "quality_probe_acc", "quality_probe_drop"),
            "cosine to dense": cos}
    if _num(r.get("quality_spearman")):
        cols["Spearman (Δ [CI])"] = delta_cell(r, "quality_spearman", "quality_spearman_drop")
    return cols


def quality_verdict(r: dict) -> str | None:
    """Whether quality dropped measurably (the paired drop's CI excludes 0), and by how much; None when the
    record has no task figure (quality off, or fidelity only for random-init weights)."""
    if r.get("quality_meaningful") is False:
        return "quality not meaningful (random-init weights)"
    have = [(v, d, label) for v, d, label in TASK_FIGURES
            if all(_num(r.get(x)) for x in (v, d, f"{d}_lo", f"{d}_hi"))]
    if not have:
        return None
    lost = [(label, r[d], r[f"{d}_lo"], r[f"{d}_hi"]) for _, d, label in have if r[f"{d}_lo"] > 0]
    if lost:
        return "quality dropped measurably: " + ", ".join(
            f"{label} {-x:+.3f} [{-hi:+.3f}, {-lo:+.3f}]" for label, x, lo, hi in lost)
    gained = [label for _, d, label in have if r[f"{d}_hi"] < 0]
    _, d, label = have[0]
    out = f"no measurable quality drop ({label} Δ {-r[d]:+.3f} [{-r[f'{d}_hi']:+.3f}, {-r[f'{d}_lo']:+.3f}])"
    return out + (f"; measurably higher {', '.join(gained)}" if gained else "")


def task_figure(df) -> tuple[str, str, str] | None:
    """The (value field, drop field, label) a plot of these records (a DataFrame) shows: the most sensitive
    task figure some record has, or None (fidelity only)."""
    for v, d, label in TASK_FIGURES:
        if v in df and df[v].notna().any():
            return v, d, label
    return None
