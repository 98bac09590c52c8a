"""``prunebench run --executor ray --shards N``: one Ray task per shard, then merged into ``--out``.

Ray schedules; prunebench does not. Each task prepares a run directory holding the plan and its
shard on whatever node Ray picks, runs ``prunebench run --resume`` there in a subprocess (so a
crash of the benchmark never takes the Ray worker down), and returns the directory's files; the
driver writes them to ``OUT/shards/I-of-N`` and merges them into ``OUT``. A shard with CUDA cases
asks Ray for one GPU; every task asks for the plan's thread count in CPUs. Without ``RAY_ADDRESS``
Ray starts a local instance on this machine; with it, the tasks go to that cluster (prunebench must
be installed on every node). Needs the optional extra: ``pip install 'prunebench[ray]'``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..rundir import RunDir

if TYPE_CHECKING:
    from .merge import MergeResult

__all__ = ["RayExecutorError", "run_on_ray", "shard_resources"]

log = logging.getLogger("bench.launch.ray_executor")

_FILES = RunDir.FILES


class RayExecutorError(ValueError):
    """Ray cannot be started or reached; the message says what to check."""


def shard_resources(cases) -> dict:
    """Ray resources for a shard's task: its threads in CPUs, and one GPU if any case runs on CUDA."""
    return {"num_cpus": max((c.threads for c in cases), default=1),
            "num_gpus": 1 if any(c.device == "cuda" for c in cases) else 0}


def _run_shard(plan: dict, info: dict) -> dict:
    """Ray task body: run one shard in a fresh run directory and return its files and exit code."""
    work = Path(tempfile.mkdtemp(prefix="prunebench-shard-"))
    try:
        RunDir(work).plan.write_text(json.dumps(plan, indent=1))
        RunDir(work).write_run_info(info)
        cmd = [sys.executable, "-m", "bench.cli", "run", "--resume", str(work)]
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        files = {name: (work / name).read_text(encoding="utf-8") for name in _FILES if (work / name).is_file()}
        return {"shard": info["shard"], "returncode": proc.returncode, "files": files,
                "stderr": "\n".join(proc.stderr.strip().splitlines()[-5:])}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _log(message: str, error: bool = False) -> None:
    (log.warning if error else log.info)(message)


def run_on_ray(plan, out: Path, info: dict, command: str | None = None,
               progress: Callable[..., None] = _log) -> MergeResult | None:
    """Submit one task per non-empty shard, wait for all, merge into ``out``: the merged run, or None when no
    shard finished. Each shard's outcome is passed to ``progress(message, error=False)`` as it arrives (the
    command prints it; by default it is logged)."""
    import ray

    from .merge import merge_runs
    from .shard import format_shard

    n = info["shards"]
    shards = [(i, plan.cases_in_shard((i, n))) for i in range(1, n + 1)]
    shards = [(i, cases) for i, cases in shards if cases]
    if not ray.is_initialized():
        address = os.environ.pop("RAY_ADDRESS", None) or None  # an empty RAY_ADDRESS means a local instance
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise RayExecutorError(f"cannot start or reach {where} ({str(exc).strip().splitlines()[0][:200]}); "
                                   "check RAY_ADDRESS or run `ray start --head`") from None
    task = ray.remote(max_retries=1)(_run_shard)
    pending = {}
    for i, cases in shards:
        shard_info = {k: v for k, v in info.items() if k not in ("executor", "shards")}
        shard_info.update(shard=format_shard((i, n)), run_id=f"{info['run_id']}-{i}of{n}")
        ref = task.options(**shard_resources(cases)).remote(plan.to_dict(), shard_info)
        pending[ref] = i
    progress(f"{len(plan.cases)} cases in {len(pending)} Ray tasks ({n} shards) -> {out}")
    dirs = []
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        i = pending.pop(done[0])
        try:
            res = ray.get(done[0])
        except Exception as exc:  # the task or its worker died: its cases stay missing, the run goes on
            progress(f"shard {i}/{n} failed in Ray: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}", error=True)
            continue
        d = out / "shards" / f"{i}-of-{n}"
        d.mkdir(parents=True, exist_ok=True)
        for name, text in res["files"].items():
            (d / name).write_text(text, encoding="utf-8")
        finished = all(name in res["files"] for name in RunDir.FINISHED)
        if finished:
            dirs.append(d)
        state = "done" if finished and res["returncode"] in (0, 1) else f"exit {res['returncode']}: {res['stderr']}"
        progress(f"shard {res['shard']} {state}")
    if not dirs:
        return None
    dirs.sort()
    for stale in (RunDir(out).plan, RunDir(out).run_info):  # merge writes the run's own
        stale.unlink(missing_ok=True)
    return merge_runs(out, dirs, command=command)
