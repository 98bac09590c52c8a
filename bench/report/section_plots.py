"""The figures of single report sections: break-even, "Pruning and its alternatives", the frontier and the
distillation loss. Pure functions returning a ``Figure`` (or None when there is nothing to show), except
``plot_break_even``, which writes its PNGs; ``plots.save`` writes the others (``write_report`` calls them).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from matplotlib.figure import Figure

from .plots import _legend, _pareto, save

if TYPE_CHECKING:
    from .analysis import BreakEven

__all__ = ["DISTILL_PLOT", "alternatives_plot", "distill_plot", "frontier_plot", "plot_break_even"]

log = logging.getLogger("bench.report.section_plots")


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
