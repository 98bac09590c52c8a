"""Every plot of a report (matplotlib PNGs, built without pyplot: no global state, Agg renders them).

Each ``*_plot(...)`` is a pure function of the records' DataFrame returning a ``Figure``, or None when the run
has nothing to show; ``save`` / ``write_plots`` / ``plot_break_even`` write them (``write_report`` calls them,
``render`` only links them; the figures of single sections, break-even, alternatives, frontier and
distillation, are in ``section_plots``). ``PLOTS``: one panel per setting (model, device, batch, seq_len), one colour per
runtime, one marker per recipe family (the recipe without its sparsity).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["PLOTS", "efficiency_plot", "fidelity_plot", "latency_plot", "memory_plot", "save", "size_plot", "write_plots"]

log = logging.getLogger("bench.report.plots")

_MARKERS = "osD^v<>pP*Xh"
_SETTING = ["model", "device", "batch", "seq_len"]


def _pruned(df: pd.DataFrame, *need: str) -> pd.DataFrame:
    """Successful pruned cases that have every column in ``need``."""
    if df.empty or "status" not in df or any(c not in df for c in need):
        return df.iloc[0:0]
    keep = df["status"] == "ok"
    if "method" in df:
        keep &= df["method"] != "dense"
    out = df[keep].copy()
    for c in need:
        out = out[pd.to_numeric(out[c], errors="coerce").notna()]
    if out.empty:
        return out
    out["family"] = out["recipe"].astype(str).str.rsplit("@", n=1).str[0]
    return out


def _styles(df: pd.DataFrame) -> tuple[dict, dict]:
    colors = {rt: f"C{i % 10}" for i, rt in enumerate(sorted(df["runtime"].dropna().unique()))}
    markers = {f: _MARKERS[i % len(_MARKERS)] for i, f in enumerate(sorted(df["family"].dropna().unique()))}
    return colors, markers


def _panels(df: pd.DataFrame, height: float = 4.2) -> tuple[Figure, list[tuple[str, pd.DataFrame, object]]]:
    """A figure with one axes per setting, and (title, rows, axes) for each."""
    groups = list(df.groupby(_SETTING, sort=False, dropna=False))
    fig = Figure(figsize=(8.4 * len(groups), height), layout="constrained")
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    return fig, [(f"{m} — {d}, batch {b}, seq {s}", g, ax) for ((m, d, b, s), g), ax in zip(groups, axes)]


def _legend(ax) -> None:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def _series(g: pd.DataFrame):
    for (rt, fam), s in g.groupby(["runtime", "family"], sort=True):
        yield rt, fam, s.sort_values("sparsity_target")


def _vs_sparsity(df: pd.DataFrame, column: str, draw, ref_label: str, ylabel: str) -> Figure | None:
    """One panel per model and shape, one series per runtime and method family, ``draw``-n against target
    sparsity, with the dense reference line at 1.0."""
    d = _pruned(df, column, "sparsity_target")
    if d.empty:
        return None
    colors, markers = _styles(d)
    fig, panels = _panels(d)
    for title, g, ax in panels:
        for rt, fam, s in _series(g):
            draw(ax, s, s["sparsity_target"].to_numpy(float), colors[rt], markers[fam], f"{rt} · {fam}")
        ax.axhline(1.0, color="black", ls="--", lw=1, label=ref_label)
        ax.set(title=title, xlabel="target sparsity", ylabel=ylabel)
        ax.grid(alpha=0.3)
        _legend(ax)
    return fig


def latency_plot(df: pd.DataFrame) -> Figure | None:
    """Latency ratio (variant / dense baseline) vs target sparsity, with 95% CI bands and the 1.0 line."""

    def draw(ax, s, x, color, marker, label):
        y = s["latency_ratio"].to_numpy(float)
        lo = s["latency_ratio_lo"].to_numpy(float) if "latency_ratio_lo" in s else y
        hi = s["latency_ratio_hi"].to_numpy(float) if "latency_ratio_hi" in s else y
        lo, hi = np.where(np.isnan(lo), y, lo), np.where(np.isnan(hi), y, hi)
        ax.errorbar(x, y, yerr=[y - lo, hi - y], color=color, marker=marker, capsize=3, lw=1.5, label=label)
        if len(s) > 1:
            ax.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0)

    return _vs_sparsity(df, "latency_ratio", draw, "dense baseline (1.0)", "latency ratio: variant / dense (95% CI)")


def size_plot(df: pd.DataFrame) -> Figure | None:
    """On-disk size of each runtime's own artifact (its format: masked state dict, dense, sparse...)
    vs sparsity: raw (solid) and gzip-compressed (dashed), both relative to the dense raw size."""

    def draw(ax, s, x, color, marker, label):
        ax.plot(x, s["size_ratio"].to_numpy(float), color=color, marker=marker, label=f"{label}: raw")
        if "size_compressed_ratio" in s and s["size_compressed_ratio"].notna().any():
            ax.plot(x, s["size_compressed_ratio"].to_numpy(float), color=color, marker=marker, ls="--", mfc="none",
                    label=f"{label}: gzip")

    return _vs_sparsity(df, "size_ratio", draw, "dense safetensors (1.0)", "on-disk size / dense raw size")


def memory_plot(df: pd.DataFrame) -> Figure | None:
    """Peak memory while serving (the part above the process's floor) relative to dense, vs sparsity."""

    def draw(ax, s, x, color, marker, label):
        ax.plot(x, s["mem_ratio"].to_numpy(float), color=color, marker=marker, label=label)

    return _vs_sparsity(df, "mem_ratio", draw, "dense (1.0)", "peak memory (model part) / dense")


def _pareto(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points not beaten on both speedup and quality, in order of increasing speedup."""
    order = np.argsort(-x, kind="stable")
    keep, best = [], -np.inf
    for i in order:
        if y[i] > best:
            keep.append(i)
            best = y[i]
    keep = keep[::-1]
    return x[keep], y[keep]


def fidelity_plot(df: pd.DataFrame) -> Figure | None:
    """Quality vs speedup, the Pareto view of what pruning buys: the most sensitive task figure the run has
    (title -> body recall@1 on BBC News, else the --eval file's) with its 95% CI bars, dense at its own
    figure; a run without task figures (random-init weights) shows fidelity (mean cosine to dense)."""
    from .quality import task_figure

    d = _pruned(df, "latency_ratio")
    task = task_figure(d) if not d.empty else None
    column, drop, label = task or ("quality_cosine", None, "fidelity: mean cosine to dense")
    d = _pruned(df, column, "latency_ratio")
    if d.empty:
        return None
    colors, markers = _styles(d)
    fig, panels = _panels(d)
    for title, g, ax in panels:
        dense_y = 1.0
        if drop is not None and drop in g and g[drop].notna().any():  # variant + its paired drop = dense, same items
            dense_y = float((g[column] + g[drop]).median())
        x_all, y_all = [1.0], [dense_y]
        for rt, fam, s in _series(g):
            x, y = 1.0 / s["latency_ratio"].to_numpy(float), s[column].to_numpy(float)
            lo = s[f"{column}_lo"].to_numpy(float) if f"{column}_lo" in s else y
            hi = s[f"{column}_hi"].to_numpy(float) if f"{column}_hi" in s else y
            lo, hi = np.where(np.isnan(lo), y, lo), np.where(np.isnan(hi), y, hi)
            ax.errorbar(x, y, yerr=[y - lo, hi - y], color=colors[rt], marker=markers[fam], ls="none", capsize=3,
                        label=f"{rt} · {fam}", zorder=3)
            for xi, yi, sp in zip(x, y, s["sparsity_target"]):
                ax.annotate(f"{sp:.2f}", (xi, yi), textcoords="offset points", xytext=(4, 3), fontsize=6)
            x_all += list(x)
            y_all += list(y)
        px, py = _pareto(np.asarray(x_all), np.asarray(y_all))
        ax.step(px, py, where="post", color="grey", lw=1, ls=":", label="Pareto front")
        ax.scatter([1.0], [dense_y], color="black", marker="*", s=90, label="dense", zorder=4)
        ax.axvline(1.0, color="black", ls="--", lw=1)
        meaningful = "quality_meaningful" not in g or g["quality_meaningful"].fillna(True).astype(bool).all()
        ax.set(title=title + ("" if meaningful else "\n(random-init weights: fidelity not meaningful)"),
               xlabel="speedup vs dense (1 / latency ratio)", ylabel=label + (" (95% CI)" if task else ""))
        ax.grid(alpha=0.3)
        _legend(ax)
    return fig


def efficiency_plot(df: pd.DataFrame) -> Figure | None:
    """Measured speedup against the FLOP limit (the speedup if time followed FLOPs); the diagonal is
    efficiency 1.0, and points under 1.0 are slower than dense."""
    d = _pruned(df, "flops_ratio", "latency_ratio")
    if d.empty:
        return None
    colors, markers = _styles(d)
    fig, panels = _panels(d)
    for title, g, ax in panels:
        top = 1.0
        for rt, fam, s in _series(g):
            x, y = 1.0 / s["flops_ratio"].to_numpy(float), 1.0 / s["latency_ratio"].to_numpy(float)
            ax.scatter(x, y, color=colors[rt], marker=markers[fam], label=f"{rt} · {fam}", zorder=3)
            top = max(top, float(np.nanmax(x)), float(np.nanmax(y)))
        ax.plot([0, top * 1.05], [0, top * 1.05], color="grey", ls=":", lw=1, label="FLOP limit (efficiency 1.0)")
        ax.axhline(1.0, color="black", ls="--", lw=1, label="no speedup")
        ax.set(title=title, xlabel="FLOP limit: dense FLOPs / variant FLOPs", ylabel="measured speedup: 1 / latency ratio",
               xlim=(0, top * 1.05), ylim=(0, top * 1.05))
        ax.grid(alpha=0.3)
        _legend(ax)
    return fig


# file stem -> (title in report.md, plot function); order = order in the report
PLOTS: dict[str, tuple[str, Callable[[pd.DataFrame], Figure | None]]] = {
    "latency_vs_sparsity": ("Latency ratio vs sparsity", latency_plot),
    "size_vs_sparsity": ("On-disk size vs sparsity", size_plot),
    "memory_vs_sparsity": ("Peak memory vs sparsity", memory_plot),
    "fidelity_vs_speedup": ("Quality vs speedup (Pareto view)", fidelity_plot),
    "efficiency_vs_flops": ("Measured speedup vs FLOP limit", efficiency_plot),
}


def save(fig: Figure | None, path: Path, dpi: int = 100) -> Path | None:
    """Write ``fig`` to ``path`` and return the path; with no figure, remove a stale ``path`` and return None."""
    path = Path(path)
    if fig is None:
        path.unlink(missing_ok=True)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    log.debug("wrote %s", path)
    return path


def write_plots(df: pd.DataFrame, out_dir: Path) -> list[tuple[str, Path]]:
    """Render every ``PLOTS`` figure that has data to ``out_dir/<name>.png`` (removing stale ones) and return
    (title, path) pairs in report order."""
    written = [(title, save(fn(df), Path(out_dir) / f"{name}.png")) for name, (title, fn) in PLOTS.items()]
    return [(title, path) for title, path in written if path is not None]
