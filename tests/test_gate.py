"""`prunebench gate`: the CI gate works on a runner whose CPU is not the baseline's.

On a changed CPU it does not refuse (exit 2) but measures the baseline's commit on this machine,
alternating with the candidate; an A/A pair reports nothing; a planted 15% slowdown is caught on that
path; a changed deterministic figure is caught on either path. The gate's logic is driven with real
tiny-bert runs recorded once per session (conftest's ``gate_runs``; ``Side.run`` hands them out in order);
one test runs the whole gate end to end, exporting this checkout's HEAD as the "baseline commit".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import gate
from bench.gate import GateError, Side, run_gate
from bench.records import read_records

from .conftest import GATE_PLAN as PLAN  # the tiny-bert A/A + planted-slowdown plan of gate_runs

ROOT = Path(__file__).resolve().parents[1]
OTHER_CPU = "Intel(R) Xeon(R) Processor (faked by the test)"


def _baseline(tmp: Path, source: Path, cpu: str | None = OTHER_CPU, tamper: dict | None = None) -> Path:
    """A committed-baseline directory made from a run: its CPU changed (as if recorded elsewhere)."""
    out = tmp / "baseline"
    shutil.copytree(source, out)
    env = json.loads((out / "env.json").read_text())
    env["cpu"] = cpu or env["cpu"]
    env["git_sha"] = "HEAD"
    (out / "env.json").write_text(json.dumps(env))
    recs = read_records(out / "records.jsonl")
    for r in recs:
        r["env"] = {**r["env"], "cpu": env["cpu"]}
        if tamper and "/torch-dense/" in r["case_id"] and "dense@" not in r["case_id"]:
            r.update(tamper)
    (out / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return out


@pytest.fixture
def replay(monkeypatch, gate_runs):
    """Side.run hands out recorded runs, per side, in the order given; returns the list of calls."""
    calls: list[str] = []
    queues: dict[str, list[Path]] = {}

    def fake_run(self: Side, args, out, timeout_s):
        assert args == gate_runs["args"]  # the baseline's own command, its --out dropped
        calls.append(self.name)
        shutil.copytree(queues[self.name].pop(0), out)
        return out

    monkeypatch.setattr(Side, "run", fake_run)
    monkeypatch.setattr(gate, "baseline_side", lambda repo, sha, extras, python=None: Side("baseline", ("x",), repo))

    def load(baseline: list[Path], candidate: list[Path]):
        queues["baseline"], queues["candidate"] = list(baseline), list(candidate)
        return calls

    return load


def _env_of(run: Path) -> dict:
    return json.loads((run / "env.json").read_text())


def test_changed_cpu_takes_the_same_machine_path_and_alternates(tmp_path, gate_runs, replay):
    base = _baseline(tmp_path, gate_runs["a"])
    calls = replay([gate_runs["a"], gate_runs["a"]], [gate_runs["b"], gate_runs["b"]])
    res = run_gate(base, repo=ROOT, rounds=2, work=tmp_path / "w", current_env=_env_of(gate_runs["a"]))
    assert res.path == "same-machine baseline" and "cpu differs" in res.why
    assert calls == ["baseline", "candidate", "baseline", "candidate"]
    assert len(res.timing) == 2
    assert res.exit_code == 0, res.to_markdown()


def test_same_environment_still_measures_the_baseline_in_this_job(tmp_path, gate_runs, replay):
    """A matching CPU name is not the same machine: by default timing is compared within the job."""
    base = _baseline(tmp_path, gate_runs["a"], cpu=None)
    calls = replay([gate_runs["a"], gate_runs["a"]], [gate_runs["b"], gate_runs["b"]])
    res = run_gate(base, repo=ROOT, rounds=2, work=tmp_path / "w", current_env=_env_of(gate_runs["a"]))
    assert res.path == "same-machine baseline" and calls == ["baseline", "candidate", "baseline", "candidate"]
    assert res.exit_code == 0, res.to_markdown()


def test_committed_timing_uses_the_committed_ratios_when_the_environment_matches(tmp_path, gate_runs, replay):
    base = _baseline(tmp_path, gate_runs["a"], cpu=None)
    calls = replay([], [gate_runs["b"]])
    res = run_gate(base, repo=ROOT, work=tmp_path / "w", current_env=_env_of(gate_runs["a"]), committed_timing=True)
    assert res.path == "committed baseline" and calls == ["candidate"]
    assert res.exit_code == 0, res.to_markdown()


def test_planted_slowdown_is_caught_on_the_same_machine_path(tmp_path, gate_runs, replay):
    base = _baseline(tmp_path, gate_runs["a"])
    replay([gate_runs["a"], gate_runs["b"]], [gate_runs["planted"], gate_runs["planted"]])
    res = run_gate(base, repo=ROOT, rounds=2, work=tmp_path / "w", current_env=_env_of(gate_runs["a"]))
    assert res.path == "same-machine baseline"
    assert res.exit_code == 1
    assert [c.split("/")[2] for c in res.timing_regressions] == ["torch-dense"], res.to_markdown()
    assert not res.figures.regressions  # the plant changes speed only
    assert "REGRESSION" in res.to_markdown()


def test_a_slowdown_in_one_round_only_is_machine_drift_not_a_regression(tmp_path, gate_runs, replay):
    base = _baseline(tmp_path, gate_runs["a"])
    replay([gate_runs["a"], gate_runs["a"]], [gate_runs["planted"], gate_runs["b"]])
    res = run_gate(base, repo=ROOT, rounds=2, work=tmp_path / "w", current_env=_env_of(gate_runs["a"]))
    assert res.timing[0].regressions and not res.timing[1].regressions
    assert res.timing_regressions == [] and res.exit_code == 0


@pytest.mark.parametrize("cpu", [OTHER_CPU, None], ids=["same-machine path", "committed path"])
@pytest.mark.parametrize("tamper", [{"params": 1}, {"size_bytes": 7}, {"sparsity_actual": 0.25}, {"quality_cosine": 1.5}])
def test_changed_deterministic_figure_is_caught_on_either_path(tmp_path, gate_runs, replay, cpu, tamper):
    base = _baseline(tmp_path, gate_runs["a"], cpu=cpu, tamper=tamper)
    replay([gate_runs["a"], gate_runs["a"]], [gate_runs["b"], gate_runs["b"]])
    res = run_gate(base, repo=ROOT, rounds=2, work=tmp_path / "w", current_env=_env_of(gate_runs["a"]),
                   committed_timing=cpu is None)
    figure = next(iter(tamper))
    assert res.exit_code == 1
    assert [f.figure for c in res.figures.regressions for f in c.findings if f.kind == "regression"] == [figure]


def test_baseline_without_a_commit_cannot_gate(tmp_path, gate_runs):
    base = _baseline(tmp_path, gate_runs["a"])
    env = json.loads((base / "env.json").read_text())
    env["git_sha"] = None
    (base / "env.json").write_text(json.dumps(env))
    with pytest.raises(GateError, match="no git_sha"):
        run_gate(base, repo=ROOT, work=tmp_path / "w", current_env=_env_of(gate_runs["a"]))


def test_unknown_baseline_commit_says_to_fetch_history(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEBENCH_GATE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(GateError, match="not in this clone.*fetch"):
        gate.baseline_side(ROOT, "0123456789abcdef0123", "")


@pytest.mark.slow
def test_gate_end_to_end_on_a_faked_cpu_change(tmp_path, gate_runs, monkeypatch):
    """The CLI, for real: the baseline 'commit' is this checkout's HEAD, exported and run on this
    interpreter (--baseline-python), alternating with the candidate; an A/A gate exits 0."""
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    base = _baseline(tmp_path, gate_runs["a"])
    (base / "command.txt").write_text(f"prunebench run --plan {tmp_path / 'plan.toml'} --out results/baseline\n")
    (tmp_path / "plan.toml").write_text(PLAN)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PRUNEBENCH_GATE_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "gate", "--baseline", str(base), "--rounds", "1",
                           "--baseline-python", sys.executable, "--work", str(tmp_path / "w"),
                           "--summary", str(tmp_path / "summary.md")],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "same-machine baseline" in proc.stdout and "cpu differs" in proc.stdout
    assert list((tmp_path / "cache").glob("src-*/pyproject.toml")) and (tmp_path / "w" / "baseline-1" / "records.jsonl").is_file()
    assert "no regression" in (tmp_path / "summary.md").read_text()


def test_compare_still_refuses_mixed_cpus_and_points_to_gate(tmp_path, gate_runs):
    base = _baseline(tmp_path, gate_runs["a"])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "compare", str(base), str(gate_runs["b"])],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "cpu differs" in err[0] and "prunebench gate" in err[0]
