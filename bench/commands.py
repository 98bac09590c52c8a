"""The bodies of the subcommands other than ``run``: each takes the parsed arguments and returns the exit code
(``bench/cli.py`` parses and dispatches; ``bench/run.py`` runs plans). What they print is the command's output."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .rundir import RunDir
from .run import UsageError, command_line, execute, out_dir, recovery_keys

__all__ = ["compare_command", "frontier_command", "gate_command", "list_command", "merge_command", "prune_command",
           "report_command"]

log = logging.getLogger("bench.commands")


def frontier_command(a: argparse.Namespace) -> int:
    """Search each method's reachable sparsities on the selection split against the floor, then time what was found
    (the timed run reports quality on the report split)."""
    from .frontier import levels, parse_floor, save, search
    from .plan import builtin_plan

    floors = parse_floor(a.floor)
    models = a.model or ["minilm"]
    if len(models) != 1:
        raise UsageError(f"frontier searches one model at a time, not {len(models)}; pass one --model")
    from pruning import PruneRecipe, bake

    from .calibrate import build_masked, check_calibration
    from .measure.quality import MAX_LEN, QualityMeter, corpus_task
    from .models import load_model
    from .records import new_run_id

    data = recovery_keys(a)
    if a.allocation:
        data["allocation"] = a.allocation
    methods = a.methods or ["heads+ffn"]
    for m in methods:
        probe = PruneRecipe(m, 0.5, **data)
        if not probe.spec.structured:
            raise UsageError(f"frontier searches methods that remove weights (heads, ffn, heads+ffn, layers), not {m!r}")
        check_calibration(probe)
    runtimes = a.runtimes or ["torch-dense"]
    run_id = new_run_id()
    out = out_dir(a.out, run_id)
    command = command_line()
    loaded = load_model(models[0])
    meter, task = QualityMeter(), corpus_task(split="selection")
    dense_key = (models[0], PruneRecipe("dense"), "float32")
    from pruning.targets import discover

    shape = discover(loaded.model)
    heads, neurons = [t.num_heads for t in shape.attention], [t.neurons for t in shape.ffn]

    def net(key):
        return loaded.model if key == dense_key else bake(build_masked(loaded, key[1])[0]).eval()

    def score(recipe):
        return meter.measure(dense_key, (models[0], recipe, "float32"), net, loaded.encode, task, MAX_LEN,
                             task_metrics=loaded.weights == "pretrained").figures

    points = []
    for m in methods:
        if not 0 < a.max_sparsity < 1:
            raise UsageError(f"--max-sparsity {a.max_sparsity:g} must lie in (0, 1); e.g. 0.9")
        reach = levels(m, PruneRecipe(m, 0.5, **data).allocation, heads, neurons, a.max_sparsity)
        point = search(lambda s, m=m: PruneRecipe(m, s, **data), score, floors, reach, a.steps, m)
        print(f"prunebench: frontier {m}: " + (f"{point.label} (achieved {point.sparsity:.3f})" if point.label
                                               else "no sparsity passes the floor")
              + f" ({len(point.trail)} of {len(reach)} levels scored, {point.how}, on the selection split)", flush=True)
        points.append(point)
    save(points, floors, out / "frontier.json", judged_on=task.split)
    recipes = [p.recipe for p in points if p.recipe]
    if not recipes:
        print("prunebench: nothing to time: no method stays above the floor at the sparsities tried")
        return 0
    plan = builtin_plan("default", models=models, runtimes=runtimes, recipes=recipes, memory=False, time_cap_s=a.time_cap)
    info = {"run_id": run_id, "shard": None, "select": None, "isolate": False, "case_timeout_s": None, "frontier": True}
    RunDir(out).start(plan, command, info)
    return execute(out, plan, info, command, resume=False)


def prune_command(a: argparse.Namespace) -> int:
    """Prune a model and save it (safetensors, or an ONNX file checked against torch); structured methods save
    the shrunk model."""
    from pruning import PruneRecipe, bake
    from pruning.structured import layer_shapes, save_pruned

    from .models import load_model

    recipe = PruneRecipe.from_dict(dict(method=a.method, sparsity=a.sparsity, norm=a.norm, allocation=a.allocation,
                                        seed=a.seed, **recovery_keys(a)))
    out = Path(a.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} already exists and is not an empty directory; pass a new --out directory")
    if recipe.spec.requires:
        import importlib.util

        if importlib.util.find_spec(recipe.spec.requires) is None:
            raise UsageError(f"method {recipe.method} needs the optional package {recipe.spec.requires!r}; pip install 'prunebench[peers]'")
    from .calibrate import build_masked, check_calibration

    check_calibration(recipe)
    loaded = load_model(a.model)
    masked, _ = build_masked(loaded, recipe)
    recovery = getattr(masked, "prunebench_recovery", None)
    model = bake(masked)
    save_pruned(model, out, loaded.tokenizer, weights=loaded.weights)
    if a.format == "onnx":
        from .runtimes.onnx_runtime import export_checked

        diff = export_checked(model, loaded.batch(2, 32), out / "model.onnx")
        print(f"  onnx: {out / 'model.onnx'} (ONNX Runtime matches torch, max abs diff {diff:.1e})")
    params = sum(p.numel() for p in model.parameters())
    print(f"prunebench: {recipe.label} of {loaded.name}: {params:,} params ({params / loaded.params:.2f}x dense) -> {out}")
    if recipe.spec.structured:
        shapes = layer_shapes(model)
        print("  heads per layer: " + " ".join(str(s["num_heads"]) for s in shapes))
        print("  FFN size per layer: " + " ".join(str(s["ffn_size"]) for s in shapes))
    if recovery is not None:
        print(f"  recovery: {recovery.method} in {recovery.seconds:.1f} s on {recovery.calibration_size} calibration articles")
    return 0


def report_command(a: argparse.Namespace) -> int:
    """Regenerate a run's report.md (and plots) from its records."""
    from .report import write_report

    run = Path(a.run_dir)
    for d in (run, *([Path(a.against)] if a.against else [])):
        if not RunDir(d).records.is_file():
            raise UsageError(f"run directory {d} does not exist or holds no {RunDir.RECORDS}; "
                             "pass a directory written by `prunebench run`")
    print(write_report(run, against=Path(a.against) if a.against else None))
    return 0


def merge_command(a: argparse.Namespace) -> int:
    """Join shards' run directories into one run; exit 1 when a case failed or a planned case has no record."""
    from .launch.merge import merge_runs
    from .records import exit_status
    from .report import summary_table

    result = merge_runs(Path(a.out_dir), [Path(d) for d in a.shard_dirs], allow_mixed_env=a.allow_mixed_env,
                        command=command_line())
    print(summary_table(result.records))
    print(f"\nmerged {len(a.shard_dirs)} run directories, {len(result.records)} cases -> {result.report}")
    if result.missing:
        print(f"prunebench: {len(result.missing)} planned cases have no record (e.g. {result.missing[0]}); "
              "merge the missing shards or run them with --shard", file=sys.stderr)
    return exit_status(result.records, result.missing)


def compare_command(a: argparse.Namespace) -> int:
    """A run against a baseline run, as markdown or JSON; exit 1 on a regression."""
    from .compare import compare_runs

    result = compare_runs(a.baseline_dir, a.run_dir, a.threshold)
    print(result.to_json() if a.json else result.to_markdown())
    return result.exit_code


def gate_command(a: argparse.Namespace) -> int:
    """The CI regression gate (bench/gate.py); its markdown also appended to ``--summary``."""
    from .gate import run_gate

    result = run_gate(a.baseline, threshold=a.threshold, rounds=a.rounds, committed_timing=a.committed_timing, work=a.work,
                      baseline_python=a.baseline_python, run_timeout_s=a.run_timeout)
    text = result.to_markdown()
    print(text)
    if a.summary:
        with open(a.summary, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return result.exit_code


def list_command(a: argparse.Namespace | None = None) -> int:
    """Models, methods and runtimes, and why any is unavailable here."""
    import importlib.util

    from pruning import METHODS, method_spec

    from .models import model_names
    from .runtimes import get_runtime, runtime_names

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
