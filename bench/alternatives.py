"""Report section "Pruning and its alternatives on this machine": every row timed against dense fp32
torch eager (``baseline = "torch-dense:float32"``, as ``bench/plans/alternatives.toml`` sets it), so a dtype
change, int8, a compiler, another runtime and pruning (and their combinations) share one scale.

One table sorted by speed (latency ratio to dense fp32 torch eager with its 95% CI, speedup, size on disk,
peak memory, the task figure with its paired change vs dense fp32 and that change's CI, and the mean
cosine of mean-pooled embeddings to the dense fp32 model), a Pareto plot (speedup vs quality) and a
one-sentence verdict computed from the rows: the fastest row whose task figure (recall@1 on the
built-in corpus) drops by at most ``TASK_DROP`` vs dense fp32 — or, for random-init models that have no
task figure, whose cosine is at least ``QUALITY_FLOOR`` — and where the fastest pruned row at that
quality stands. Pure functions of the records' DataFrame; :func:`section` also writes the plot when
given a run directory.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .quality_report import delta_cell, task_figure

__all__ = ["BASELINE", "QUALITY_FLOOR", "TASK_DROP", "alternatives_plot", "rows", "section", "table", "verdict"]

log = logging.getLogger("bench.alternatives")

BASELINE = ("torch-dense", "float32")  # the one baseline every row of the section is timed against
QUALITY_FLOOR = 0.99  # cosine to dense fp32 for the verdict's "at a quality you can still ship"
TASK_DROP = 0.02  # largest paired drop of the task figure vs dense fp32 for the verdict (2 points)
PLOT = "alternatives_pareto.png"


def _num(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def rows(df: pd.DataFrame) -> pd.DataFrame:
    """The records timed against dense fp32 torch eager, with ``label`` and ``speedup`` columns; empty unless
    one of them is a dense alternative (the dense model in another runtime or dtype than torch-dense float32)."""
    need = {"baseline_runtime", "baseline_dtype", "runtime", "dtype", "status"}
    if df.empty or not need <= set(df.columns):
        return df.iloc[0:0]
    d = df[(df["baseline_runtime"] == BASELINE[0]) & (df["baseline_dtype"] == BASELINE[1])].copy()
    if not (((d["runtime"] != BASELINE[0]) | (d["dtype"] != BASELINE[1])) & (d["method"] == "dense")).any():
        return df.iloc[0:0]
    d["label"] = d["recipe"].astype(str) + " · " + d["runtime"].astype(str) + " · " + d["dtype"].astype(str)
    ratio = pd.to_numeric(d.get("latency_ratio"), errors="coerce")
    d["speedup"] = 1.0 / ratio
    return d


def _why(r: dict) -> str:
    """A row's skip reason or error (a DataFrame gives NaN for the one it lacks)."""
    for key in ("reason", "error"):
        v = r.get(key)
        if isinstance(v, str) and v:
            return v
    return "no reason recorded"


def _pruned(r: dict) -> bool:
    return r.get("method") not in (None, "dense")


def table(d: pd.DataFrame) -> str:
    """The markdown table of the measured rows, fastest first."""
    ok = d[d["status"] == "ok"].sort_values("latency_ratio", kind="stable")
    tf = task_figure(ok)
    out = []
    for _, r in ok.iterrows():
        r = r.to_dict()
        ci = (f"{r['latency_ratio']:.2f} [{r['latency_ratio_lo']:.2f}, {r['latency_ratio_hi']:.2f}]"
              if _num(r.get("latency_ratio")) else "–")
        out.append({
            "variant": r["recipe"], "runtime": r["runtime"], "dtype": r["dtype"],
            "latency ratio [95% CI]": ci + (" ⚠" if r.get("unstable") else ""),
            "speedup": f"{r['speedup']:.2f}x" if _num(r.get("speedup")) else "–",
            "size on disk (MB)": f"{r['size_bytes'] / 1e6:.1f}" if _num(r.get("size_bytes")) else "–",
            "peak memory (MB)": f"{r['peak_mem_mb']:.0f}" if _num(r.get("peak_mem_mb")) else "–",
            **({f"{tf[2]} (Δ vs dense fp32 [CI])": delta_cell(r, tf[0], tf[1])} if tf else {}),
            "quality: cosine to dense": f"{r['quality_cosine']:.4f}" if _num(r.get("quality_cosine")) else "–",
        })
    return pd.DataFrame(out).to_markdown(index=False) if out else "(no successful row)"


def _quality_bar(ok: pd.DataFrame, floor: float) -> tuple[pd.Series, str]:
    """Which rows count as still good, and how the verdict says it: a task-figure drop of at most
    ``TASK_DROP`` vs dense fp32 where the rows have one, else a cosine of at least ``floor``."""
    tf = task_figure(ok)
    if tf is not None:
        drop = pd.to_numeric(ok.get(tf[1]), errors="coerce")
        return drop <= TASK_DROP + 1e-12, f"a {tf[2]} drop of at most {TASK_DROP * 100:g} points vs dense fp32"
    return pd.to_numeric(ok.get("quality_cosine"), errors="coerce") >= floor, f"a cosine to dense of at least {floor}"


def verdict(d: pd.DataFrame, floor: float = QUALITY_FLOOR) -> str:
    """One sentence from the rows: the fastest still-good row (see ``_quality_bar``), and the fastest pruned
    row among the still-good ones."""
    ok = d[(d["status"] == "ok") & d["speedup"].notna()]
    keep, bar = _quality_bar(ok, floor)
    good = ok[keep].sort_values("speedup", ascending=False)
    if good.empty:
        return f"No row kept {bar} on this machine."
    best = good.iloc[0].to_dict()
    ci = f"[{1 / best['latency_ratio_hi']:.2f}, {1 / best['latency_ratio_lo']:.2f}]"
    head = (f"Fastest at {bar} on this machine: {best['label']}, "
            f"{best['speedup']:.2f}x dense fp32 torch eager (95% CI {ci})")
    pruned = good[[_pruned(r) for r in good.to_dict("records")]]
    if not _pruned(best):
        if pruned.empty:
            return head + "; no pruned variant keeps that quality."
        p = pruned.iloc[0].to_dict()
        return head + f"; the fastest pruned variant at that quality is {p['label']} at {p['speedup']:.2f}x."
    return head + " — a pruned variant."


def alternatives_plot(d: pd.DataFrame) -> Figure | None:
    """Speedup vs quality (the task figure where the rows have one, else cosine to dense) for every measured
    row, pruned and not, with the Pareto front and the verdict's quality bar drawn."""
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
    x, y = ok["speedup"].to_numpy(float), ok[ycol].to_numpy(float)
    order = np.argsort(-x, kind="stable")
    keep, best = [], -np.inf
    for i in order:  # not beaten on both speed and quality
        if y[i] > best:
            keep.append(i)
            best = y[i]
    keep = keep[::-1]
    ax.step(x[keep], y[keep], where="post", color="grey", lw=1, ls=":", label="Pareto front")
    ax.axvline(1.0, color="black", ls="--", lw=1)
    if tf:
        dense = float((pd.to_numeric(ok[tf[0]]) + pd.to_numeric(ok[tf[1]], errors="coerce")).median())
        ax.axhline(dense - TASK_DROP, color="grey", ls="--", lw=0.8, label=f"dense fp32 − {TASK_DROP * 100:g} points")
    else:
        ax.axhline(QUALITY_FLOOR, color="grey", ls="--", lw=0.8, label=f"cosine {QUALITY_FLOOR}")
    ax.set(xlabel="speedup vs dense fp32 torch eager (1 / latency ratio)", ylabel=ylabel,
           title="Pruning and its alternatives on this machine")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig


def section(df: pd.DataFrame, run_dir: Path | None = None) -> list[str]:
    """The report section's markdown lines (none when the run has no alternatives rows); writes the Pareto plot
    to ``run_dir/plots`` when ``run_dir`` is given."""
    d = rows(df)
    if d.empty:
        return []
    lines = ["## Pruning and its alternatives on this machine", "",
             "Every row is timed paired and interleaved against **dense fp32 torch eager** (latency ratio < 1 is faster), "
             "so a dtype change, int8, a compiler, another runtime and pruning share one scale. Size: what the runtime "
             "keeps on disk; peak memory: RSS while serving in a fresh process; quality: scored on the held-out split from "
             "what this runtime and dtype serve — the task figure with its paired change vs dense fp32 (95% CI), and "
             "the mean cosine of mean-pooled embeddings to the dense fp32 model.", "",
             "**Verdict:** " + verdict(d), "", table(d), ""]
    skipped = d[d["status"] != "ok"]
    if len(skipped):
        lines += ["Not measured here:", ""]
        lines += [f"- {r['label']}: {r['status']}: {_why(r)}" for r in skipped.to_dict("records")]
        lines.append("")
    if run_dir is not None:
        fig = alternatives_plot(d)
        path = Path(run_dir) / "plots" / PLOT
        if fig is None:
            path.unlink(missing_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=100)
            lines += [f"![Pruning and its alternatives: speedup vs quality](plots/{PLOT})", ""]
    return lines
