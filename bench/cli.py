"""``prunebench run | report | compare | list``: the command line.

Exit codes: 0 done; 1 a case failed (or a regression); 2 bad input, one line naming the problem and
the fix, no traceback.
"""

from __future__ import annotations

import argparse
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


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sparsity {text!r} is not a comma-separated list of numbers such as 0.2,0.5,0.9") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="prunebench", description="Does pruning make a transformer encoder faster, smaller or lighter, here?")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="run a benchmark plan and write records, report and benchmark JSON")
    r.add_argument("--model", type=_names, help="model name(s) or HF directory (default: minilm)")
    r.add_argument("--methods", type=_names, help="pruning methods, comma-separated (see `prunebench list`)")
    r.add_argument("--sparsity", type=_floats, help="target sparsities, e.g. 0.2,0.5,0.9")
    r.add_argument("--scope", help="seed | linear | all (for scoped methods)")
    r.add_argument("--runtimes", type=_names, help="runtimes, comma-separated")
    r.add_argument("--device", choices=None, help="cpu | cuda | auto")
    r.add_argument("--batch", type=_ints, help="batch size(s)")
    r.add_argument("--seq-len", type=_ints, help="sequence length(s)")
    r.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    r.add_argument("--plan", help="TOML plan file (flags override its keys)")
    r.add_argument("--out", help="run directory (default: results/<run-id>)")
    r.add_argument("--quick", action="store_true", help="smoke run: small shape, loose CI, short caps")
    r.add_argument("--time-cap", type=float, help="seconds of paired latency rounds per case")
    r.add_argument("--no-memory", action="store_true", help="skip the fresh-process memory measurement")
    r.add_argument("-k", dest="select", help="pytest -k expression to select cases by case id")

    rp = sub.add_parser("report", help="regenerate report.md of a run from its records")
    rp.add_argument("run_dir")

    c = sub.add_parser("compare", help="compare a run with a baseline run; exit 1 on a regression")
    c.add_argument("baseline_dir")
    c.add_argument("run_dir")
    c.add_argument("--threshold", type=float, default=0.10,
                   help="relative worsening of a latency ratio that counts (with disjoint 95%% CIs); default 0.10")
    c.add_argument("--json", action="store_true", help="print the comparison as JSON instead of markdown")

    sub.add_parser("list", help="models, methods, runtimes, and why any is unavailable here")
    return p


def _build_plan(a: argparse.Namespace):
    from bench.plan import builtin_plan, load_plan

    over = {
        "models": a.model,
        "runtimes": a.runtimes,
        "devices": [a.device] if a.device else None,
        "batch": a.batch,
        "seq_len": a.seq_len,
        "threads": a.threads,
        "time_cap_s": a.time_cap,
        "memory": False if a.no_memory else None,
    }
    if a.methods or a.sparsity or a.scope:
        methods = a.methods or ["global-l1"]
        sparsity = a.sparsity or [0.5]
        over["recipes"] = [dict(method=m, sparsity=sparsity, **({"scope": a.scope} if a.scope else {})) for m in methods]
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


def cmd_run(a: argparse.Namespace) -> int:
    import pytest

    from bench.records import read_records
    from bench.report import summary_table, write_report

    plan = _build_plan(a)
    _check_runnable(plan)
    run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]
    out = _out_dir(a, run_id)
    plan.save(out / "plan.json")
    command = "prunebench " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    (out / "command.txt").write_text(command + "\n")
    print(f"prunebench: {len(plan.cases)} cases -> {out}", flush=True)
    args = ["--pyargs", "bench.suites", "-q", "--no-header", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning",
            f"--prunebench-plan={out / 'plan.json'}", f"--prunebench-out={out}", f"--prunebench-run-id={run_id}",
            f"--benchmark-json={out / 'benchmark.json'}", "--benchmark-quiet", "--benchmark-disable-gc"]
    if a.select:
        args += ["-k", a.select]
    code = pytest.main(args)
    if not (out / "records.jsonl").exists():
        print(f"prunebench: no case ran (pytest exit {int(code)})", file=sys.stderr)
        return 1
    records = read_records(out / "records.jsonl")
    report = write_report(out, command)
    print()
    print(summary_table(records))
    print(f"\nreport: {report}")
    bad = [r for r in records if r["status"] not in ("ok", "skipped")]
    return 1 if bad else 0


def cmd_report(a: argparse.Namespace) -> int:
    from bench.report import write_report

    run = Path(a.run_dir)
    if not run.is_dir():
        raise UsageError(f"run directory {run} does not exist; pass a directory written by `prunebench run`")
    print(write_report(run))
    return 0


def cmd_compare(a: argparse.Namespace) -> int:
    from bench.compare import compare_runs

    result = compare_runs(a.baseline_dir, a.run_dir, a.threshold)
    print(result.to_json() if a.json else result.to_markdown())
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
        print(f"  {name:<14} {rt.HELP}\n  {'':<14} {state}")
    return 0


_COMMANDS = {"run": cmd_run, "report": cmd_report, "compare": cmd_compare, "list": cmd_list}


def _input_errors() -> tuple[type[BaseException], ...]:
    from bench.models import ModelError
    from bench.plan import PlanError
    from bench.records import RecordError
    from bench.runtimes import UnknownRuntime
    from pruning import RecipeError, TargetError

    return (UsageError, ModelError, PlanError, RecordError, UnknownRuntime, RecipeError, TargetError, argparse.ArgumentTypeError)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("PRUNEBENCH_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    try:
        a = _parser().parse_args(argv)
        return _COMMANDS[a.command](a)
    except _input_errors() as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"prunebench: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prunebench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
