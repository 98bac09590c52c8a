"""Records -> pandas -> markdown report: the verdict on the tutorial's claim, plots, a table per
model and a verdict per variant.

``render`` is a pure function of the records (and the links to the plots, and a frontier run's points);
``write_report`` reads a run directory, writes its plots and report.md: ``prunebench report RUN_DIR``
regenerates both at any time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..frontier import load as load_frontier
from ..records import FAILED, read_records
from ..rundir import RunDir
from .alternatives import PLOT as ALTERNATIVES_PLOT
from .alternatives import rows as alternatives_rows
from .alternatives import section as alternatives_section
from .analysis import break_even, break_even_section
from .budget import budget_lines
from .cells import ci_cell, fmt, latency_verdict, ratio_word
from .claim import CLAIM, claim_lines
from .scenario import scenario_cells, shape_title
from .plots import save, write_plots
from .provenance import provenance_warnings
from .section_plots import DISTILL_PLOT, alternatives_plot, distill_plot, frontier_plot, plot_break_even
from .quality import quality_columns, quality_verdict, run_tasks, table_figures
from .reproduce import protocol_summary, reproduce_section
from .structured import frontier_section, recovery_section, structured_section

__all__ = ["PlotLinks", "frame", "mem_band", "render", "summary_table", "time_spent", "write_report"]

log = logging.getLogger("bench.report.markdown")

# A memory ratio within the run's own A/A noise counts as unchanged: each dense baseline is measured twice in
# fresh processes (``mem_aa_ratio``), and the band is twice the largest A/A deviation, at least MEM_FLOOR.
# Sizes are exact.
MEM_FLOOR = 0.01


def mem_band(df: pd.DataFrame) -> float:
    """The +- band within which a memory ratio is 'unchanged': 2 x the run's largest A/A deviation, >= 1%."""
    aa = df["mem_aa_ratio"].dropna() if "mem_aa_ratio" in df else []
    return max(MEM_FLOOR, 2 * float((aa - 1).abs().max())) if len(aa) else MEM_FLOOR


def frame(records: list[dict]) -> pd.DataFrame:
    """The records as a DataFrame, one row per record, without the nested ``env``."""
    df = pd.DataFrame(records)
    if "env" in df:
        df = df.drop(columns=["env"])
    return df


def _table(df: pd.DataFrame, band: float = MEM_FLOOR, figures: tuple | None = None) -> str:
    """One table of records; ``figures``: the task figures it shows (``quality.table_figures`` of the run)."""
    figures = table_figures(df.to_dict("records")) if figures is None else figures
    rows = []
    for _, r in df.iterrows():
        r = r.to_dict()
        rows.append({
            "variant": r.get("recipe"),
            "runtime": r.get("runtime"),
            "status": r.get("status") if r.get("status") == "ok" else f"**{r.get('status')}**",
            "sparsity": fmt(r.get("sparsity_actual"), ".3f"),
            "latency ratio [95% CI]": ci_cell(r),
            **scenario_cells(r),
            "ms (variant / base)": f"{fmt(r.get('latency_ms'), '.1f')} / {fmt(r.get('baseline_latency_ms'), '.1f')}",
            "FLOP ratio": fmt(r.get("flops_ratio")),
            "efficiency": fmt(r.get("efficiency")),
            "peak MB (model)": f"{fmt(r.get('peak_mem_mb'), '.0f')} ({fmt(r.get('peak_mem_model_mb'), '.0f')})",
            "mem ratio": fmt(r.get("mem_ratio")),
            "size MB": fmt((r.get("size_bytes") or float("nan")) / 1e6, ".1f"),
            "size ratio": fmt(r.get("size_ratio")),
            "gzip ratio": fmt(r.get("size_compressed_ratio")),
            **quality_columns(r, figures),
            "verdict": _verdict(r, band),
        })
    return pd.DataFrame(rows).to_markdown(index=False)


def _masked_vs_baked(df: pd.DataFrame) -> list[str]:
    """One row per variant: as `prune` leaves it (masks on) beside after `prune.remove` (baked)."""
    if not {"model", "device", "batch", "seq_len", "recipe", "runtime", "method", "status"} <= set(df.columns):
        return []
    ok = df[(df["status"] == "ok") & (df["method"] != "dense")]
    m = ok[ok["runtime"] == "torch-masked"].set_index(["model", "device", "batch", "seq_len", "recipe"])
    b = ok[ok["runtime"] == "torch-dense"].set_index(["model", "device", "batch", "seq_len", "recipe"])
    both = m.index.intersection(b.index)
    if not len(both):
        return []
    rows = []
    for key in both:
        x, y = m.loc[key].to_dict(), b.loc[key].to_dict()
        rows.append({"model": key[0], "shape": f"{key[1]} b{key[2]} s{key[3]}", "variant": key[4],
                     "latency masked": ci_cell(x), "latency baked": ci_cell(y),
                     "size masked / baked": f"{fmt(x.get('size_ratio'))} / {fmt(y.get('size_ratio'))}",
                     "gzip masked / baked": f"{fmt(x.get('size_compressed_ratio'))} / {fmt(y.get('size_compressed_ratio'))}",
                     "mem masked / baked": f"{fmt(x.get('mem_ratio'))} / {fmt(y.get('mem_ratio'))}",
                     "params masked / baked (M)": f"{fmt((x.get('params') or float('nan')) / 1e6)} / {fmt((y.get('params') or float('nan')) / 1e6)}"})
    return ["## Masked (as `prune` leaves it) vs baked (after `prune.remove`)", "",
            "Ratios to the dense model in the same runtime; latency with its 95% CI.", "",
            pd.DataFrame(rows).to_markdown(index=False), ""]


_SIDE_BY_SIDE = ("size", "memory", "quality")


def measured_s(records: list[dict]) -> float:
    """Seconds the cases' measured phases take end to end: each case's phases one after the other, except
    size, memory and quality, which run side by side (the longest of them counts)."""
    total = 0.0
    for r in records:
        p = r.get("phase_s") or {}
        total += sum(v for k, v in p.items() if k not in _SIDE_BY_SIDE)
        total += max((p.get(k, 0.0) for k in _SIDE_BY_SIDE), default=0.0)
    return total


def time_spent(records: list[dict], wall_s: float | None = None) -> str:
    """One line: where a run's time went, summed over its cases' phases (``phase_s``); with the run's wall time,
    also the harness's own overhead (wall minus the measured phases: imports, loading, pytest, the report), so a
    change that slows the harness shows."""
    total: dict[str, float] = {}
    for r in records:
        for k, v in (r.get("phase_s") or {}).items():
            total[k] = total.get(k, 0.0) + v
    wall = sum(r.get("duration_s") or 0.0 for r in records)
    if not total:
        return ""
    parts = ", ".join(f"{k} {v:.0f} s" for k, v in sorted(total.items(), key=lambda kv: -kv[1]))
    line = (f"Time: {wall:.0f} s in {len(records)} cases; by phase {parts} (size, memory and quality run side by "
            "side after the timing, so phases can add up to more than the wall time).")
    if wall_s is None:
        return line
    measured = measured_s(records)
    return (f"{line} Wall {wall_s:.0f} s: measured phases {measured:.0f} s, harness overhead {wall_s - measured:.0f} s "
            "(imports, loading, pytest, the report).")


def _verdict(r: dict, band: float = MEM_FLOOR) -> str:
    if r.get("status") != "ok":
        return str(r.get("error") or r.get("reason") or r.get("status"))
    parts = [f"speed {latency_verdict(r.get('latency_ratio'), r.get('latency_ratio_lo'), r.get('latency_ratio_hi'))}",
             f"size {ratio_word(r.get('size_ratio'))}",
             f"memory {ratio_word(r.get('mem_ratio'), band)}"]
    quality = quality_verdict(r)
    return "; ".join(parts + ([quality] if quality else []))


_TASK_WORDS = {"corpus": "title → body recall@1 and linear-probe accuracy on BBC News",
               "labels": "linear-probe accuracy on the --eval file's labelled texts",
               "pairs": "Spearman correlation of the embeddings' cosine with the --eval file's gold scores"}


def _task_words(records: list[dict]) -> str:
    """What the run's task figures are, in words (the tasks its records were scored on)."""
    tasks = run_tasks(records) or ("corpus",)
    return "; ".join(_TASK_WORDS[t] for t in tasks)


@dataclass(frozen=True)
class PlotLinks:
    """The PNGs a report links, as paths relative to the run directory, by section (``write_report`` writes them)."""

    main: tuple[tuple[str, str], ...] = ()  # (title, path) of each ``plots.PLOTS`` figure, in report order
    break_even: tuple[str, ...] = ()
    alternatives: str | None = None
    frontier: str | None = None
    distill: str | None = None


def render(records: list[dict], run_dir: Path | None = None, command: str | None = None,
           plots: PlotLinks | None = None, frontier: dict | None = None, run_env: dict | None = None,
           against: tuple[str, list[dict]] | None = None) -> str:
    """The markdown report: the verdict first, then the plots ``plots`` links, then tables. Pure: nothing is read
    or written (``run_dir`` only names the run; ``frontier`` is a frontier run's frontier.json; ``run_env`` its
    env.json, whose load average draws a warning on a busy machine, as records from a dirty tree do; ``against``
    is another run's name and records, whose latency CIs this run's are checked against)."""
    plots = plots or PlotLinks()
    df = frame(records)
    env = records[0].get("env", {}) if records else {}
    lines = ["# prunebench report", ""]
    if run_dir is not None:
        lines += [f"Run `{Path(run_dir).name}`.", ""]
    lines += ["## Verdict: the tutorial's claim", "", CLAIM + " Answered per group of what a variant does to the weights, and per runtime, from this run's own numbers"
              + (f", produced by `{command}`:" if command else " (the command that produced them was not recorded):"), ""]
    lines += (claim_lines(df) if len(df) else []) or ["- no successful pruned cases in this run."]
    lines += ["", f"Machine: {env.get('cpu', '?')} ({env.get('cpu_count', '?')} cores), torch {env.get('torch', '?')}, "
              f"transformers {env.get('transformers', '?')}" + (f", GPU {env['gpu']}" if env.get("gpu") else "") + ".", ""]
    warned = provenance_warnings(records, {**env, **(run_env or {})})
    lines += warned + [""] if warned else []
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    unstable = int(df["unstable"].fillna(False).astype(bool).sum()) if "unstable" in df else 0
    lines += ["Cases: " + (", ".join(f"{v} {k}" for k, v in counts.items()) or "none recorded")
              + (f"; {unstable} with an unstable latency figure (⚠)" if unstable else "") + ".", ""]
    summary = protocol_summary(records)
    lines += [summary, ""] if summary else []
    lines += [line for note in budget_lines(records) for line in (note, "")]
    lines += reproduce_section(records, against[1], against[0]) if against else []
    spent = time_spent(records)
    lines += [spent, ""] if spent else []
    if not len(df):
        return "\n".join(lines)
    lines += [
              "Latency ratio = variant / dense baseline in the same runtime and device, timed in one process in "
              "blocks of pairs that alternate which side runs first (GC off within a block for both), the geometric "
              "mean of the block ratios with a 95% t interval over blocks; timing stops once the verdict (faster, "
              "slower or within ±10%) is decided (⚠ = CI wider than the target while undecided, or drift between blocks). "
              "Size ratio = bytes of what the runtime keeps on disk / dense safetensors. "
              "Memory: peak RSS while serving, in a fresh process that loads the runtime's artifact; the ratio compares "
              "the part above the process's floor (libraries and the model's code imported, no weights held); within "
              f"±{mem_band(df):.0%} counts as unchanged (twice the largest A/A deviation of this run's dense baselines, "
              "each measured twice, and at least 1%). Quality (held-out text, 95% bootstrap CIs over its items; Δ = "
              f"variant − dense on the same items, measurable when its CI excludes 0): {_task_words(records)}, and the "
              "mean cosine of each text's embedding to dense; efficiency = FLOP ratio / latency ratio.", ""]
    if plots.main:
        lines += ["## Plots", ""]
        for title, path in plots.main:
            lines += [f"### {title}", "", f"![{title}]({path})", ""]
    lines += _masked_vs_baked(df)
    lines += structured_section(df)
    lines += recovery_section(df, plots.distill)
    lines += frontier_section(df, frontier, plots.frontier)
    figures = table_figures(records)  # one set of task columns for every table of the run
    for model, g in df.groupby("model", sort=False):
        w = g["weights"].dropna().unique() if "weights" in g else []
        note = " (random-init weights: quality figures are not meaningful)" if "random-init" in list(w) else ""
        scen = g["scenario"].fillna("fixed") if "scenario" in g else pd.Series("fixed", index=g.index)
        for (dev, b, s, sc), gg in g.assign(scenario=scen).groupby(["device", "batch", "seq_len", "scenario"], sort=False,
                                                                    dropna=False):
            lines += [f"## {model} — {dev}, {shape_title(sc, b, s)}{note}", "",
                      _table(gg.sort_values(["recipe", "runtime"], kind="stable"), mem_band(df), figures), ""]
    lines += break_even_section(df, plots.break_even)
    lines += alternatives_section(df, plots.alternatives)
    bad = df[df["status"].isin(FAILED)] if len(df) else df
    if len(bad):
        lines += ["## Cases that did not succeed", ""]
        lines += [f"- `{r.case_id}`: {r.status}: {r.error}" for r in bad.itertuples()]
        lines.append("")
    return "\n".join(lines)


def write_report(run_dir: Path, command: str | None = None, against: Path | None = None) -> Path:
    """Regenerate RUN_DIR/report.md and RUN_DIR/plots/*.png from the run's records (and command.txt, and a
    frontier run's frontier.json, and ``against``: another run whose latency CIs are compared); plots without
    data are removed."""
    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    records = read_records(run.records)
    other = (Path(against).name, read_records(RunDir(against).records)) if against is not None else None
    if command is None:
        command = run.read_command()
    df, frontier, out = frame(records), load_frontier(run_dir), run.plots

    def rel(path: Path | None) -> str | None:
        return None if path is None else path.relative_to(run_dir).as_posix()

    alternatives = alternatives_rows(df)
    links = PlotLinks(
        main=tuple((title, rel(path)) for title, path in write_plots(df, out)),
        break_even=tuple(rel(p) for p in plot_break_even(break_even(df), out)),
        alternatives=rel(save(alternatives_plot(alternatives), out / ALTERNATIVES_PLOT))
        if not alternatives.empty else None,
        frontier=rel(save(frontier_plot(df, frontier), out / "frontier.png", dpi=110)),
        distill=rel(save(distill_plot(df), out / DISTILL_PLOT)))
    try:
        run_env = run.load_env()
    except ValueError:
        log.warning("%s is not valid JSON; the report cannot say what the load was", run.env)
        run_env = None
    path = run.report
    path.write_text(render(records, run_dir, command, links, frontier,
                           run_env if isinstance(run_env, dict) else None, other), encoding="utf-8")
    return path


def summary_table(records: list[dict]) -> str:
    """A compact table for the terminal."""
    rows = [{
        "case": r.get("case_id"),
        "status": r.get("status"),
        "latency ratio [95% CI]": ci_cell(r),
        "size": fmt(r.get("size_ratio")),
        "gzip": fmt(r.get("size_compressed_ratio")),
        "mem": fmt(r.get("mem_ratio")),
        "cosine": fmt(r.get("quality_cosine"), ".3f"),
    } for r in records]
    return pd.DataFrame(rows).to_markdown(index=False, tablefmt="simple") if rows else "(no records)"


