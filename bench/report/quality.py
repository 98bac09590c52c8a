"""Quality in the report: table cells, a variant's quality verdict, and the task metric a plot shows.

Pure functions of one record (a dict with the fields :mod:`bench.measure.quality` writes), or of a run's
records. A drop is *measurable* when the 95% CI of the paired drop vs dense excludes 0. Which task figures a
table shows follows the task the run scored (``run_tasks``: the built-in corpus, or the ``--eval`` file's
shape): R@1 and probe accuracy on BBC News, probe accuracy for a ``text<TAB>label`` file, Spearman for an
``s1<TAB>s2<TAB>score`` file, so an STS run's tables show Spearman instead of empty R@1 columns.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable

__all__ = ["TASK_COLUMNS", "TASK_FIGURES", "delta_cell", "quality_columns", "quality_verdict", "run_tasks", "table_figures",
           "task_figure"]

log = logging.getLogger("bench.report.quality")

# (value field, drop field, label), most sensitive first: the first one a record has leads its verdict and plot
TASK_FIGURES = (
    ("quality_r1", "quality_r1_drop", "R@1"),
    ("quality_spearman", "quality_spearman_drop", "Spearman"),
    ("quality_probe_acc", "quality_probe_drop", "probe acc"),
    ("quality_knn_acc", "quality_knn_drop", "kNN acc"),
    ("quality_mrr10", "quality_mrr10_drop", "MRR@10"),
)


# task (``run_tasks``) -> the task figures (value fields of TASK_FIGURES) a report table shows for it, in order
TASK_COLUMNS = {
    "corpus": ("quality_r1", "quality_probe_acc"),
    "labels": ("quality_probe_acc",),
    "pairs": ("quality_spearman",),
}
_HEADERS = {"quality_r1": "R@1 (Δ vs dense [CI])", "quality_probe_acc": "probe acc (Δ [CI])",
            "quality_spearman": "Spearman (Δ [CI])"}
_FILE_KIND = re.compile(r" (labels|pairs)=\d")  # bench.data.evalfile.EvalFile.describe: "file:NAME pairs=40 ..."


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


def _task(split) -> str | None:
    """The task a record's ``quality_split`` names: ``pairs`` or ``labels`` (an eval file), ``corpus``, or None."""
    if not isinstance(split, str) or not split:
        return None
    if split.startswith("file:"):
        kind = _FILE_KIND.search(split)
        return kind.group(1) if kind else None
    return "corpus"


def run_tasks(records: Iterable[dict]) -> tuple[str, ...]:
    """The tasks these records were scored on (keys of TASK_COLUMNS), in the order they first appear."""
    return tuple(dict.fromkeys(t for t in (_task(r.get("quality_split")) for r in records) if t is not None))


def table_figures(records: Iterable[dict]) -> tuple[tuple[str, str, str], ...]:
    """The (value field, drop field, label) of each task figure a table of these records shows: those of the
    tasks the run scored (``TASK_COLUMNS``); without a recorded task (quality off, old records) BBC News's,
    with Spearman where a record has one."""
    records = list(records)
    tasks = run_tasks(records)
    fields = [f for t in tasks for f in TASK_COLUMNS[t]]
    if not tasks:
        fields = [*TASK_COLUMNS["corpus"], *(["quality_spearman"] if any(_num(r.get("quality_spearman")) for r in records) else [])]
    return tuple(fig for f in dict.fromkeys(fields) for fig in TASK_FIGURES if fig[0] == f)


def quality_columns(r: dict, figures: tuple[tuple[str, str, str], ...] | None = None) -> dict[str, str]:
    """The report table's quality cells of one record: the task figures ``figures`` names (default: those of
    the record's own task, ``table_figures``), then the cosine to dense."""
    cos = f"{r['quality_cosine']:.3f}" if _num(r.get("quality_cosine")) else "–"
    if r.get("quality_meaningful") is False and cos != "–":
        cos += " (random-init)"
    figures = table_figures([r]) if figures is None else figures
    cols = {_HEADERS.get(v, f"{label} (Δ [CI])"): delta_cell(r, v, d) for v, d, label in figures}
    return {**cols, "cosine to dense": cos}


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
