"""Quality-only study of pruning and recovery choices: ``python -m bench.study --plan PLAN --out DIR``.

Recovery changes no shape, so the latency of a recovered variant is the latency of the unrecovered one
(the benchmark shows it); what differs is quality. A study is how recipes, defaults and ridge strengths are
chosen, so it scores every distinct recipe of a plan on the held-out *selection* split (never the report split
runs report on, so a choice made here does not flatter the reported figures), otherwise exactly as a run does (``bench.measure.quality``: the same meter, items and bootstrap
CIs) without timing anything, which is what comparing importance scores, recovery fits and
distillation budgets needs. It writes ``study.jsonl`` (one line per recipe: its fields, build seconds,
recovery figures, quality fields), ``report.md`` (one table) and ``command.txt`` under ``--out``.

``--select TEXT`` scores only the recipes whose label contains TEXT. ``--ridge-grid 0.3`` replaces lstsq's per-projection strength search (``pruning.recover_lstsq.RIDGE_GRID``)
for this process: how the study compares one fixed strength with the strength picked on held-out
calibration batches. A recipe that fails is recorded with its error and the study goes on.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path

from bench.report.cells import fmt
from bench.report.quality import delta_cell
from bench.rundir import RunDir

__all__ = ["main", "study"]

log = logging.getLogger("bench.study")


def _fmt(x, spec: str = ".3f") -> str:
    """A figure at three decimals (the study's default), "–" when absent: ``bench.report.cells.fmt``."""
    return fmt(x, spec)


def study(plan, out: Path, ridge_grid: tuple[float, ...] | None = None, select: str | None = None) -> list[dict]:
    """Score every distinct (model, recipe) of the plan at float32; one row per recipe (see the module doc)."""
    import pruning.recover_lstsq as recover
    from bench.calibrate import build_masked, record_fields
    from bench.measure.quality import MAX_LEN, QualityMeter, corpus_task
    from bench.models import load_model
    from pruning import PruneRecipe, bake

    if ridge_grid:
        recover.RIDGE_GRID = tuple(ridge_grid)
    seen, rows = set(), []
    meter, task = QualityMeter(), corpus_task(split="selection")
    out.mkdir(parents=True, exist_ok=True)
    for case in plan.cases:
        key = (case.model, case.recipe)
        if key in seen or (select and select not in case.recipe.label):
            continue
        seen.add(key)
        loaded = load_model(case.model)
        dense_key = (case.model, PruneRecipe("dense"), "float32")
        row = {"model": case.model, "recipe": case.recipe.label, **case.recipe.to_dict(),
               "ridge_grid": list(recover.RIDGE_GRID), "status": "ok", "error": None}
        t0 = time.perf_counter()
        try:
            def net(k, loaded=loaded, dense_key=dense_key):
                return loaded.model if k == dense_key else bake(build_masked(loaded, k[1])[0]).eval()

            res = meter.measure(dense_key, (case.model, case.recipe, "float32"), net, loaded.encode, task, MAX_LEN,
                                task_metrics=loaded.weights == "pretrained")
            row.update(record_fields(loaded, case.recipe))
            row.update(res.record_fields())
        except Exception as exc:  # recorded, and the study goes on
            log.exception("%s failed", case.recipe.label)
            row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        with (out / "study.jsonl").open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(f"prunebench study: {row['recipe']}: {row['status']} cosine {_fmt(row.get('quality_cosine'))} "
              f"R@1 {_fmt(row.get('quality_r1'))} ({row['seconds']} s)", flush=True)
    return rows


def render(rows: list[dict], command: str) -> str:
    """The study's markdown table, its command above it."""
    lines = ["# Quality study (selection split, no timing)", "", f"`{command}`", "",
             "Quality on the held-out selection split of the corpus (choose here; runs report on the report split), each figure with its paired change vs dense and the 95% "
             "bootstrap CI of that change. lstsq ridge: strength picked per projection on held-out calibration "
             "batches from the grid shown, unless the grid has one value.", "",
             "| recipe | status | cosine | R@1 (Δ [CI]) | probe acc (Δ [CI]) | kNN acc (Δ) | build s | distill s / steps | ridge grid |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        dist = f"{_fmt(r.get('distill_seconds'), '.0f')} / {r.get('distill_steps') or '–'}"
        ridge = "lstsq" in str(r.get("recover", "")) and r.get("fit", "ridge") == "ridge"
        grid = ",".join(f"{g:g}" for g in r["ridge_grid"]) if ridge else "–"
        lines.append(f"| {r['recipe']} | {r['status'] if r['status'] == 'ok' else r['error']} | {_fmt(r.get('quality_cosine'))} | "
                     f"{delta_cell(r, 'quality_r1', 'quality_r1_drop')} | {delta_cell(r, 'quality_probe_acc', 'quality_probe_drop')} | "
                     f"{delta_cell(r, 'quality_knn_acc', 'quality_knn_drop')} | {_fmt(r.get('build_seconds'), '.0f')} | {dist} | {grid} |")
    return "\n".join(lines) + "\n"


def _write_report(rows: list[dict], out: Path, command: str) -> None:
    """report.md (and plots/distill_loss.png when a recipe was distilled) under ``out``."""
    from bench.report import frame
    from bench.report.plots import save
    from bench.report.section_plots import DISTILL_PLOT, distill_plot

    text, run = render(rows, command), RunDir(out)
    if save(distill_plot(frame(rows)), run.plots / DISTILL_PLOT) is not None:
        text += f"\n![distillation loss]({RunDir.PLOTS}/{DISTILL_PLOT})\n"
    run.report.write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.study", description=__doc__.splitlines()[0])
    p.add_argument("--plan", help="TOML plan whose distinct recipes are scored")
    p.add_argument("--render", action="store_true", help="only rewrite --out's report.md and plot from its study.jsonl")
    p.add_argument("--out", required=True, help="directory for study.jsonl, report.md, command.txt")
    p.add_argument("--select", help="score only recipes whose label contains this text, e.g. 'lstsq]'")
    p.add_argument("--ridge-grid", help="lstsq ridge strengths to pick from, comma-separated (one value: fixed)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        grid = tuple(float(x) for x in a.ridge_grid.split(",") if x.strip()) if a.ridge_grid else None
    except ValueError:
        print(f"prunebench study: --ridge-grid {a.ridge_grid!r} is not a comma-separated list of numbers; e.g. 0.1,0.3,1", file=sys.stderr)
        return 2
    if grid is not None and (not grid or min(grid) <= 0):
        print("prunebench study: --ridge-grid needs positive strengths, e.g. 0.1,0.3,1", file=sys.stderr)
        return 2
    from bench.plan import PlanError, load_plan
    from pruning import RecipeError

    out = Path(a.out)
    if a.render:
        if not (out / "study.jsonl").is_file():
            print(f"prunebench study: no {out / 'study.jsonl'}; run the study first (--plan PLAN --out {out})", file=sys.stderr)
            return 2
        rows = [json.loads(x) for x in (out / "study.jsonl").read_text().splitlines() if x.strip()]
        _write_report(rows, out, RunDir(out).read_command() or "")
        return 0
    if not a.plan or not Path(a.plan).is_file():
        print(f"prunebench study: no plan file {a.plan!r}; pass a TOML plan such as bench/plans/recovery.toml", file=sys.stderr)
        return 2
    try:
        plan = load_plan(a.plan)
    except (PlanError, RecipeError) as exc:
        print(f"prunebench study: {exc}", file=sys.stderr)
        return 2
    command = "python -m bench.study " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    if (out / "study.jsonl").exists():
        (out / "study.jsonl").unlink()
    rows = study(plan, out, grid, a.select)
    RunDir(out).write_command(command)
    _write_report(rows, out, command)
    print(f"prunebench study: {len(rows)} recipes -> {RunDir(out).report}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
