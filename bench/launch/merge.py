"""``prunebench merge OUT_DIR SHARD_DIR...``: join the run directories of shards of one plan.

Refuses (MergeError, exit 2) what would make one table out of figures that are not one run: shards
of different plans, the same shard twice, shards of different splits, a case recorded by two
shards, or environments that differ in a key that changes what a figure means (bench/env.py
``ENV_KEYS``; ``cpu`` only counts when the plan has CPU cases and ``gpu`` only when it has CUDA cases).
Writes records.jsonl (every line of every shard, history included), plan.json, env.json, run.json,
benchmark.json (pytest-benchmark's ``benchmarks`` lists joined) and report.md.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from ..env import ENV_KEYS
from ..rundir import RunDir

__all__ = ["MergeError", "MergeResult", "carry_benchmarks", "merge_runs", "previous_benchmarks", "relevant_env_keys"]

log = logging.getLogger("bench.launch.merge")


class MergeError(ValueError):
    """Run directories that cannot be merged; the message names which and why."""


@dataclass(frozen=True)
class MergeResult:
    records: list[dict]  # latest record per case
    missing: list[str]  # planned case ids no shard recorded
    report: Path


def relevant_env_keys(devices: set[str]) -> tuple[str, ...]:
    """The environment keys whose difference makes shards of a plan on ``devices`` incomparable."""
    drop = set()
    if "cuda" not in devices:
        drop.add("gpu")
    if "cpu" not in devices:
        drop.add("cpu")
    return tuple(k for k in ENV_KEYS if k not in drop)


def _json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MergeError(f"{path} is not readable {what} ({exc}); re-run that shard") from None


def _first_difference(a: dict, b: dict) -> str:
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            return key
    return "?"


def _check_dirs(out: Path, dirs: list[Path]) -> None:
    """Each shard directory once, existing, finished, and not ``out``; ``out`` holds no run yet."""
    if not dirs:
        raise MergeError("no shard directories given; pass the run directories of the shards after OUT_DIR")
    if len({d.resolve() for d in dirs}) != len(dirs):
        raise MergeError("a shard directory is given twice; pass each shard's run directory once")
    for d in dirs:
        if not d.is_dir():
            raise MergeError(f"shard directory {d} does not exist; pass run directories written by `prunebench run --shard i/n`")
        if d.resolve() == out.resolve():
            raise MergeError(f"OUT_DIR {out} is also a shard directory; merge into a new directory")
        missing = RunDir(d).missing()
        if missing:
            raise MergeError(f"{d} has no {missing[0]}, so it is not a finished prunebench run; run or resume that shard first")
    if RunDir(out).records.exists():
        raise MergeError(f"{out} already holds a run ({RunDir.RECORDS}); merge into a new directory")


def _one_plan(dirs: list[Path]) -> dict:
    """The plan every shard ran (compared as written, before importing torch)."""
    raw = [_json(RunDir(d).plan, "plan") for d in dirs]
    for d, p in zip(dirs, raw):
        if not isinstance(p, dict) or not isinstance(p.get("cases"), list):
            raise MergeError(f"{RunDir(d).plan} is not a plan written by `prunebench run`; re-run that shard")
    for d, p in zip(dirs[1:], raw[1:]):
        if p != raw[0]:
            key = _first_difference(raw[0], p)
            raise MergeError(f"{d} ran a different plan than {dirs[0]} (they differ in {key!r}); merge only shards of one plan")
    return raw[0]


def _one_split(dirs: list[Path], infos: list[dict]) -> list[str | None]:
    """The shards' ``i/N`` specs: of one split, each shard once."""
    specs = [i.get("shard") for i in infos]
    if len({s.split("/")[1] for s in specs if s}) > 1:
        raise MergeError(f"the shards come from different splits ({', '.join(sorted(s for s in specs if s))}); "
                         "merge the shards of one --shard i/N split")
    seen: dict[str, Path] = {}
    for d, s in zip(dirs, specs):
        if s and s in seen:
            raise MergeError(f"{seen[s]} and {d} are both shard {s}; pass each shard once")
        if s:
            seen[s] = d
    return specs


def _mixed_env(dirs: list[Path], envs: list[dict], plan: dict, allow_mixed_env: bool) -> dict:
    """The environment keys (those that matter for the plan's devices) on which the shards differ, key ->
    values per shard; refused unless ``allow_mixed_env``."""
    keys = relevant_env_keys({c.get("device") for c in plan["cases"] if isinstance(c, dict)})
    mixed = {}
    for k in keys:
        values = [e.get(k) for e in envs]
        if len({json.dumps(v) for v in values}) > 1:
            mixed[k] = values
    if mixed and not allow_mixed_env:
        k, values = next(iter(mixed.items()))
        other = next(i for i, v in enumerate(values) if v != values[0])
        raise MergeError(f"{dirs[other]} ran with {k} {values[other]!r} but {dirs[0]} with {values[0]!r}: their figures "
                         "are not one run; merge shards from matching machines, or pass --allow-mixed-env")
    return mixed


def _records(dirs: list[Path], planned: list[str]) -> list[dict]:
    """Every line of every shard (history included), in plan order; a case recorded by two shards, or one
    not in the plan, is refused."""
    from ..records import read_records

    lines: list[dict] = []
    owner: dict[str, Path] = {}
    for d in dirs:
        for r in read_records(RunDir(d).records, latest=True):
            if r["case_id"] in owner:
                raise MergeError(f"case {r['case_id']} is recorded by both {owner[r['case_id']]} and {d}; "
                                 "merge disjoint shards (resume one run instead of running a case twice)")
            owner[r["case_id"]] = d
        lines += read_records(RunDir(d).records, latest=False)
    stray = sorted(set(owner) - set(planned))
    if stray:
        raise MergeError(f"{owner[stray[0]]} records case {stray[0]}, which is not in its plan; re-run that shard")
    order = {cid: i for i, cid in enumerate(planned)}
    return sorted(lines, key=lambda r: order.get(r["case_id"], len(order)))  # stable: a case's history stays in order


def merge_runs(out: Path, shard_dirs: list[Path], *, allow_mixed_env: bool = False, command: str | None = None) -> MergeResult:
    """Merge ``shard_dirs`` into the new run directory ``out`` and write its report."""
    from ..plan import Plan
    from ..records import new_run_id, read_records
    from ..report import write_report

    out, dirs = Path(out), [Path(d) for d in shard_dirs]
    _check_dirs(out, dirs)
    raw = _one_plan(dirs)
    shards = [RunDir(d) for d in dirs]
    infos = [_json(s.run_info, "run metadata") if s.run_info.is_file() else {} for s in shards]
    specs = _one_split(dirs, infos)
    envs = [_json(s.env, "environment") for s in shards]
    mixed = _mixed_env(dirs, envs, raw, allow_mixed_env)
    plan = Plan.load_json(shards[0].plan)
    lines = _records(dirs, [c.case_id for c in plan.cases])

    out.mkdir(parents=True, exist_ok=True)
    run = RunDir(out)
    plan.save(run.plan)
    run.write_env({**envs[0], **({"mixed": mixed} if mixed else {})})
    run.write_run_info({"run_id": new_run_id(), "merged_from": [str(d) for d in dirs],
                        "shards": specs, "run_ids": [i.get("run_id") for i in infos]})
    bench = _merge_benchmarks([s.benchmark for s in shards])
    if bench is not None:
        run.benchmark.write_text(json.dumps(bench, indent=1))
    if command:
        run.write_command(command)
    with open(run.records, "w", encoding="utf-8") as fh:
        for r in lines:
            fh.write(json.dumps(r, default=str) + "\n")
    report = write_report(out, command)
    latest = read_records(run.records)
    missing = sorted({c.case_id for c in plan.cases} - {r["case_id"] for r in latest})
    return MergeResult(latest, missing, report)


def _merge_benchmarks(paths: list[Path]) -> dict | None:
    """pytest-benchmark JSON of the shards as one file: the first machine_info/commit_info, all benchmarks."""
    docs = []
    for p in paths:
        if p.is_file():
            try:
                docs.append(json.loads(p.read_text(encoding="utf-8")))
            except ValueError:
                log.warning("%s is not valid JSON; its benchmarks are left out of the merged benchmark.json", p)
    if not docs:
        return None
    merged = {k: v for k, v in docs[0].items() if k != "benchmarks"}
    merged["benchmarks"] = [b for d in docs for b in d.get("benchmarks", [])]
    merged["machine_infos"] = [d.get("machine_info") for d in docs]
    return merged


def carry_benchmarks(path: Path, previous: dict | None, rerun: set[str]) -> None:
    """After a resumed run rewrote ``path`` (benchmark.json), put back the earlier run's benchmarks of
    the cases it did not re-run, so the file covers the whole run as records.jsonl does."""
    if not previous:
        return
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except ValueError:
        doc = None
    doc = doc if isinstance(doc, dict) else {**previous, "benchmarks": []}
    by_case = {b.get("param"): b for b in previous.get("benchmarks", []) if b.get("param") not in rerun}
    by_case.update({b.get("param"): b for b in doc.get("benchmarks", [])})
    doc["benchmarks"] = list(by_case.values())
    path.write_text(json.dumps(doc, indent=1))
    RunDir(path.parent).benchmark_prev.unlink(missing_ok=True)


def _load(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except ValueError:  # pytest-benchmark truncates its --benchmark-json at start: a killed run leaves it empty
        return None
    return doc if isinstance(doc, dict) else None


def previous_benchmarks(run: Path) -> dict | None:
    """The benchmarks a run directory already holds, kept aside in ``benchmark.json.prev`` before a
    resumed run lets pytest-benchmark truncate ``benchmark.json`` (so a kill cannot lose them)."""
    run = RunDir(run)
    prev, cur = _load(run.benchmark_prev), _load(run.benchmark)
    if prev and cur:
        by_case = {b.get("param"): b for b in prev.get("benchmarks", [])}
        by_case.update({b.get("param"): b for b in cur.get("benchmarks", [])})
        cur["benchmarks"] = list(by_case.values())
    doc = cur or prev
    if doc:
        tmp = run.benchmark_prev.with_name(run.benchmark_prev.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(run.benchmark_prev)
    return doc
