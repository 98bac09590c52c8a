"""The body of ``prunebench advise`` (``bench/advise.py`` has the stages, ``bench/advise_report.py`` the report):
check the inputs before anything is scored, then quality on the selection split, timing of the survivors through
the ordinary run machinery in ``OUT/timed``, confirmation on the report split, and ``OUT/advice.md``.

Exit codes: 0 a recommendation; 1 no candidate meets the floor (the message names the closest); 2 bad input."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from contextlib import redirect_stdout
from pathlib import Path

from .rundir import RunDir
from .run import UsageError, command_line

__all__ = ["advise_command", "parse_budget"]

log = logging.getLogger("bench.advise_command")

_UNITS = {"s": 1, "m": 60, "h": 3600}
_CONFIG = ("floor", "model", "eval", "batch", "seq_len", "methods", "runtimes", "scenario")
_DEFAULTS = {"scenario": ["fixed"]}  # what an advise.json written before the key existed asked for


def parse_budget(text: str) -> float:
    """``"20m"``, ``"90s"``, ``"1h"`` or plain seconds -> seconds; ArgumentTypeError naming the form otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text or "")
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"--budget {text!r} is not a positive duration; e.g. 20m, 90s or 1h")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def _figures_available(weights: str, task) -> set[str]:
    """The quality figures a model and task give: fidelity always; task figures only for trained weights on
    the corpus, or for the user's eval file's kind (the engine's rule)."""
    out = {"cosine", "knn_agreement"}
    if task.kind == "corpus" and weights == "pretrained":
        out |= {"r1", "mrr10", "probe_acc", "knn_acc"}
    elif task.kind == "labels":
        out |= {"probe_acc", "knn_acc"}
    return out


def _check_floor(floors, weights: str, task, model: str) -> None:
    have = _figures_available(weights, task)
    for f in floors:
        if f.figure not in have:
            why = ("its weights are random (no task score means anything)" if task.kind == "corpus"
                   else f"your {task.kind} eval file gives no {f.metric}")
            raise UsageError(f"no quality task for floor {f} on {model}: {why}; use a fidelity floor such as "
                             "cosine>=0.95, or pass --eval FILE with text<TAB>label rows")


def _prepare_out(a: argparse.Namespace) -> Path:
    """The advise directory: new, or one this command wrote with the same question (then it resumes)."""
    from .records import new_run_id

    out = Path(a.out) if a.out else Path("results") / f"advise-{new_run_id()}"
    config = {k: getattr(a, k) for k in _CONFIG}
    saved = out / "advise.json"
    if saved.is_file():
        before = json.loads(saved.read_text())
        diff = [k for k in _CONFIG if before.get(k, _DEFAULTS.get(k)) != config[k]]
        if diff:
            raise UsageError(f"{out} holds an advise run with another {diff[0]} ({before.get(diff[0])!r}); "
                             "pass the same flags to resume it, or a new --out")
        print(f"advise: resuming {out}", flush=True)
        return out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not an advise run; pass a new --out directory")
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(config, indent=1))
    return out


def _scenarios(given: list[str] | None) -> list[str]:
    """``--scenario`` values, checked and deduplicated in order (default: the fixed batch)."""
    from .measure.scenarios import SCENARIOS

    out = list(dict.fromkeys(given or ["fixed"]))
    bad = [s for s in out if s not in SCENARIOS]
    if bad:
        raise UsageError(f"--scenario {bad[0]!r} is not one of {', '.join(SCENARIOS)}; e.g. --scenario fixed,query")
    return out


def _case(a: argparse.Namespace, c, scenario: str, **kw):
    """The timed case of candidate ``c`` in ``scenario`` (the query scenario serves batch 1)."""
    from .case import Case

    return Case(a.model, c.recipe, c.runtime, batch=1 if scenario == "query" else a.batch, seq_len=a.seq_len,
                dtype=c.dtype, scenario=scenario, **kw)


def _scorer(model: str, task, max_len: int, workdir: Path, task_metrics: bool):
    """Stage 1's scoring: a candidate's figures on the selection split, embeddings shared per weight set."""
    import torch

    from pruning import PruneRecipe

    from .case import Case
    from .measure.quality import QualityMeter
    from .runtimes import Variant
    from .variants import ServedEncoder, build_runner, get_model

    loaded, meter = get_model(model), QualityMeter()
    dense = (model, PruneRecipe("dense"), "float32")

    def net(key: tuple):
        if key == dense:
            return loaded.model
        if len(key) == 4:  # what the runtime serves, in its dtype
            case = Case(model, key[1], key[3], batch=2, seq_len=max_len, threads=torch.get_num_threads(), dtype=key[2])
            where = workdir / re.sub(r"[^A-Za-z0-9.@+-]", "_", f"{key[1].label}-{key[3]}-{key[2]}")
            where.mkdir(parents=True, exist_ok=True)
            return ServedEncoder(build_runner(case, where))
        v = Variant(loaded, key[1], {}, "float32")
        return v.baked() if key[1].spec.structured else v.masked()

    def score(c) -> dict:
        key = (model, c.recipe, c.dtype, c.runtime) if c.served else (model, c.recipe, "float32")
        return meter.measure(dense, key, net, loaded.encode, task, max_len, task_metrics=task_metrics).figures

    return score


def _launcher(out: Path, a: argparse.Namespace, command: str):
    """Stage 2's launch: the candidates given as one standard plan in ``OUT/timed``, run with ``--resume``
    semantics (only cases not yet ok), pytest's output kept in ``timed/run.log``; returns every record."""
    import torch

    from .plan import Plan
    from .records import new_run_id, read_records
    from .run import execute

    timed = out / "timed"
    timed.mkdir(exist_ok=True)
    run = RunDir(timed)
    info = run.load_run_info() if run.run_info.is_file() else {
        "run_id": new_run_id(), "shard": None, "select": None, "isolate": False, "case_timeout_s": None, "advise": True}
    run.write_run_info(info)
    run.write_command(command)
    threads = torch.get_num_threads()

    def launch(cands: list) -> list[dict]:
        if cands:
            cases = tuple(_case(a, c, sc, threads=threads, baseline_runtime="torch-dense", baseline_dtype="float32")
                          for c in cands for sc in a.scenario)
            plan = Plan(cases, name="advise", time_cap_s=a.time_cap, memory=not a.no_memory,
                        eval=str(Path(a.eval).resolve()) if a.eval else None)
            plan.save(run.plan)
            with open(timed / "run.log", "a", encoding="utf-8") as fh, redirect_stdout(fh):
                execute(timed, plan, info, command, resume=True)
        return read_records(run.records) if run.records.is_file() else []

    return launch


def advise_command(a: argparse.Namespace) -> int:
    """``prunebench advise``: the three stages within ``--budget``, then the report; see the module docstring."""
    from .advise import Search, confirm, grid, select, time_survivors
    from .advise_report import closest, peer_runtimes, where, write_advice
    from .frontier import parse_floor
    from .measure.quality import MAX_LEN, corpus_task, file_task
    from .models import resolve_model
    from .variants import get_model, unavailable

    floors = parse_floor(a.floor)
    a.scenario = _scenarios(a.scenario)
    if a.eval:
        from .plan import _check_eval

        _check_eval(a.eval)
    a.model = resolve_model(a.model)
    try:
        cands = grid(a.methods, a.runtimes)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    cands += [c for c in peer_runtimes()]
    if not cands:
        raise UsageError(f"no candidate runs in {', '.join(a.runtimes or [])}; pass --runtimes from `prunebench list`")
    loaded = get_model(a.model)
    if a.eval:
        from .data.evalfile import load_eval_file

        task = file_task(load_eval_file(a.eval))
    else:
        task = corpus_task(split="selection")
    _check_floor(floors, loaded.weights, task, a.model)
    out = _prepare_out(a)
    skipped, runnable = {}, []  # a candidate no scenario asked for can run is not scored
    for c in cands:
        whys = [unavailable(_case(a, c, sc)) for sc in a.scenario]
        (skipped.__setitem__(c.key, whys[0]) if all(whys) else runnable.append(c))
    search = Search(out, a.budget, say=lambda line: print(line, flush=True))
    max_len = min(a.seq_len, MAX_LEN)
    task_metrics = loaded.weights == "pretrained" or task.kind != "corpus"
    score = _scorer(a.model, task, max_len, out / "work", task_metrics)
    survivors = select(search, runnable, floors, score)
    print(f"advise: {len(survivors)}/{len(runnable)} candidates meet {a.floor} on {where(task)} "
          f"({len(skipped)} cannot run here)", flush=True)
    command = command_line()
    records = time_survivors(search, survivors, _launcher(out, a, command),
                             first_estimate_s=len(a.scenario) * (3 * a.time_cap + 15), scenarios=tuple(a.scenario))
    confirmed = confirm(records, floors)
    report = write_advice(out, a, floors, search.selection, confirmed, skipped, task)
    print(report.text)
    print(f"advice: {report.path}")
    if report.recommendation is not None or report.dense:
        return 0
    untimed = [c.key for c in survivors if c.key not in {r["advise_key"] for r in confirmed}]
    unscored = [c.key for c in runnable if c.key not in search.selection]
    if untimed or unscored:
        print(f"prunebench: the budget ran out before a candidate was confirmed ({len(unscored)} not scored, "
              f"{len(untimed)} survivors not timed); re-run with the same --out and a larger --budget to resume",
              file=sys.stderr, flush=True)
    else:
        near = closest(search.selection, confirmed, floors)
        print(f"prunebench: no candidate meets {a.floor}" + (f"; closest: {near}" if near else "")
              + "; lower the floor or widen --methods/--runtimes", file=sys.stderr, flush=True)
    return 1
