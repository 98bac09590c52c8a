"""Every plot of a report (matplotlib PNGs, built without pyplot: no global state, Agg renders them).

Each ``*_plot(...)`` is a pure function of the records' DataFrame returning a ``Figure``, or None when the run
has nothing to show; ``save`` / ``write_plots`` / ``plot_break_even`` write them (``write_report`` calls them,
``render`` only links them). ``PLOTS``: one panel per setting (model, device, batch, seq_len), one colour per
runtime, one marker per recipe family (the recipe without its sparsity).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from .analysis import BreakEven

__all__ = ["DISTILL_PLOT", "PLOTS", "alternatives_plot", "distill_plot", "efficiency_plot", "fidelity_plot", "frontier_plot", "latency_plot", "memory_plot",
           "plot_break_even", "save", "size_plot", "write_plots"]

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


DISTILL_PLOT = "distill_loss.png"


def distill_plot(df: pd.DataFrame) -> Figure | None:
    """The distillation loss curve of every distilled variant (one line per recipe, over its time budget; a
    record keeps up to 51 evenly spaced points of the curve); None when nothing was distilled."""
    curves = {}
    for r in (df.to_dict("records") if len(df) and "distill_loss" in df else []):
        loss = r.get("distill_loss")
        if isinstance(loss, list) and loss and r.get("recipe") not in curves:
            curves[r["recipe"]] = (loss, r.get("distill_seconds"))
    if not curves:
        return None
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.subplots()
    for label, (loss, secs) in curves.items():
        x = [100 * i / max(len(loss) - 1, 1) for i in range(len(loss))]
        ax.plot(x, loss, label=f"{label} ({secs:.0f} s)" if isinstance(secs, (int, float)) and secs == secs else label)
    ax.set(xlabel="progress through the distillation budget (%)", ylabel="loss (1 − cosine + MSE to dense embeddings)",
           title="distillation loss", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def alternatives_plot(d: pd.DataFrame) -> Figure | None:
    """Speedup vs quality (the task figure where the rows have one, else cosine to dense) for every measured
    row of the alternatives section (``alternatives.rows``), pruned and not, with the Pareto front and the
    verdict's quality bar drawn."""
    from .alternatives import QUALITY_FLOOR, TASK_DROP
    from .quality import task_figure

    tf = task_figure(d[d["status"] == "ok"]) if len(d) else None
    ycol, ylabel = (tf[0], f"quality: {tf[2]} on the held-out split") if tf else ("quality_cosine", "quality: mean cosine to dense fp32")
    ok = d[(d["status"] == "ok") & d["speedup"].notna() & pd.to_numeric(d.get(ycol), errors="coerce").notna()]
    if ok.empty:
        return None
    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.subplots()
    for i, (rt, g) in enumerate(ok.groupby(["runtime", "dtype"], sort=True)):
        pruned = g["method"] != "dense"
        color = f"C{i % 10}"
        if (~pruned).any():
            ax.scatter(g.loc[~pruned, "speedup"], g.loc[~pruned, ycol], color=color, marker="*", s=90,
                       label=f"{rt[0]} · {rt[1]} (dense)", zorder=3)
        if pruned.any():
            ax.scatter(g.loc[pruned, "speedup"], g.loc[pruned, ycol], color=color, marker="o", zorder=3,
                       label=f"{rt[0]} · {rt[1]} (pruned)")
        for _, r in g[pruned].iterrows():
            ax.annotate(str(r["recipe"]), (r["speedup"], r[ycol]), textcoords="offset points", xytext=(4, 3), fontsize=6)
    px, py = _pareto(ok["speedup"].to_numpy(float), ok[ycol].to_numpy(float))
    ax.step(px, py, where="post", color="grey", lw=1, ls=":", label="Pareto front")
    ax.axvline(1.0, color="black", ls="--", lw=1)
    if tf:
        dense = float((pd.to_numeric(ok[tf[0]]) + pd.to_numeric(ok[tf[1]], errors="coerce")).median())
        ax.axhline(dense - TASK_DROP, color="grey", ls="--", lw=0.8, label=f"dense fp32 − {TASK_DROP * 100:g} points")
    else:
        ax.axhline(QUALITY_FLOOR, color="grey", ls="--", lw=0.8, label=f"cosine {QUALITY_FLOOR}")
    ax.set(xlabel="speedup vs dense fp32 torch eager (1 / latency ratio)", ylabel=ylabel,
           title="Pruning and its alternatives on this machine")
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


def frontier_plot(df: pd.DataFrame, data: dict | None) -> Figure | None:
    """Speedup vs the floor's first figure per probed variant that was timed (``data``: a run's frontier.json),
    the floor drawn, dense and the frontier points marked."""
    if not data or not len(df):
        return None
    from ..frontier import parse_floor

    first = parse_floor(data["floor"][0])[0]
    fig = Figure(figsize=(6, 4), layout="tight")
    ax = fig.subplots()
    ax.scatter([0.0 if first.kind == "task" else 1.0], [1.0], marker="*", s=150, color="black", label="dense")
    ax.axvline(first.value, color="red", linestyle="--", label=f"floor {first}")
    ok = df[df["status"] == "ok"]
    for p in data["points"]:
        if p["sparsity"] is None:
            continue
        passing = [t for t in p["trail"] if t["passes"] and t["sparsity"] == p["sparsity"]]
        qv = passing[0]["figures"].get(str(first)) if passing else None
        for r in ok[ok["recipe"] == p["label"]].itertuples():
            if r.latency_ratio and qv is not None:
                ax.scatter([qv], [1 / r.latency_ratio], s=60, label=f"{p['label']} ({r.runtime})")
    ax.set(xlabel=f"{first.metric}" + (" change vs dense" if first.kind == "task" else ""),
           ylabel="speedup vs dense (1 / latency ratio)", title="what pruning buys at equal quality")
    ax.legend(fontsize=7)
    return fig


def plot_break_even(results: list[BreakEven], out_dir: Path) -> list[Path]:
    """One PNG per model, device, dtype and batch x seq (``analysis.break_even``'s sweeps): latency ratio vs
    sparsity per runtime, with the 95% CI as a band, the 1.0 line and each break-even sparsity marked. Returns
    the files written."""
    def slug(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")

    panels: dict[tuple, list[BreakEven]] = {}
    for r in results:
        k = r.key
        panels.setdefault((k.get("model"), k.get("device"), k.get("dtype"), k.get("batch"), k.get("seq_len")), []).append(r)
    written = []
    for (model, device, dtype, batch, seq), curves in panels.items():
        fig = Figure(figsize=(6.4, 4.2), dpi=110, layout="tight")
        ax = fig.add_subplot()
        for c in curves:
            line, = ax.plot(c.sparsities, c.ratios, marker="o", label=c.label)
            ax.fill_between(c.sparsities, c.ratios_lo, c.ratios_hi, color=line.get_color(), alpha=0.2, linewidth=0)
            if c.median.sparsity is not None and c.median.how.startswith("interpolated"):
                ax.axvline(c.median.sparsity, color=line.get_color(), linestyle=":", linewidth=1)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set(xlabel="sparsity (fraction of weights removed)", ylabel="latency ratio to the dense baseline (log scale)")
        dt = "" if dtype in (None, "float32") else f" {dtype}"
        ax.set_title(f"{model} on {device}{dt}, batch {batch} x seq {seq}: below 1.0 = faster than its dense baseline", fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        written.append(save(fig, Path(out_dir) / f"breakeven-{slug(str(model))}-{device}{slug(dt)}-b{batch}s{seq}.png", dpi=110))
    return written
