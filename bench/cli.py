"""``prunebench run | report | compare | gate | prune | merge | list``: the command line.

Exit codes: 0 done; 1 a case failed (or a regression); 2 bad input, one line naming the problem and
the fix, no traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
import uuid
from pathlib import Path

__all__ = ["main"]

log = logging.getLogger("bench.cli")


class UsageError(Exception):
    """Bad input: printed as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        raise UsageError(f"{message}; see `{self.prog} --help`")


def _items(text: str, what: str, example: str) -> list[str]:
    """The items of a comma-separated list; an empty item (``0.5,,0.9``, a trailing comma) is bad input."""
    items = [x.strip() for x in text.split(",")]
    if not text.strip() or any(not x for x in items):
        raise argparse.ArgumentTypeError(f"{what} {text!r} has an empty item; give a comma-separated list such as {example}")
    return items


def _floats(text: str) -> list[float]:
    items = _items(text, "sparsity", "0.2,0.5,0.9")
    try:
        return [float(x) for x in items]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sparsity {text!r} is not a comma-separated list of numbers such as 0.2,0.5,0.9") from None


def _ints(text: str) -> list[int]:
    items = _items(text, "list", "8,32")
    try:
        return [int(x) for x in items]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _shard(text: str) -> str:
    from bench.shard import ShardError, format_shard, parse_shard

    try:
        return format_shard(parse_shard(text))
    except ShardError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds, e.g. 600")
    return value


def _count(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def _recovery_flags(p: argparse.ArgumentParser) -> None:
    """Data-aware importance and recovery (pruning/importance.py, pruning/recover.py); checked by PruneRecipe."""
    p.add_argument("--importance", help="which groups go: magnitude | activation | fisher (heads/ffn), wanda (2:4, 4:8)")
    p.add_argument("--recover", help="after removal: none | lstsq | distill | lstsq+distill (structured methods)")
    p.add_argument("--fit", help="lstsq recovery: ridge (default: re-fit output projections) | scales (one per head/neuron)")
    p.add_argument("--calibration", type=int, help="calibration articles for data-aware steps (default 256, the corpus split)")
    p.add_argument("--recover-seconds", type=float, help="distillation time budget in seconds (default 120)")


def _recovery_keys(a: argparse.Namespace) -> dict:
    """The recipe keys the recovery flags set (only those given)."""
    keys = {"importance": a.importance, "recover": a.recover, "fit": a.fit, "calibration": a.calibration,
            "recover_seconds": a.recover_seconds}
    return {k: v for k, v in keys.items() if v is not None}


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="prunebench", description="Does pruning make a transformer encoder faster, smaller or lighter, here?")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="run a benchmark plan and write records, report and benchmark JSON")
    r.add_argument("--model", type=_names, help="model name(s) or HF directory (default: minilm)")
    r.add_argument("--methods", type=_names, help="pruning methods, comma-separated (see `prunebench list`)")
    r.add_argument("--sparsity", type=_floats, help="target sparsities, e.g. 0.2,0.5,0.9")
    r.add_argument("--scope", help="seed | linear | all (for scoped methods)")
    _recovery_flags(r)
    r.add_argument("--runtimes", type=_names, help="runtimes, comma-separated")
    r.add_argument("--device", choices=None, help="cpu | cuda | auto")
    r.add_argument("--dtype", type=_names, help="dtypes, comma-separated: float32,bfloat16,float16 (half on CPU needs its instructions)")
    r.add_argument("--baseline", metavar="RUNTIME[:DTYPE]", help="every case's baseline, e.g. torch-dense:float32 (default: dense in the case's runtime and dtype)")
    r.add_argument("--batch", type=_ints, help="batch size(s)")
    r.add_argument("--seq-len", type=_ints, help="sequence length(s)")
    r.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    r.add_argument("--plan", help="TOML plan file (flags override its keys)")
    r.add_argument("--out", help="run directory (default: results/<run-id>)")
    r.add_argument("--quick", action="store_true", help="smoke run: small shape, loose CI, short caps")
    r.add_argument("--time-cap", type=float, help="seconds of paired latency rounds per case")
    r.add_argument("--no-memory", action="store_true", help="skip the fresh-process memory measurement")
    r.add_argument("--eval", metavar="FILE", help="score quality on your TSV (text<TAB>label or s1<TAB>s2<TAB>score) "
                   "instead of the built-in BBC News task")
    r.add_argument("-k", dest="select", help="pytest -k expression to select cases by case id")
    r.add_argument("--isolate", action="store_true",
                   help="run each case in its own subprocess with a wall-clock limit: a crash, hang or OOM costs that case only")
    r.add_argument("--case-timeout", type=_seconds, metavar="S",
                   help="wall-clock seconds per isolated case (default 900) and per memory measurement (default 300)")
    r.add_argument("--resume", metavar="RUN_DIR",
                   help="finish a stopped run: re-run only the cases of RUN_DIR whose latest record is not ok, then rewrite its report")
    r.add_argument("--shard", type=_shard, metavar="I/N", help="run only shard I of N (cases split by a hash of their id); join with `prunebench merge`")
    r.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local (default) or ray: one Ray task per shard, then merged into --out")
    r.add_argument("--shards", type=_count, metavar="N", help="with --executor ray: number of shards (default 4)")

    fr = sub.add_parser("frontier", help="per method, the highest sparsity above a quality floor (bisection), then timed per runtime")
    fr.add_argument("--floor", required=True, help='quality floor, e.g. "r@1>=-0.02,cosine>=0.95" (task metrics: change vs dense)')
    fr.add_argument("--model", type=_names, help="model name or HF directory (default: minilm)")
    fr.add_argument("--methods", type=_names, help="structured methods, comma-separated (default: heads+ffn)")
    fr.add_argument("--runtimes", type=_names, help="runtimes to time the frontier variants in (default: torch-dense)")
    fr.add_argument("--max-sparsity", type=float, default=0.9, help="highest sparsity searched (default 0.9)")
    fr.add_argument("--steps", type=_count, default=5, help="bisection steps per method (default 5)")
    fr.add_argument("--time-cap", type=float, help="seconds of paired latency rounds per timed case")
    fr.add_argument("--out", help="run directory (default: results/<run-id>)")
    fr.add_argument("--allocation", help="heads/ffn: uniform | global (layers: importance | top)")
    _recovery_flags(fr)

    rp = sub.add_parser("report", help="regenerate report.md of a run from its records")
    rp.add_argument("run_dir")

    pr = sub.add_parser("prune", help="prune a model and save it (structured methods save the shrunk model)")
    pr.add_argument("--model", required=True, help="model name or HF directory")
    pr.add_argument("--method", required=True, help="pruning method (see `prunebench list`)")
    pr.add_argument("--sparsity", type=float, required=True, help="fraction removed, e.g. 0.5")
    pr.add_argument("--norm", help="importance norm (method-dependent): l1 | l2 | random")
    pr.add_argument("--allocation", help="structured methods: uniform | global")
    pr.add_argument("--seed", type=int, default=0, help="seed for random methods")
    _recovery_flags(pr)
    pr.add_argument("--out", required=True, help="directory to write (must not hold a model yet)")
    pr.add_argument("--format", choices=("safetensors", "onnx"), default="safetensors", help="file format")

    mg = sub.add_parser("merge", help="join the run directories of shards of one plan into one run directory")
    mg.add_argument("out_dir", help="the merged run directory (new)")
    mg.add_argument("shard_dirs", nargs="+", help="run directories written by `prunebench run --shard i/n`")
    mg.add_argument("--allow-mixed-env", action="store_true",
                    help="merge shards measured on different CPUs/GPUs or library versions (each record keeps its own env)")

    c = sub.add_parser("compare", help="compare a run with a baseline run; exit 1 on a regression")
    c.add_argument("baseline_dir")
    c.add_argument("run_dir")
    c.add_argument("--threshold", type=float, default=0.10,
                   help="relative worsening of a latency ratio that counts (with disjoint 95%% CIs); default 0.10")
    c.add_argument("--json", action="store_true", help="print the comparison as JSON instead of markdown")

    g = sub.add_parser("gate", help="the CI regression gate on any runner: exit 1 on a regression, 2 if it cannot gate")
    g.add_argument("--baseline", default="results/baseline", help="committed baseline run directory (default results/baseline)")
    g.add_argument("--threshold", type=float, default=0.10, help="relative worsening of a latency ratio that counts; default 0.10")
    g.add_argument("--rounds", type=_count, default=2,
                   help="same-machine path: alternating baseline/candidate runs of each side (default 2)")
    g.add_argument("--committed-timing", action="store_true",
                   help="when the committed baseline's environment matches this machine's, compare timing with its "
                        "recorded ratios instead of measuring its commit here (sound only on the machine that recorded it)")
    g.add_argument("--work", help="directory for the gate's runs (default: a new temporary directory)")
    g.add_argument("--baseline-python", metavar="PYTHON",
                   help="run the baseline's commit on this interpreter instead of installing it into its own venv")
    g.add_argument("--summary", metavar="FILE", help="also append the markdown to FILE (e.g. $GITHUB_STEP_SUMMARY)")
    g.add_argument("--run-timeout", type=_seconds, default=1800.0, metavar="S", help="wall-clock limit per run (default 1800)")

    sub.add_parser("list", help="models, methods, runtimes, and why any is unavailable here")
    return p


def _build_plan(a: argparse.Namespace):
    from bench.plan import builtin_plan, load_plan

    over = {
        "models": a.model,
        "runtimes": a.runtimes,
        "dtype": a.dtype,
        "baseline": a.baseline,
        "devices": [a.device] if a.device else None,
        "batch": a.batch,
        "seq_len": a.seq_len,
        "threads": a.threads,
        "time_cap_s": a.time_cap,
        "memory": False if a.no_memory else None,
        "eval": a.eval,
    }
    data = _recovery_keys(a)
    if a.methods or a.sparsity or a.scope or data:
        methods = a.methods or (["heads+ffn"] if data else ["global-l1"])
        sparsity = a.sparsity or [0.5]
        over["recipes"] = [dict(method=m, sparsity=sparsity, **({"scope": a.scope} if a.scope else {}), **data) for m in methods]
    if a.plan:
        return load_plan(a.plan, **over)
    return builtin_plan("quick" if a.quick else "default", **over)


def _out_dir(a: argparse.Namespace, run_id: str) -> Path:
    out = Path(a.out) if a.out else Path("results") / run_id
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write to output directory {out} ({exc.strerror}); pass --out with a writable directory") from None
    if (out / "records.jsonl").exists():
        raise UsageError(f"{out} already holds a run (records.jsonl); pass a new --out directory")
    return out


def _check_runnable(plan) -> None:
    """Refuse a plan none of whose cases can run here (e.g. --device cuda without CUDA)."""
    from bench.runtimes import get_runtime

    reasons = {get_runtime(c.runtime).unavailable(c.device) for c in plan.cases}
    if None not in reasons:
        raise UsageError(f"no case of this plan can run here: {sorted(reasons)[0]}; choose another --device or --runtimes")


_PLAN_FLAGS = {"model": "--model", "methods": "--methods", "sparsity": "--sparsity", "scope": "--scope",
               "importance": "--importance", "recover": "--recover", "fit": "--fit", "calibration": "--calibration",
               "recover_seconds": "--recover-seconds",
               "runtimes": "--runtimes", "device": "--device", "dtype": "--dtype", "baseline": "--baseline",
               "batch": "--batch", "seq_len": "--seq-len",
               "threads": "--threads", "plan": "--plan", "out": "--out", "quick": "--quick", "time_cap": "--time-cap",
               "no_memory": "--no-memory", "eval": "--eval", "shard": "--shard", "shards": "--shards"}


def _check_flags(a: argparse.Namespace) -> None:
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
        if not (run / "plan.json").is_file():
            raise UsageError(f"--resume {run}: it has no plan.json, so it is not a prunebench run; start a new run with --out")
    if a.executor == "ray":
        import importlib.util

        if a.shard:
            raise UsageError("--executor ray makes its own shards; use --shards N instead of --shard")
        if importlib.util.find_spec("ray") is None:
            raise UsageError("--executor ray needs the optional package ray; pip install 'prunebench[ray]' or drop --executor")
    elif a.shards:
        raise UsageError("--shards goes with --executor ray; to run one shard here, pass --shard I/N")


def _run_info(run: Path) -> dict:
    path = run / "run.json"
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text())
    except ValueError as exc:
        raise UsageError(f"{path} is not valid JSON ({exc}); repair it or delete it to resume with a new run id") from None
    if not isinstance(info, dict):
        raise UsageError(f"{path} is not a prunebench run.json; delete it to resume with a new run id")
    return info


def _preflight_models(plan) -> None:
    """Load each local model directory once before the run, so a broken one is bad input (exit 2),
    not one failed case per cell; in-process runs reuse the loaded model."""
    from bench.models import model_names

    for model in dict.fromkeys(c.model for c in plan.cases):
        if model not in model_names():
            from bench.engine import get_model

            get_model(model)


def _resume(a: argparse.Namespace) -> int:
    """``run --resume RUN_DIR``: the run's own plan, shard and selection; only cases not yet ok run."""
    from bench.records import read_records

    out = Path(a.resume)
    info = _run_info(out)
    if (out / "records.jsonl").is_file():
        read_records(out / "records.jsonl")  # a corrupt records file is refused before anything heavy
    from bench.plan import Plan

    plan = Plan.load_json(out / "plan.json")
    info.setdefault("run_id", time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4])
    info["isolate"] = a.isolate or info.get("isolate", False)
    info["case_timeout_s"] = a.case_timeout or info.get("case_timeout_s")
    info["select"] = a.select or info.get("select")
    command = (out / "command.txt").read_text().strip() if (out / "command.txt").is_file() else None
    print(f"prunebench: resuming {out}", flush=True)
    return _execute(out, plan, info, command, resume=True)


def cmd_run(a: argparse.Namespace) -> int:
    _check_flags(a)
    if a.resume:
        return _resume(a)
    plan = _build_plan(a)
    _check_runnable(plan)
    _preflight_models(plan)
    run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]
    out = _out_dir(a, run_id)
    command = "prunebench " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    info = {"run_id": run_id, "shard": a.shard, "select": a.select, "isolate": a.isolate, "case_timeout_s": a.case_timeout}
    plan.save(out / "plan.json")
    (out / "command.txt").write_text(command + "\n")
    if a.executor == "ray":
        from bench.ray_executor import run_on_ray

        info["executor"], info["shards"] = "ray", a.shards or 4
        (out / "run.json").write_text(json.dumps(info, indent=1))
        return run_on_ray(plan, out, info, command)
    (out / "run.json").write_text(json.dumps(info, indent=1))
    return _execute(out, plan, info, command, resume=False)


def _execute(out: Path, plan, info: dict, command: str | None, resume: bool) -> int:
    """Run the plan's cases (its shard, less what a resumed run has ok) under pytest, then write the report."""
    import pytest

    from bench.records import read_records
    from bench.report import summary_table, time_spent, write_report
    from bench.shard import parse_shard

    shard = parse_shard(info["shard"]) if info.get("shard") else None
    cases = plan.cases_in_shard(shard)
    prior = read_records(out) if resume and (out / "records.jsonl").is_file() else []
    ok = {r["case_id"] for r in prior if r["status"] == "ok"}
    todo = [c for c in cases if c.case_id not in ok]
    where = f" (shard {info['shard']} of {len(plan.cases)})" if shard else ""
    print(f"prunebench: {len(todo)} cases{where} -> {out}" + (f"; {len(ok)} already ok" if resume else ""), flush=True)
    previous = None
    if resume:  # kept aside first: pytest-benchmark truncates benchmark.json when it starts
        from bench.merge import previous_benchmarks

        previous = previous_benchmarks(out)
    code = None
    if todo:
        args = ["--pyargs", "bench.suites", "-q", "--no-header", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning",
                f"--prunebench-plan={out / 'plan.json'}", f"--prunebench-out={out}", f"--prunebench-run-id={info['run_id']}",
                f"--benchmark-json={out / 'benchmark.json'}", "--benchmark-quiet", "--benchmark-disable-gc"]
        args += [f"--prunebench-shard={info['shard']}"] if shard else []
        args += ["--prunebench-resume"] if resume else []
        args += ["--prunebench-isolate"] if info.get("isolate") else []
        args += [f"--prunebench-case-timeout={info['case_timeout_s']}"] if info.get("case_timeout_s") else []
        args += ["-k", info["select"]] if info.get("select") else []
        code = pytest.main(args)
    else:  # an empty shard, or a resumed run with nothing left to do: still a complete run directory
        from bench.engine import environment

        (out / "records.jsonl").touch()
        (out / "env.json").exists() or (out / "env.json").write_text(json.dumps(environment(), indent=1))
    if previous:
        from bench.merge import carry_benchmarks

        carry_benchmarks(out / "benchmark.json", previous, {c.case_id for c in todo})
    interrupted = code == pytest.ExitCode.INTERRUPTED
    if not (out / "records.jsonl").exists():
        print(f"prunebench: no case ran (pytest exit {int(code)})", file=sys.stderr)
        return 130 if interrupted else 1
    records = read_records(out / "records.jsonl")
    report = write_report(out, command)
    print()
    print(summary_table(records))
    spent = time_spent(records)
    print(f"\n{spent}" if spent else "", f"\nreport: {report}")
    if interrupted:
        left = len({c.case_id for c in cases} - {r["case_id"] for r in records})
        print(f"prunebench: interrupted with {left} of {len(cases)} cases not run; "
              f"finish with `prunebench run --resume {out}`", file=sys.stderr)
        return 130
    bad = [r for r in records if r["status"] not in ("ok", "skipped")]
    return 1 if bad else 0


def cmd_merge(a: argparse.Namespace) -> int:
    from bench.merge import merge_runs
    from bench.report import summary_table

    command = "prunebench " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    result = merge_runs(Path(a.out_dir), [Path(d) for d in a.shard_dirs], allow_mixed_env=a.allow_mixed_env, command=command)
    print(summary_table(result.records))
    print(f"\nmerged {len(a.shard_dirs)} run directories, {len(result.records)} cases -> {result.report}")
    if result.missing:
        print(f"prunebench: {len(result.missing)} planned cases have no record (e.g. {result.missing[0]}); "
              "merge the missing shards or run them with --shard", file=sys.stderr)
    bad = [r for r in result.records if r["status"] not in ("ok", "skipped")]
    return 1 if bad or result.missing else 0


def cmd_report(a: argparse.Namespace) -> int:
    from bench.report import write_report

    run = Path(a.run_dir)
    if not run.is_dir():
        raise UsageError(f"run directory {run} does not exist; pass a directory written by `prunebench run`")
    print(write_report(run))
    return 0


def cmd_frontier(a: argparse.Namespace) -> int:
    """Bisect each method's sparsity on held-out quality against the floor, then time what was found."""
    from bench.frontier import parse_floor, save, search
    from bench.plan import builtin_plan

    floors = parse_floor(a.floor)
    models = a.model or ["minilm"]
    if len(models) != 1:
        raise UsageError(f"frontier searches one model at a time, not {len(models)}; pass one --model")
    from bench.calibrate import build_masked, check_calibration
    from bench.measure.quality import MAX_LEN, QualityMeter, corpus_task
    from bench.models import load_model
    from pruning import PruneRecipe, bake

    data = _recovery_keys(a)
    if a.allocation:
        data["allocation"] = a.allocation
    methods = a.methods or ["heads+ffn"]
    for m in methods:
        probe = PruneRecipe(m, 0.5, **data)
        if not probe.spec.structured:
            raise UsageError(f"frontier searches methods that remove weights (heads, ffn, heads+ffn, layers), not {m!r}")
        check_calibration(probe)
    runtimes = a.runtimes or ["torch-dense"]
    run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]
    out = _out_dir(a, run_id)
    command = "prunebench " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    loaded = load_model(models[0])
    meter, task = QualityMeter(), corpus_task()
    dense_key = (models[0], PruneRecipe("dense"), "float32")

    def net(key):
        return loaded.model if key == dense_key else bake(build_masked(loaded, key[1])[0]).eval()

    def score(recipe):
        return meter.measure(dense_key, (models[0], recipe, "float32"), net, loaded.encode, task, MAX_LEN,
                             task_metrics=loaded.weights == "pretrained").figures

    points = []
    for m in methods:
        point = search(lambda s, m=m: PruneRecipe(m, s, **data), score, floors, a.max_sparsity, a.steps, m)
        print(f"prunebench: frontier {m}: " + (f"{point.label}" if point.label else "no sparsity passes the floor")
              + f" ({len(point.trail)} variants scored)", flush=True)
        points.append(point)
    save(points, floors, out / "frontier.json")
    recipes = [p.recipe for p in points if p.recipe]
    if not recipes:
        print("prunebench: nothing to time: no method stays above the floor at the sparsities tried")
        return 0
    plan = builtin_plan("default", models=models, runtimes=runtimes, recipes=recipes, memory=False, time_cap_s=a.time_cap)
    info = {"run_id": run_id, "shard": None, "select": None, "isolate": False, "case_timeout_s": None, "frontier": True}
    plan.save(out / "plan.json")
    (out / "command.txt").write_text(command + "\n")
    (out / "run.json").write_text(json.dumps(info, indent=1))
    return _execute(out, plan, info, command, resume=False)


def cmd_prune(a: argparse.Namespace) -> int:
    from bench.models import load_model
    from pruning import PruneRecipe, bake
    from pruning.structured import layer_shapes, save_pruned

    recipe = PruneRecipe(a.method, a.sparsity, norm=a.norm, allocation=a.allocation, seed=a.seed, **_recovery_keys(a))
    out = Path(a.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} already exists and is not an empty directory; pass a new --out directory")
    if recipe.spec.requires:
        import importlib.util

        if importlib.util.find_spec(recipe.spec.requires) is None:
            raise UsageError(f"method {recipe.method} needs the optional package {recipe.spec.requires!r}; pip install 'prunebench[peers]'")
    from bench.calibrate import build_masked, check_calibration

    check_calibration(recipe)
    loaded = load_model(a.model)
    masked, _ = build_masked(loaded, recipe)
    recovery = getattr(masked, "prunebench_recovery", None)
    model = bake(masked)
    save_pruned(model, out, loaded.tokenizer, weights=loaded.weights)
    if a.format == "onnx":
        _export_onnx(model, loaded, out / "model.onnx")
    params = sum(p.numel() for p in model.parameters())
    print(f"prunebench: {recipe.label} of {loaded.name}: {params:,} params ({params / loaded.params:.2f}x dense) -> {out}")
    if recipe.spec.structured:
        shapes = layer_shapes(model)
        print("  heads per layer: " + " ".join(str(s["num_heads"]) for s in shapes))
        print("  FFN size per layer: " + " ".join(str(s["ffn_size"]) for s in shapes))
    if recovery is not None:
        print(f"  recovery: {recovery.method} in {recovery.seconds:.1f} s on {recovery.calibration_size} calibration articles")
    return 0


def _export_onnx(model, loaded, path: Path) -> None:
    """Export beside the safetensors, and check ONNX Runtime's outputs against torch before calling it done."""
    import torch

    from bench.runtimes import get_runtime
    from bench.runtimes.onnx_runtime import OrtRunner, export

    reason = get_runtime("onnxruntime").unavailable("cpu")
    if reason:
        raise UsageError(f"--format onnx needs ONNX Runtime: {reason}; pip install 'prunebench[onnx]' or use --format safetensors")
    inputs = loaded.batch(2, 32)
    try:
        export(model, inputs, path)
    except Exception as exc:  # an exporter failure is the user's dead end: say it in one line
        raise UsageError(f"ONNX export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); use --format safetensors") from None
    with torch.inference_mode():
        ref = model(**inputs).last_hidden_state
    diff = float((OrtRunner(path, inputs, "cpu", torch.get_num_threads()).outputs() - ref).abs().max())
    if not diff <= 1e-4:
        raise UsageError(f"ONNX Runtime outputs differ from torch by {diff:.3g} (> 1e-4); the export is wrong, use --format safetensors")
    print(f"  onnx: {path} (ONNX Runtime matches torch, max abs diff {diff:.1e})")

def cmd_compare(a: argparse.Namespace) -> int:
    from bench.compare import compare_runs

    result = compare_runs(a.baseline_dir, a.run_dir, a.threshold)
    print(result.to_json() if a.json else result.to_markdown())
    return result.exit_code


def cmd_gate(a: argparse.Namespace) -> int:
    from bench.gate import run_gate

    result = run_gate(a.baseline, threshold=a.threshold, rounds=a.rounds, committed_timing=a.committed_timing, work=a.work,
                      baseline_python=a.baseline_python, run_timeout_s=a.run_timeout)
    text = result.to_markdown()
    print(text)
    if a.summary:
        with open(a.summary, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return result.exit_code


def cmd_list(a: argparse.Namespace) -> int:
    import importlib.util

    from bench.models import model_names
    from bench.runtimes import get_runtime, runtime_names
    from pruning import METHODS, method_spec

    method_spec("dense")  # loads every method module
    print("models:")
    for m in model_names():
        print(f"  {m}")
    print("  <dir>  any local Hugging Face encoder directory")
    print("methods:")
    for name, spec in sorted(METHODS.items()):
        extra = ""
        if spec.requires and importlib.util.find_spec(spec.requires) is None:
            extra = f"  [unavailable: needs {spec.requires}]"
        print(f"  {name:<16} {spec.help}{extra}")
    print("runtimes:")
    for name in runtime_names():
        rt = get_runtime(name)
        why = {d: rt.unavailable(d) for d in ("cpu", "cuda")}
        state = ", ".join(f"{d}: {'ok' if w is None else 'unavailable (' + w + ')'}" for d, w in why.items())
        print(f"  {name:<14} {rt.help}\n  {'':<14} {state}")
    return 0


_COMMANDS = {"run": cmd_run, "report": cmd_report, "compare": cmd_compare, "gate": cmd_gate, "prune": cmd_prune,
             "merge": cmd_merge, "list": cmd_list, "frontier": cmd_frontier}


def _light_errors() -> tuple[type[BaseException], ...]:
    from bench.merge import MergeError
    from bench.ray_executor import RayExecutorError
    from bench.records import RecordError
    from bench.frontier import FrontierError
    from bench.shard import ShardError

    return (UsageError, argparse.ArgumentTypeError, RecordError, MergeError, ShardError, RayExecutorError, FrontierError)


def _input_errors() -> tuple[type[BaseException], ...]:
    from bench.merge import MergeError
    from bench.models import ModelError
    from bench.plan import PlanError
    from bench.records import RecordError
    from bench.runtimes import UnknownRuntime
    from pruning import RecipeError, TargetError

    return (UsageError, ModelError, PlanError, RecordError, UnknownRuntime, RecipeError, TargetError, MergeError,
            argparse.ArgumentTypeError)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("PRUNEBENCH_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    try:
        a = _parser().parse_args(argv)
        return _COMMANDS[a.command](a)
    except _light_errors() as exc:  # before _input_errors(), which imports torch to name its errors
        return _bad_input(exc)
    except _input_errors() as exc:
        return _bad_input(exc)
    except KeyboardInterrupt:
        print("prunebench: interrupted", file=sys.stderr)
        return 130


def _bad_input(exc: BaseException) -> int:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    print(f"prunebench: error: {msg}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
