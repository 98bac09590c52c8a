"""``prunebench run | report | compare | gate | prune | export | merge | list | frontier | advise``: the command line.

This module only parses and dispatches: ``run`` is ``bench/run.py``, the other commands' bodies are in
``bench/commands.py`` (``export``: ``bench/export.py``). Exit codes: 0 done; 1 a case failed (or a regression); 2 bad input, one line naming the problem and
the fix, no traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from bench.run import UsageError

__all__ = ["main"]

log = logging.getLogger("bench.cli")


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
    from bench.launch.shard import ShardError, format_shard, parse_shard

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


def _budget(text: str) -> float:
    from bench.advise_command import parse_budget

    return parse_budget(text)


def _recovery_flags(p: argparse.ArgumentParser) -> None:
    """Data-aware importance and recovery (pruning/importance.py, pruning/recover.py); checked by PruneRecipe."""
    p.add_argument("--importance", help="which groups go: magnitude | activation | fisher (heads/ffn), wanda (2:4, 4:8)")
    p.add_argument("--recover", help="after removal: none | lstsq | distill | lstsq+distill (structured methods)")
    p.add_argument("--fit", help="lstsq recovery: ridge (default: re-fit output projections) | scales (one per head/neuron)")
    p.add_argument("--calibration", type=int, help="calibration articles for data-aware steps (default 256, the corpus split)")
    p.add_argument("--recover-seconds", type=float, help="distillation time budget in seconds (default 120)")


def _multiple(text: str) -> int:
    """``--multiple-of``: an integer (PruneRecipe refuses one below 1, with the fix)."""
    try:
        return int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--multiple-of {text!r} is not an integer; pass a positive one such as 16 or 64 "
                                         "(1: no rounding)") from None


def _width_flag(p: argparse.ArgumentParser) -> None:
    """Structured recipes' kept FFN width per layer, rounded to a multiple (pruning/widths.py)."""
    p.add_argument("--multiple-of", type=_multiple, metavar="N",
                   help="ffn, heads+ffn: keep a multiple of N FFN neurons per layer, e.g. 16 or 64 (default 1: no rounding)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="prunebench", description="Does pruning make a transformer encoder faster, smaller or lighter, here?")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="run a benchmark plan and write records, report and benchmark JSON")
    r.add_argument("--model", type=_names, help="model name(s) or HF directory (default: minilm)")
    r.add_argument("--methods", type=_names, help="pruning methods, comma-separated (see `prunebench list`)")
    r.add_argument("--sparsity", type=_floats, help="target sparsities, e.g. 0.2,0.5,0.9")
    r.add_argument("--scope", help="seed | linear | all (for scoped methods)")
    _recovery_flags(r)
    _width_flag(r)
    r.add_argument("--runtimes", type=_names, help="runtimes, comma-separated")
    r.add_argument("--device", choices=None, help="cpu | cuda | auto")
    r.add_argument("--dtype", type=_names, help="dtypes, comma-separated: float32,bfloat16,float16 (half on CPU needs its instructions)")
    r.add_argument("--baseline", metavar="RUNTIME[:DTYPE]", help="every case's baseline, e.g. torch-dense:float32 (default: dense in the case's runtime and dtype)")
    r.add_argument("--batch", type=_ints, help="batch size(s)")
    r.add_argument("--seq-len", type=_ints, help="sequence length(s)")
    r.add_argument("--scenario", type=_names, help="serving scenario(s), comma-separated: fixed (the fixed batch, default), "
                   "query (batch 1, real titles at their own lengths: p50/p90/p99), offline (a corpus, length-sorted "
                   "dynamic padding: texts/s)")
    r.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    r.add_argument("--plan", help="TOML plan file (flags override its keys)")
    r.add_argument("--out", help="run directory (default: results/<run-id>)")
    r.add_argument("--quick", action="store_true", help="smoke run: small shape, loose CI, short caps")
    r.add_argument("--time-cap", type=float, help="seconds of paired latency rounds per case")
    r.add_argument("--no-memory", action="store_true", help="skip the fresh-process memory measurement")
    r.add_argument("--no-cache", action="store_true",
                   help="compute every size and quality embedding afresh; read and write nothing in ~/.cache/prunebench "
                        "(plan key cache = false)")
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

    fr = sub.add_parser("frontier", help="per method, the highest reachable sparsity above a quality floor (judged on the selection split), then timed per runtime")
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

    ad = sub.add_parser("advise", help="which variant to ship: search recipes x runtimes x dtypes under a quality floor within a budget")
    ad.add_argument("--floor", required=True, help='quality floor, e.g. "r@1>=-0.02" (task metrics: change vs dense)')
    ad.add_argument("--budget", type=_budget, default=1200.0, help="wall-clock budget, e.g. 20m, 90s, 1h (default 20m)")
    ad.add_argument("--eval", metavar="FILE", help="score quality on your TSV instead of the built-in BBC News task")
    ad.add_argument("--model", default="minilm", help="model name or HF directory (default: minilm)")
    ad.add_argument("--out", help="advise directory; the same --out again resumes (default: results/advise-<run-id>)")
    ad.add_argument("--methods", type=_names, help="methods searched: heads+ffn, layers, unstructured (default: all)")
    ad.add_argument("--runtimes", type=_names, help="runtimes searched (default: every one the grid knows that runs here)")
    ad.add_argument("--time-cap", type=_seconds, default=10.0, help="seconds of paired latency rounds per timed case (default 10)")
    ad.add_argument("--no-memory", action="store_true", help="skip the fresh-process memory measurement")
    ad.add_argument("--batch", type=_count, default=8, help="batch size of the timed shape (default 8)")
    ad.add_argument("--seq-len", type=_count, default=128, help="sequence length of the timed shape (default 128)")
    ad.add_argument("--scenario", type=_names, action="extend",
                    help="serving scenario(s) to time and recommend for, repeatable or comma-separated: fixed (the batch x "
                         "seq_len shape, default), query (batch 1, real titles: p50/p90/p99), offline (a corpus, "
                         "length-sorted dynamic padding in batches of --batch: texts/s)")

    rp = sub.add_parser("report", help="regenerate report.md of a run from its records")
    rp.add_argument("run_dir")
    rp.add_argument("--against", metavar="RUN_DIR",
                    help="another run of the same plan on this machine: list the cases whose latency CIs do not overlap")

    pr = sub.add_parser("prune", help="prune a model and save it (structured methods save the shrunk model)")
    pr.add_argument("--model", required=True, help="model name or HF directory")
    pr.add_argument("--method", required=True, help="pruning method (see `prunebench list`)")
    pr.add_argument("--sparsity", type=float, required=True, help="fraction removed, e.g. 0.5")
    pr.add_argument("--norm", help="importance norm (method-dependent): l1 | l2 | random")
    pr.add_argument("--allocation", help="structured methods: uniform | global")
    pr.add_argument("--seed", type=int, default=0, help="seed for random methods")
    _recovery_flags(pr)
    _width_flag(pr)
    pr.add_argument("--out", required=True, help="directory to write (must not hold a model yet)")
    pr.add_argument("--format", choices=("safetensors", "onnx"), default="safetensors", help="file format")

    ex = sub.add_parser("export", help="write a recipe's variant as ONNX, OpenVINO IR or an HF directory, checked against prunebench")
    ex.add_argument("recipe", nargs="?", help="recipe label (heads+ffn@0.5, heads+ffn[fisher,lstsq]@0.50) or recipe_config JSON")
    ex.add_argument("--to", required=True, choices=("onnx", "openvino", "hf"), help="format to write")
    ex.add_argument("--out", required=True, help="directory to write (new or empty)")
    ex.add_argument("--model", default="minilm", help="model name or HF directory (default: minilm)")
    ex.add_argument("--dtype", default="float32", help="weights dtype: float32 | bfloat16 | float16 (hf only; default float32)")
    ex.add_argument("--method", help="pruning method, instead of or over RECIPE's")
    ex.add_argument("--sparsity", type=float, help="fraction removed, e.g. 0.5")
    ex.add_argument("--norm", help="importance norm (method-dependent): l1 | l2 | random")
    ex.add_argument("--allocation", help="structured methods: uniform | global")
    ex.add_argument("--seed", type=int, help="seed for random methods")
    _recovery_flags(ex)
    _width_flag(ex)

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
    v = sub.add_parser("peer-venv", help="build (once, cached) the venv the st-* peer runtimes run in")
    v.add_argument("--rebuild", action="store_true", help="delete and rebuild the cached peer venv")
    return p


# command -> "module:function" taking the parsed arguments and returning the exit code (imported on use, so a
# bad flag is refused before torch loads)
_COMMANDS = {"run": "bench.run:run_command", "report": "bench.commands:report_command",
             "compare": "bench.commands:compare_command", "gate": "bench.commands:gate_command",
             "prune": "bench.commands:prune_command", "merge": "bench.commands:merge_command",
             "list": "bench.commands:list_command", "frontier": "bench.commands:frontier_command",
             "export": "bench.export:export_command", "peer-venv": "bench.launch.peer_venv:peer_venv_command",
             "advise": "bench.advise_command:advise_command"}


def _dispatch(a: argparse.Namespace) -> int:
    import importlib

    module, func = _COMMANDS[a.command].split(":")
    return getattr(importlib.import_module(module), func)(a)


def _light_errors() -> tuple[type[BaseException], ...]:
    from bench.frontier import FrontierError
    from bench.launch.merge import MergeError
    from bench.launch.ray_executor import RayExecutorError
    from bench.records import RecordError
    from bench.launch.shard import ShardError

    return (UsageError, argparse.ArgumentTypeError, RecordError, MergeError, ShardError, RayExecutorError, FrontierError)


def _input_errors() -> tuple[type[BaseException], ...]:
    from bench.launch.merge import MergeError
    from bench.models import ModelError
    from bench.plan import PlanError
    from bench.records import RecordError
    from bench.runtimes import UnknownRuntime
    from bench.export import ExportError
    from bench.runtimes.onnx_runtime import OnnxExportError
    from pruning import RecipeError, TargetError

    return (UsageError, ModelError, PlanError, RecordError, UnknownRuntime, RecipeError, TargetError, MergeError,
            OnnxExportError, ExportError, argparse.ArgumentTypeError)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("PRUNEBENCH_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    try:
        a = _parser().parse_args(argv)
        return _dispatch(a)
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
