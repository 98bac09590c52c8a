"""``prunebench run --executor ray``: one Ray task per shard on a local Ray instance, merged into one run
(skipped where the optional extra is not installed: pip install 'prunebench[ray]'); the driver's logic also
against a stand-in for Ray's API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

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
    plan = load_plan(plan_file)
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert {r["case_id"] for r in records} == {c.case_id for c in plan.cases}
    assert all(r["status"] == "ok" for r in records)
    # one task per non-empty shard (the split is a hash of the case id), each holding exactly its shard's cases
    split = {i: {c.case_id for c in plan.cases_in_shard((i, 3))} for i in (1, 2, 3)}
    nonempty = [i for i in (1, 2, 3) if split[i]]
    assert sorted(p.name for p in (out / "shards").iterdir()) == [f"{i}-of-3" for i in nonempty]
    for i in nonempty:
        shard = [json.loads(line) for line in (out / "shards" / f"{i}-of-3" / "records.jsonl").read_text().splitlines()]
        assert {r["case_id"] for r in shard} == split[i]
    assert json.loads((out / "run.json").read_text())["shards"] == [f"{i}/3" for i in nonempty]
    assert "Cases: 4 ok" in (out / "report.md").read_text()
    assert "shard" in proc.stdout and "Ray tasks (3 shards)" in proc.stdout  # progress reaches the terminal


class _Ref:
    def __init__(self, plan: dict, info: dict):
        self.plan, self.info = plan, info


class _FakeRay:
    """Just enough of Ray's API for ``run_on_ray``: tasks run when their result is fetched; shards in ``dead`` raise
    as a dead worker would."""

    def __init__(self, body, dead=()):
        self.body, self.dead = body, set(dead)

    def is_initialized(self) -> bool:
        return True

    def remote(self, max_retries: int = 1):
        def task(fn):
            return SimpleNamespace(options=lambda **resources: SimpleNamespace(remote=_Ref))
        return task

    def wait(self, refs, num_returns: int = 1):
        return refs[:1], refs[1:]

    def get(self, ref: _Ref) -> dict:
        if ref.info["shard"] in self.dead:
            raise RuntimeError("the worker died")
        return self.body(ref.plan, ref.info)


def _finished_shard(plan: dict, info: dict) -> dict:
    """What ``_run_shard`` returns for a shard whose cases all succeeded (without running them)."""
    from bench.launch.shard import parse_shard
    from bench.plan import Plan
    from bench.records import Record

    cases = Plan.from_dict(plan).cases_in_shard(parse_shard(info["shard"]))
    records = "".join(Record(run_id=info["run_id"], case_id=c.case_id, status="ok").to_json() + "\n" for c in cases)
    files = {"plan.json": json.dumps(plan), "records.jsonl": records, "env.json": "{}", "run.json": json.dumps(info)}
    return {"shard": info["shard"], "returncode": 0, "files": files, "stderr": ""}


def test_ray_driver_reports_each_shard_merges_the_finished_ones_and_names_the_missing_cases(tmp_path, monkeypatch):
    """The driver without Ray: progress goes to the callback (the CLI prints it), a dead shard is reported as an
    error and its cases are missing from the merged run, and no finished shard at all is None."""
    from bench.launch import ray_executor
    from bench.plan import load_plan

    plan_file = tmp_path / "tiny.toml"
    plan_file.write_text(TINY_TOML)
    plan = load_plan(plan_file)
    split = {i: [c.case_id for c in plan.cases_in_shard((i, 3))] for i in (1, 2, 3)}
    dead = next(i for i in (1, 2, 3) if split[i])
    monkeypatch.setitem(sys.modules, "ray", _FakeRay(_finished_shard, dead={f"{dead}/3"}))
    said: list[tuple[str, bool]] = []
    info = {"run_id": "r", "shard": None, "select": None, "isolate": False, "case_timeout_s": None, "shards": 3}
    out = tmp_path / "run"
    result = ray_executor.run_on_ray(plan, out, info, progress=lambda msg, error=False: said.append((msg, error)))
    tasks = sum(1 for i in split if split[i])
    assert said[0] == (f"{len(plan.cases)} cases in {tasks} Ray tasks (3 shards) -> {out}", False)
    assert (f"shard {dead}/3 failed in Ray: RuntimeError: the worker died", True) in said
    assert sorted(m for m, e in said if m.endswith(" done")) == [f"shard {i}/3 done" for i in split if split[i] and i != dead]
    assert sorted(result.missing) == sorted(split[dead])
    assert {r["case_id"] for r in result.records} == {c.case_id for c in plan.cases} - set(split[dead])
    monkeypatch.setitem(sys.modules, "ray", _FakeRay(_finished_shard, dead={f"{i}/3" for i in (1, 2, 3)}))
    assert ray_executor.run_on_ray(plan, tmp_path / "none", info, progress=lambda msg, error=False: None) is None
