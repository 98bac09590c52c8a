"""``prunebench run``: turn the flags into a plan, then run its cases through pytest and write the report.

The cases run as the parametrized tests of ``bench.suites`` (``bench.measure.paired`` times them, ``bench.plugin``
writes a Record per case and their rounds into pytest-benchmark's JSON); this module builds the pytest arguments, resumes a stopped run (only the cases
whose latest record is not ok), hands a plan to Ray (``--executor ray``) and returns the run's exit status
(``records.exit_status``). Light at import: nothing heavy is imported before the flags are checked.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from pathlib import Path

from .rundir import RunDir

__all__ = ["UsageError", "build_plan", "check_flags", "command_line", "execute", "out_dir", "pytest_args", "recovery_keys",
           "resume", "run_command"]

log = logging.getLogger("bench.run")


class UsageError(Exception):
    """Bad input to a command: printed as one line, exit 2."""


def command_line() -> str:
    """This process's command as the user typed it, e.g. ``prunebench run --plan x.toml`` (kept in command.txt)."""
    return "prunebench " + " ".join(shlex.quote(x) for x in sys.argv[1:])


def recovery_keys(a: argparse.Namespace) -> dict:
    """The recipe keys the recovery flags (and ``--multiple-of``, where the command has it) set (only those given)."""
    keys = {"importance": a.importance, "recover": a.recover, "fit": a.fit, "calibration": a.calibration,
            "recover_seconds": a.recover_seconds, "multiple_of": getattr(a, "multiple_of", None)}
    return {k: v for k, v in keys.items() if v is not None}


def build_plan(a: argparse.Namespace):
    """The plan the ``run`` flags describe: ``--plan`` (or the built-in default / quick plan) with the flags
    given overriding its keys."""
    from .plan import builtin_plan, load_plan

    over = {
        "models": a.model,
        "runtimes": a.runtimes,
        "dtype": a.dtype,
        "baseline": a.baseline,
        "devices": [a.device] if a.device else None,
        "batch": a.batch,
        "seq_len": a.seq_len,
        "scenario": a.scenario,
        "threads": a.threads,
        "time_cap_s": a.time_cap,
        "memory": False if a.no_memory else None,
        "cache": False if a.no_cache else None,
        "eval": a.eval,
    }
    data = recovery_keys(a)
    if a.methods or a.sparsity or a.scope or data:
        methods = a.methods or (["heads+ffn"] if data else ["global-l1"])
        sparsity = a.sparsity or [0.5]
        over["recipes"] = [dict(method=m, sparsity=sparsity, **({"scope": a.scope} if a.scope else {}), **data) for m in methods]
    if a.plan:
        return load_plan(a.plan, **over)
    return builtin_plan("quick" if a.quick else "default", **over)


def out_dir(out: str | None, run_id: str) -> Path:
    """The new run directory (``--out``, default ``results/<run-id>``), created and checked writable and empty."""
    path = Path(out) if out else Path("results") / run_id
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write to output directory {path} ({exc.strerror}); pass --out with a writable directory") from None
    if RunDir(path).records.exists():
        raise UsageError(f"{path} already holds a run ({RunDir.RECORDS}); pass a new --out directory")
    return path


def _check_runnable(plan) -> None:
    """Refuse a plan none of whose cases can run here (e.g. --device cuda without CUDA)."""
    from .runtimes import get_runtime

    reasons = {get_runtime(c.runtime).unavailable(c.device) for c in plan.cases}
    if None not in reasons:
        raise UsageError(f"no case of this plan can run here: {sorted(reasons)[0]}; choose another --device or --runtimes")


_PLAN_FLAGS = {"model": "--model", "methods": "--methods", "sparsity": "--sparsity", "scope": "--scope",
               "importance": "--importance", "recover": "--recover", "fit": "--fit", "calibration": "--calibration",
               "recover_seconds": "--recover-seconds", "multiple_of": "--multiple-of",
               "runtimes": "--runtimes", "device": "--device", "dtype": "--dtype", "baseline": "--baseline",
               "batch": "--batch", "seq_len": "--seq-len", "scenario": "--scenario",
               "threads": "--threads", "plan": "--plan", "out": "--out", "quick": "--quick", "time_cap": "--time-cap",
               "no_memory": "--no-memory", "no_cache": "--no-cache", "eval": "--eval", "shard": "--shard", "shards": "--shards"}


def check_flags(a: argparse.Namespace) -> None:
    """Refuse flag combinations that cannot mean anything, before anything heavy is imported."""
    if a.resume:
        given = [flag for dest, flag in _PLAN_FLAGS.items() if getattr(a, dest)]
        if given or a.executor != "local":
            given += ["--executor"] if a.executor != "local" else []
            raise UsageError(f"--resume reuses the plan of {a.resume}; drop {', '.join(given)} "
                             "(only --isolate, --case-timeout and -k go with --resume)")
        run = Path(a.resume)
        if not run.is_dir():
            raise UsageError(f"--resume {run}: no such run directory; pass a directory written by `prunebench run`")
        if not RunDir(run).plan.is_file():
            raise UsageError(f"--resume {run}: it has no {RunDir.PLAN}, so it is not a prunebench run; start a new run with --out")
    if a.executor == "ray":
        import importlib.util

        if a.shard:
            raise UsageError("--executor ray makes its own shards; use --shards N instead of --shard")
        if importlib.util.find_spec("ray") is None:
            raise UsageError("--executor ray needs the optional package ray; pip install 'prunebench[ray]' or drop --executor")
    elif a.shards:
        raise UsageError("--shards goes with --executor ray; to run one shard here, pass --shard I/N")


def _run_info(run: Path) -> dict:
    """The run's run.json ({} where it has none); an unreadable one is bad input."""
    path = RunDir(run).run_info
    try:
        info = RunDir(run).load_run_info()
    except ValueError as exc:
        raise UsageError(f"{path} is not valid JSON ({exc}); repair it or delete it to resume with a new run id") from None
    if info is None:
        return {}
    if not isinstance(info, dict):
        raise UsageError(f"{path} is not a prunebench {RunDir.RUN_INFO}; delete it to resume with a new run id")
    return info


def _preflight_models(plan) -> None:
    """Load each local model directory once before the run, so a broken one is bad input (exit 2),
    not one failed case per cell; in-process runs reuse the loaded model."""
    from .models import model_names

    for model in dict.fromkeys(c.model for c in plan.cases):
        if model not in model_names():
            from .variants import get_model

            get_model(model)


def resume(a: argparse.Namespace) -> int:
    """``run --resume RUN_DIR``: the run's own plan, shard and selection; only cases not yet ok run."""
    from .records import new_run_id, read_records

    out = Path(a.resume)
    run = RunDir(out)
    info = _run_info(out)
    if run.records.is_file():
        read_records(run.records)  # a corrupt records file is refused before anything heavy
    from .plan import Plan

    plan = Plan.load_json(run.plan)
    info.setdefault("run_id", new_run_id())
    info["isolate"] = a.isolate or info.get("isolate", False)
    info["case_timeout_s"] = a.case_timeout or info.get("case_timeout_s")
    info["select"] = a.select or info.get("select")
    command = run.read_command()
    print(f"prunebench: resuming {out}", flush=True)
    return execute(out, plan, info, command, resume=True)


def run_command(a: argparse.Namespace) -> int:
    """``prunebench run``: check the flags, build and save the plan, run it here or on Ray."""
    from .records import new_run_id

    check_flags(a)
    if a.resume:
        return resume(a)
    plan = build_plan(a)
    _check_runnable(plan)
    _preflight_models(plan)
    run_id = new_run_id()
    out = out_dir(a.out, run_id)
    command = command_line()
    info = {"run_id": run_id, "shard": a.shard, "select": a.select, "isolate": a.isolate, "case_timeout_s": a.case_timeout}
    if a.executor == "ray":
        info["executor"], info["shards"] = "ray", a.shards or 4
    RunDir(out).start(plan, command, info)
    if a.executor == "ray":
        return _run_on_ray(plan, out, info, command)
    return execute(out, plan, info, command, resume=False)


def _run_on_ray(plan, out: Path, info: dict, command: str) -> int:
    """One Ray task per shard (bench.launch.ray_executor), merged into ``out``; the terminal sees its progress."""
    from .launch.ray_executor import run_on_ray
    from .records import exit_status
    from .report import summary_table

    def say(message: str, error: bool = False) -> None:
        print(f"prunebench: {message}", file=sys.stderr if error else sys.stdout, flush=True)

    result = run_on_ray(plan, out, info, command, progress=say)
    if result is None:
        say("no shard finished", error=True)
        return 1
    print()
    print(summary_table(result.records))
    print(f"\nreport: {result.report}")
    if result.missing:
        say(f"{len(result.missing)} planned cases have no record (e.g. {result.missing[0]})", error=True)
    return exit_status(result.records, result.missing)


def pytest_args(out: Path, info: dict, resume: bool) -> list[str]:
    """The pytest command line that runs the plan saved in ``out`` (its shard, selection, isolation)."""
    args = ["--pyargs", "bench.suites", "-q", "--no-header", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning",
            f"--prunebench-plan={RunDir(out).plan}", f"--prunebench-out={out}", f"--prunebench-run-id={info['run_id']}",
            f"--benchmark-json={RunDir(out).benchmark}", "--benchmark-quiet"]
    args += [f"--prunebench-shard={info['shard']}"] if info.get("shard") else []
    args += ["--prunebench-resume"] if resume else []
    args += ["--prunebench-isolate"] if info.get("isolate") else []
    args += [f"--prunebench-case-timeout={info['case_timeout_s']}"] if info.get("case_timeout_s") else []
    args += ["-k", info["select"]] if info.get("select") else []
    return args


def _wall_s() -> float:
    """Seconds since this process started: the run's wall time as its user waits for it, imports included."""
    import psutil

    return time.time() - psutil.Process().create_time()


def execute(out: Path, plan, info: dict, command: str | None, resume: bool) -> int:
    """Run the plan's cases (its shard, less what a resumed run has ok) under pytest, then write the report."""
    import pytest

    from .env import cpu_clock, foreign_cpu_share, load_average, record_load
    from .launch.merge import carry_benchmarks, previous_benchmarks
    from .launch.shard import parse_shard
    from .records import exit_status, read_records
    from .report import summary_table, time_spent, write_report
    from .report.budget import budget_lines
    from .report.markdown import measured_s

    shard = parse_shard(info["shard"]) if info.get("shard") else None
    cases = plan.cases_in_shard(shard)
    run = RunDir(out)
    prior = read_records(out) if resume and run.records.is_file() else []
    ok = {r["case_id"] for r in prior if r["status"] == "ok"}
    todo = [c for c in cases if c.case_id not in ok]
    where = f" (shard {info['shard']} of {len(plan.cases)})" if shard else ""
    print(f"prunebench: {len(todo)} cases{where} -> {out}" + (f"; {len(ok)} already ok" if resume else ""), flush=True)
    previous = previous_benchmarks(out) if resume else None  # kept aside first: pytest-benchmark truncates benchmark.json
    code, load_start, clock_start = None, load_average(), cpu_clock()
    if todo:
        code = pytest.main(pytest_args(out, info, resume))
    else:  # an empty shard, or a resumed run with nothing left to do: still a complete run directory
        from .env import environment

        run.records.touch()
        run.env.exists() or run.write_env(environment())
    if previous:
        carry_benchmarks(run.benchmark, previous, {c.case_id for c in todo})
    interrupted = code == pytest.ExitCode.INTERRUPTED
    if not run.records.exists():
        print(f"prunebench: no case ran (pytest exit {int(code)})", file=sys.stderr)
        return 130 if interrupted else 1
    record_load(run.env, load_start, load_average(),  # before the report, which warns on a busy machine
                foreign_cpu_share(clock_start, cpu_clock(), os.cpu_count()))
    records = read_records(run.records)
    report = write_report(out, command)
    print()
    print(summary_table(records))
    wall = _wall_s()
    spent = time_spent(records, wall)
    info.update(wall_s=round(wall, 1), overhead_s=round(wall - measured_s(records), 1))  # .ci/time-run reads them
    run.write_run_info(info)
    print(*budget_lines(records), sep="\n")  # what a smoke budget left out, above the lines .ci/time-run keeps
    print(f"\n{spent}" if spent else "", f"\nreport: {report}")
    if interrupted:
        left = len({c.case_id for c in cases} - {r["case_id"] for r in records})
        print(f"prunebench: interrupted with {left} of {len(cases)} cases not run; "
              f"finish with `prunebench run --resume {out}`", file=sys.stderr)
        return 130
    return exit_status(records)
