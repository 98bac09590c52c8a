"""Report section "Pruning and its alternatives on this machine": every row timed against dense fp32
torch eager (``baseline = "torch-dense:float32"``, as ``bench/plans/alternatives.toml`` sets it), so a dtype
change, int8, a compiler, another runtime and pruning (and their combinations) share one scale.

One table sorted by speed (latency ratio to dense fp32 torch eager with its 95% CI, speedup, size on disk,
peak memory, the task figure with its paired change vs dense fp32 and that change's CI, the mean
cosine of mean-pooled embeddings to the dense fp32 model, and the roofline: achieved GFLOP/s and the fraction
of the measured matmul peak, ``bench.report.roofline``, with a sentence on how far the fastest row is from it),
a Pareto plot (speedup vs quality) and a one-sentence verdict computed from the rows: the fastest row whose
task figure (recall@1 on the built-in corpus; Spearman on an STS ``--eval`` file: ``quality.task_figure``)
drops by at most ``TASK_DROP`` vs dense fp32 — or, for random-init models that have no
task figure, whose cosine is at least ``QUALITY_FLOOR`` — and where the fastest pruned row at that
quality stands. Pure functions of the records' DataFrame; the plot is ``section_plots.alternatives_plot`` (written
by the report's caller).
"""

from __future__ import annotations

import logging
import math

import pandas as pd

from . import roofline
from .quality import delta_cell, task_figure

__all__ = ["BASELINE", "PEER_PREFIX", "PLOT", "QUALITY_FLOOR", "TASK_DROP", "peer_line", "rows", "section", "table",
           "verdict"]

log = logging.getLogger("bench.report.alternatives")

BASELINE = ("torch-dense", "float32")  # the one baseline every row of the section is timed against
QUALITY_FLOOR = 0.99  # cosine to dense fp32 for the verdict's "at a quality you can still ship"
TASK_DROP = 0.02  # largest paired drop of the task figure vs dense fp32 for the verdict (2 points)
PLOT = "alternatives_pareto.png"  # the section's plot, under the run's plots/
PEER_PREFIX = "st-"  # the peer's rows: sentence-transformers' own backends (bench/runtimes/st_peer.py)


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
            **roofline.cells(r),
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


def peer_line(d: pd.DataFrame, floor: float = QUALITY_FLOOR) -> str | None:
    """prunebench's fastest still-good row against the peer's (sentence-transformers' own backends, runtimes
    ``st-*``) at the same quality bar, as one ratio from this run: prunebench's latency ratio / the peer's
    (< 1: prunebench's row is faster), with a conservative interval from the two 95% CIs (lo/hi, hi/lo). None
    when the run has no ok peer row. The peer's rows are timed against sentence-transformers' torch fp32 of the
    same dense model in the peer's venv, the others against torch-dense fp32 here: the quotient assumes those
    two baselines are the same model at the same speed (both dense fp32 torch eager of one checkpoint)."""
    ok = d[(d["status"] == "ok") & d["speedup"].notna()]
    if ok.empty:
        return None
    keep, bar = _quality_bar(ok, floor)
    peer = ok["runtime"].astype(str).str.startswith(PEER_PREFIX)
    if not peer.any():
        return None
    ours, theirs = ok[keep & ~peer], ok[keep & peer]
    if theirs.empty:
        return f"**Against the peer:** no row of sentence-transformers' own backends kept {bar}."
    t = theirs.sort_values("latency_ratio").iloc[0].to_dict()
    if ours.empty:
        return (f"**Against the peer:** the peer's {t['label']} ({t['latency_ratio']:.2f}) keeps {bar}; no row of "
                "prunebench's does.")
    o = ours.sort_values("latency_ratio").iloc[0].to_dict()
    q = o["latency_ratio"] / t["latency_ratio"]
    ci = (f" [{o['latency_ratio_lo'] / t['latency_ratio_hi']:.2f}, {o['latency_ratio_hi'] / t['latency_ratio_lo']:.2f}]"
          if all(_num(o.get(k)) and _num(t.get(k)) for k in ("latency_ratio_lo", "latency_ratio_hi")) else "")
    return (f"**Against the peer** (at {bar}): prunebench's fastest, {o['label']} ({o['latency_ratio']:.2f}), takes "
            f"{q:.2f}x{ci} the time of the peer's fastest, {t['label']} ({t['latency_ratio']:.2f}): "
            f"{1 / q:.2f}x {'faster' if q < 1 else 'slower'} than sentence-transformers' own best backend here.")


def section(df: pd.DataFrame, plot: str | None = None) -> list[str]:
    """The report section's markdown lines (none when the run has no alternatives rows), linking ``plot`` (the
    Pareto plot's path relative to the run directory) when given."""
    d = rows(df)
    if d.empty:
        return []
    lines = ["## Pruning and its alternatives on this machine", "",
             "Every row is timed paired and interleaved against **dense fp32 torch eager** (latency ratio < 1 is faster), "
             "so a dtype change, int8, a compiler, another runtime and pruning share one scale. Size: what the runtime "
             "keeps on disk; peak memory: RSS while serving in a fresh process; quality: scored on the held-out split from "
             "what this runtime and dtype serve — the task figure with its paired change vs dense fp32 (95% CI), and "
             "the mean cosine of mean-pooled embeddings to the dense fp32 model. GFLOP/s: the variant's FLOPs per "
             "forward (2 x its MACs, nonzero weights) over its median latency; of peak: that rate over this CPU's "
             "matmul peak for what the row computes in (its dtype; int8 for the int8 runtimes; else fp32), measured at "
             "the run's start (env.json peak_gflops).", "",
             "**Verdict:** " + verdict(d), ""]
    limit = roofline.sentence(d[d["status"] == "ok"])
    lines += [limit, ""] if limit else []
    peer = peer_line(d)
    lines += [peer, ""] if peer else []
    lines += [table(d), ""]
    skipped = d[d["status"] != "ok"]
    if len(skipped):
        lines += ["Not measured here:", ""]
        lines += [f"- {r['label']}: {r['status']}: {_why(r)}" for r in skipped.to_dict("records")]
        lines.append("")
    if plot:
        lines += [f"![Pruning and its alternatives: speedup vs quality]({plot})", ""]
    return lines
