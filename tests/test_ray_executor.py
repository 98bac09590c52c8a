"""``prunebench run --executor ray``: one Ray task per shard on a local Ray instance, merged into one run.
Skipped where the optional extra is not installed (pip install 'prunebench[ray]')."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.plan import Case
from bench.launch.ray_executor import shard_resources
from pruning import PruneRecipe
from tests.test_isolation import TINY_TOML

REPO = Path(__file__).resolve().parents[1]



@pytest.mark.parametrize("devices, cpus, gpus", [(["cpu"], 2, 0), (["cpu", "cuda"], 2, 1), (["cuda"], 2, 1)])
def test_a_shard_with_cuda_cases_asks_ray_for_one_gpu(devices, cpus, gpus):
    cases = [Case("tiny-bert", PruneRecipe("dense"), "torch-dense", d, threads=2) for d in devices]
    assert shard_resources(cases) == {"num_cpus": cpus, "num_gpus": gpus}


def test_executor_ray_runs_one_task_per_shard_and_merges_them(tmp_path):
    pytest.importorskip("ray")
    from bench.plan import load_plan

    plan_file = tmp_path / "tiny.toml"
    plan_file.write_text(TINY_TOML)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)  # a local Ray instance on this machine
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--plan", str(plan_file), "--out", str(out),
                           "--executor", "ray", "--shards", "3"], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    planned = {c.case_id for c in load_plan(plan_file).cases}
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert {r["case_id"] for r in records} == planned
    assert all(r["status"] == "ok" for r in records)
    shards = sorted(p.name for p in (out / "shards").iterdir())
    assert shards == [d for d in ("1-of-3", "2-of-3", "3-of-3") if (out / "shards" / d).is_dir()] and shards
    assert json.loads((out / "run.json").read_text())["shards"] == [f"{s.split('-')[0]}/3" for s in shards]
    assert "Cases: 4 ok" in (out / "report.md").read_text()
