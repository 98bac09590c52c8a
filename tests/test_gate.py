"""`prunebench gate`: the CI gate works on a runner whose CPU is not the baseline's.

On a changed CPU it does not refuse (exit 2) but measures the baseline's commit on this machine,
alternating with the candidate. It fails (exit 1) on a lost case, a newly skipped case, a case failing in
round 2 only, a crashed candidate, a planted quality collapse and a planted 10% or 15% slowdown, and passes
A/A. The gate's logic is driven with a real tiny-bert run recorded once per session (conftest's
``gate_runs``); ``Side.run`` hands out that run or a copy planted deterministically (records changed by
construction, never a timing that machine load could move). One test runs the whole gate end to end,
exporting this checkout's HEAD as the "baseline commit"; one checks that the committed baseline's
quality split is what today's code scores on.
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
from bench.gate_sides import SideRun
from bench.records import read_records

from .conftest import GATE_PLAN as PLAN  # the tiny-bert plan of gate_runs
from .planted_slowdown import plant_records

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
        item = queues[self.name].pop(0)  # a run directory, or (directory, exit code, last line) for a crash
        src, code, last = item if isinstance(item, tuple) else (item, 0, "")
        shutil.copytree(src, out)
        return SideRun(self.name, out, code, last)

    monkeypatch.setattr(Side, "run", fake_run)
    monkeypatch.setattr(gate, "baseline_side", lambda repo, sha, extras, python=None: Side("baseline", ("x",), repo))

    def load(baseline: list[Path], candidate: list[Path]):
        queues["baseline"], queues["candidate"] = list(baseline), list(candidate)
        return calls

    return load


def _env_of(run: Path) -> dict:
    return json.loads((run / "env.json").read_text())


def _variant(tmp: Path, source: Path, name: str, keep=None, first: int | None = None, **over) -> Path:
    """A copy of run ``source`` with only the records ``keep(record)`` accepts (and only its ``first`` ones), and
    ``over`` set on its pruned torch-dense case (a planted change of status or figures)."""
    out = tmp / name
    shutil.copytree(source, out)
    recs = [r for r in read_records(out / "records.jsonl") if keep is None or keep(r)][:first]
    for r in recs:
        if "/torch-dense/" in r["case_id"] and "dense@" not in r["case_id"]:
            r.update(over)
    (out / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return out


def test_changed_cpu_takes_the_same_machine_path_and_alternates(tmp_path, gate_runs, replay):
    base = _baseline(tmp_path, gate_runs["a"])
    calls = replay([gate_runs["a"], gate_runs["a"]], [gate_runs["a"], gate_runs["a"]])
    res = run_gate(base, repo=ROOT, rounds=2, work=tmp_path / "w", current_env=_env_of(gate_runs["a"]))
    assert res.path == "same-machine baseline" and "cpu differs" in res.why
    assert calls == ["baseline", "candidate", "baseline", "candidate"]
    assert len(res.timing) == 2
    assert res.exit_code == 0, res.to_markdown()  # A/A: the same records on both sides


def test_same_environment_still_measures_the_baseline_in_this_job(tmp_path, gate_runs, replay):
    """A matching CPU name is not the same machine: by default timing is compared within the job."""
    base = _baseline(tmp_path, gate_runs["a"], cpu=None)
    calls = replay([gate_runs["a"], gate_runs["a"]], [gate_runs["a"], gate_runs["a"]])
    res = run_gate(base, repo=ROOT, rounds=2, work=tmp_path / "w", current_env=_env_of(gate_runs["a"]))
    assert res.path == "same-machine baseline" and calls == ["baseline", "candidate", "baseline", "candidate"]
    assert res.exit_code == 0, res.to_markdown()


def test_committed_timing_uses_the_committed_ratios_when_the_environment_matches(tmp_path, gate_runs, replay):
    base = _baseline(tmp_path, gate_runs["a"], cpu=None)
    calls = replay([], [gate_runs["a"]])
    res = run_gate(base, repo=ROOT, work=tmp_path / "w", current_env=_env_of(gate_runs["a"]), committed_timing=True)
    assert res.path == "committed baseline" and calls == ["candidate"]
    assert res.exit_code == 0, res.to_markdown()


@pytest.mark.parametrize("factor", [1.15, 1.10])
def test_planted_slowdown_is_caught_on_the_same_machine_path(tmp_path, gate_runs, replay, factor):
    base = _baseline(tmp_path, gate_runs["a"])
    tight = plant_records(gate_runs["a"], tmp_path / "tight", 1.0, ci=0.02)  # CIs of ±2%, whatever was measured
    planted = plant_records(tight, tmp_path / "planted", factor)
    replay([tight, tight], [planted, planted])
    res = run_gate(base, repo=ROOT, rounds=2, work=tmp_path / "w", current_env=_env_of(gate_runs["a"]))
    assert res.path == "same-machine baseline"
    assert res.exit_code == 1
    assert [c.split("/")[2] for c in res.timing_regressions] == ["torch-dense"], res.to_markdown()
    assert not res.figures.regressions  # the plant changes speed only
    assert "REGRESSION" in res.to_markdown()


def test_a_slowdown_in_one_round_only_is_machine_drift_not_a_regression(tmp_path, gate_runs, replay):
    base = _baseline(tmp_path, gate_runs["a"])
    tight = plant_records(gate_runs["a"], tmp_path / "tight", 1.0, ci=0.02)
    replay([tight, tight], [plant_records(tight, tmp_path / "planted", 1.15), tight])
    res = run_gate(base, repo=ROOT, rounds=2, work=tmp_path / "w", current_env=_env_of(gate_runs["a"]))
    assert res.timing[0].regressions and not res.timing[1].regressions
    assert res.timing_regressions == [] and res.exit_code == 0


@pytest.mark.parametrize("cpu", [OTHER_CPU, None], ids=["same-machine path", "committed path"])
@pytest.mark.parametrize("tamper", [{"params": 1}, {"size_bytes": 7}, {"sparsity_actual": 0.25}, {"quality_cosine": 1.5}])
def test_changed_deterministic_figure_is_caught_on_either_path(tmp_path, gate_runs, replay, cpu, tamper):
    base = _baseline(tmp_path, gate_runs["a"], cpu=cpu, tamper=tamper)
    replay([gate_runs["a"], gate_runs["a"]], [gate_runs["a"], gate_runs["a"]])
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
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "compare", str(base), str(gate_runs["a"])],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "cpu differs" in err[0] and "prunebench gate" in err[0]


# -- what the gate must not let through -----------------------------------------------------------------------------------

def _pruned_dense(r: dict) -> bool:
    return "/torch-dense/" in r["case_id"] and "dense@" not in r["case_id"]


@pytest.mark.parametrize(("plant", "figure"), [
    ("lost", "case"),
    ("skipped", "status"),
    ("collapse", "quality_cosine"),
    ("other-split", "quality_split"),
])
def test_gate_fails_on_a_planted_fault_in_any_round(tmp_path, gate_runs, replay, plant, figure):
    """Round 1 is clean; the fault is in round 2 only, and still fails the gate (every round is checked)."""
    a = gate_runs["a"]
    bad = {"lost": lambda: _variant(tmp_path, a, "bad", keep=lambda r: not _pruned_dense(r)),
           "skipped": lambda: _variant(tmp_path, a, "bad", status="skipped", reason="planted"),
           "collapse": lambda: _variant(tmp_path, a, "bad", quality_cosine=0.01, quality_r1=0.0),
           "other-split": lambda: _variant(tmp_path, a, "bad", quality_split="bbc-news seed=1 eval=250")}[plant]()
    base = _baseline(tmp_path, a)
    replay([a, a], [a, bad])
    res = run_gate(base, repo=ROOT, rounds=2, work=tmp_path / "w", current_env=_env_of(a))
    assert not res.figures.regressions  # round 1 is clean
    assert res.exit_code == 1, res.to_markdown()
    [round2] = res.later_figures
    assert figure in {f.figure for c in round2.regressions for f in c.findings if f.kind == "regression"}
    assert "Candidate round 2 vs the committed baseline: 1 regressions" in res.to_markdown()


@pytest.mark.parametrize(("code", "kept", "crashed"), [
    (-9, 1, "killed by SIGKILL"),   # killed after its first case
    (1, 1, "exited 1 with no failed case"),  # an uncaught exception after its first case
    (None, 1, "did not finish"),    # stopped at --run-timeout
    (1, None, None),                # exit 1 because a case failed: complete, that case compared as failed
    (0, None, None),
])
def test_a_crashed_candidate_is_a_regression_naming_its_exit(tmp_path, gate_runs, replay, code, kept, crashed):
    a = gate_runs["a"]
    if kept is None:
        cand = _variant(tmp_path, a, "cand", **({"status": "failed", "error": "planted"} if code == 1 else {}))
    else:
        cand = _variant(tmp_path, a, "cand", first=kept)
    base = _baseline(tmp_path, a, cpu=None)
    replay([], [(cand, code, "RuntimeError: planted crash")])
    res = run_gate(base, repo=ROOT, work=tmp_path / "w", current_env=_env_of(a), committed_timing=True)
    assert res.exit_code == (1 if crashed or code == 1 else 0), res.to_markdown()
    if crashed:
        [line] = res.crashes
        assert crashed in line and "RuntimeError: planted crash" in line and "after 1 case record" in line
        assert line in res.to_markdown()
    else:
        assert res.crashes == []


def test_a_candidate_that_wrote_nothing_loses_every_case(tmp_path, gate_runs, replay):
    a = gate_runs["a"]
    empty = tmp_path / "empty"
    empty.mkdir()
    base = _baseline(tmp_path, a, cpu=None)
    replay([], [(empty, -11, "")])
    res = run_gate(base, repo=ROOT, work=tmp_path / "w", current_env=_env_of(a), committed_timing=True)
    assert res.exit_code == 1 and "SIGSEGV" in res.crashes[0]
    assert len(res.figures.regressions) == len(read_records(a / "records.jsonl"))


def test_a_latency_ratio_without_ci_in_one_round_fails_the_gate(tmp_path, gate_runs, replay):
    a = gate_runs["a"]
    no_ci = _variant(tmp_path, a, "noci", latency_ratio_lo=None, latency_ratio_hi=None)
    replay([a, a], [a, no_ci])
    res = run_gate(_baseline(tmp_path, a), repo=ROOT, rounds=2, work=tmp_path / "w", current_env=_env_of(a))
    assert res.exit_code == 1 and [c.split("/")[2] for c in res.unjudged] == ["torch-dense"], res.to_markdown()


def test_committed_baseline_quality_split_is_what_todays_code_scores_on(monkeypatch, tmp_path):
    """results/baseline must be re-recorded when the CI plan's quality data changes (it went stale once: every
    quality comparison was then skipped). The expected split is computed by the code a run uses."""
    from bench.calibrate import CACHE_ENV
    from bench.engine import Session
    from bench.plan import load_plan

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))  # Session sets it; restored after the test
    plan = load_plan(ROOT / "bench" / "plans" / "ci.toml")
    expected = Session(plan, tmp_path / "run", "staleness-check").quality_task().split
    recorded = {r.get("quality_split") for r in read_records(ROOT / "results" / "baseline") if r["status"] == "ok"}
    assert recorded == {expected}, (
        f"results/baseline is stale: its quality_split is {recorded}, today's code scores the CI plan on {expected!r}; "
        "re-record it with `prunebench run --plan bench/plans/ci.toml --out results/baseline` from a clean tree")
