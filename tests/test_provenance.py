"""Provenance of figures (issue 20 §6): records say whether their code was committed (``git_dirty`` and a
hash of the difference), env.json says how loaded the machine was, reports warn on both, neither counts
as an environment difference, and committed results come from a clean tree on a quiet machine."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

import bench.env
from bench.env import env_difference, fingerprint, record_load
from bench.plan import Case
from bench.records import read_records
from bench.report.provenance import provenance_warnings
from pruning import PruneRecipe

ROOT = Path(__file__).resolve().parents[1]
ENV_PY = ROOT / "bench" / "env.py"


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True)


def _git_state(tree: Path) -> dict:
    """``git_state()`` of a copy of bench/env.py placed in ``tree`` (as the module would run from there)."""
    spec = importlib.util.spec_from_file_location(f"env_copy_{abs(hash(str(tree)))}", tree / "bench" / "env.py")
    mod = importlib.util.module_from_spec(spec)
    import sys

    was, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # a __pycache__ in the tree would be untracked source
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.dont_write_bytecode = was
    return mod.git_state()


@pytest.fixture()
def repo(tmp_path) -> Path:
    """A committed tree holding bench/env.py, a source file, a .gitignore'd folder and results/."""
    r = tmp_path / "repo"
    (r / "bench").mkdir(parents=True)
    shutil.copy(ENV_PY, r / "bench" / "env.py")
    (r / "bench" / "formula.py").write_text("TOL = 1e-3\n")
    (r / ".gitignore").write_text(".venv/\n")
    _git(r, "init", "-q")
    _git(r, "add", ".")
    _git(r, "commit", "-qm", "init")
    return r


def test_a_clean_tree_is_clean_and_each_uncommitted_change_is_dirty_with_its_own_hash(repo):
    clean = _git_state(repo)
    assert clean["git_sha"] and clean["git_dirty"] is False and clean["git_diff_sha"] is None
    (repo / "bench" / "formula.py").write_text("TOL = 1e-2\n")
    one = _git_state(repo)
    (repo / "bench" / "formula.py").write_text("TOL = 5e-2\n")
    two = _git_state(repo)
    assert one["git_dirty"] is two["git_dirty"] is True
    assert one["git_sha"] == two["git_sha"] == clean["git_sha"]
    assert one["git_diff_sha"] and two["git_diff_sha"] and one["git_diff_sha"] != two["git_diff_sha"]


def test_untracked_source_is_dirty_but_ignored_files_and_run_directories_are_not(repo):
    (repo / ".venv").mkdir()
    (repo / ".venv" / "lib.py").write_text("x = 1\n")
    (repo / "results" / "my-run").mkdir(parents=True)
    (repo / "results" / "my-run" / "records.jsonl").write_text("{}\n")
    assert _git_state(repo)["git_dirty"] is False
    (repo / "bench" / "new_runtime.py").write_text("y = 2\n")
    state = _git_state(repo)
    assert state["git_dirty"] is True and state["git_diff_sha"]


def test_an_export_without_git_records_dirty_as_unknown(repo, tmp_path):
    export = tmp_path / "export"  # as the gate's `git archive` export: no .git
    shutil.copytree(repo, export, ignore=shutil.ignore_patterns(".git"))
    assert _git_state(export)["git_dirty"] is None
    inside = repo / "cache" / "src-abc"  # an export inside some other work tree is not that tree's code
    shutil.copytree(export, inside)
    state = _git_state(inside)
    assert state["git_dirty"] is None and state["git_diff_sha"] is None


def test_dirty_flag_and_load_are_not_environment_differences():
    env = dict(bench.env.environment())
    other = {**env, "git_dirty": not env.get("git_dirty"), "git_diff_sha": "0123456789ab",
             "load_avg_start": [99.0, 99.0, 99.0], "load_avg_end": [0.0, 0.0, 0.0]}
    assert env_difference(env, other) is None
    case = Case("minilm", PruneRecipe("global-l1", 0.5), "torch-dense")
    assert fingerprint(case, env) == fingerprint(case, other)
    assert env_difference(env, {**env, "torch": "0.0"}) is not None  # the check itself still bites


def test_foreign_cpu_share_counts_other_processes_not_the_run_itself():
    start = {"machine_busy_s": 100.0, "own_s": 10.0, "wall_s": 0.0}
    quiet = {"machine_busy_s": 120.0, "own_s": 29.5, "wall_s": 10.0}  # the run used 19.5 of the 20 busy s
    busy = {"machine_busy_s": 130.0, "own_s": 20.0, "wall_s": 10.0}  # 20 of 30 busy s were someone else's
    assert bench.env.foreign_cpu_share(start, quiet, 2) == 0.025
    assert bench.env.foreign_cpu_share(start, busy, 2) == 1.0  # 20 s of 20 core-seconds
    assert bench.env.foreign_cpu_share(start, {**busy, "machine_busy_s": 115.0}, 2) == 0.25
    assert bench.env.foreign_cpu_share(None, busy, 2) is None
    now = bench.env.cpu_clock()
    assert now is None or (now["machine_busy_s"] > 0 and now["own_s"] > 0)


def test_the_runs_own_cpu_counts_its_live_and_reaped_descendants_and_no_stranger():
    """CPU time, not wall time, so the test holds on a loaded machine: a child that burns 0.4 s of its own CPU
    counts once reaped and while still alive (a worker pool); a process that is not a descendant (double
    forked, as another job would be) never does."""
    import os
    import sys
    import time

    if bench.env.cpu_clock() is None:
        pytest.skip("no /proc/stat")
    burn = ("import sys, time\nwhile time.process_time() < 0.4: pass\n"
            "open(sys.argv[1], 'w').close()\ntime.sleep(30)")  # burn 0.4 CPU s, say so, then idle until killed

    def wait_for(flag: Path) -> None:
        deadline = time.monotonic() + 120
        while not flag.exists():
            assert time.monotonic() < deadline, "the spinning child never finished its CPU burn"
            time.sleep(0.05)

    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    flags = [tmp / f"pb-burn-{os.getpid()}-{i}" for i in range(2)]
    for f in flags:
        f.unlink(missing_ok=True)
    before = bench.env._own_cpu_s()
    live = subprocess.Popen([sys.executable, "-c", burn, str(flags[0])])
    try:
        wait_for(flags[0])
        with_live = bench.env._own_cpu_s()
    finally:
        live.kill()
        live.wait()
    reaped = bench.env._own_cpu_s()
    # /proc reports CPU in clock ticks (1/100 s): a 0.4 s burn can read 0.39
    assert with_live - before >= 0.35 and reaped - before >= 0.35, (before, with_live, reaped)
    subprocess.run(["sh", "-c", f"'{sys.executable}' -c \"$0\" '{flags[1]}' >/dev/null 2>&1 &", burn], check=True)
    try:
        wait_for(flags[1])
        assert bench.env._own_cpu_s() - reaped < 0.2  # only this test's own polling, not the stranger's 0.4 s
    finally:
        subprocess.run(["pkill", "-f", str(flags[1])], check=False)
        for f in flags:
            f.unlink(missing_ok=True)


def test_record_load_adds_start_and_end_and_keeps_the_rest(tmp_path):
    path = tmp_path / "env.json"
    path.write_text(json.dumps({"cpu_count": 2, "git_sha": "abc"}))
    record_load(path, [0.5, 0.4, 0.3], [3.5, 1.0, 0.5])
    assert json.loads(path.read_text()) == {"cpu_count": 2, "git_sha": "abc", "load_avg_start": [0.5, 0.4, 0.3],
                                            "load_avg_end": [3.5, 1.0, 0.5]}


def _rec(case_id: str, **env) -> dict:
    return {"case_id": case_id, "status": "ok", "env": {"git_sha": "abc1234", "git_dirty": False, "git_diff_sha": None, **env}}


@pytest.mark.parametrize(("records", "run_env", "expected"), [
    ([_rec("a"), _rec("b")], {"cpu_count": 2, "load_avg_start": [1.9], "load_avg_end": [0.5]}, []),
    ([_rec("a"), _rec("b", git_dirty=True, git_diff_sha="d1")], {}, ["1 of 2 records were measured from a dirty tree",
                                                                     "2 different source states"]),
    ([_rec("a", git_dirty=True, git_diff_sha="d1"), _rec("b", git_dirty=True, git_diff_sha="d2")], {},
     ["2 of 2 records", "d1, d2", "2 different source states"]),
    ([{"case_id": "old", "status": "ok", "env": {"git_sha": "abc1234"}}], {}, []),  # before the field: unknown, no warning
    ([_rec("a")], {"cpu_count": 2, "load_avg_start": [0.3], "load_avg_end": [2.6]}, ["2.60 at the end", "above its 2 cores"]),
    ([_rec("a")], {"cpu_count": 16, "load_avg_start": [2.5], "load_avg_end": None}, []),
    ([_rec("a")], {"cpu_count": 2, "load_avg_start": [2.1], "load_avg_end": [2.05]}, []),  # the run's own 2 threads
    ([_rec("a")], {"cpu_count": 2, "load_avg_start": [0.3], "load_avg_end": [2.1], "foreign_cpu_share": 0.02}, []),
    ([_rec("a")], {"cpu_count": 2, "load_avg_start": [0.3], "load_avg_end": [2.1], "foreign_cpu_share": 0.35},
     ["other processes used 35%"]),
], ids=["clean-quiet", "one-dirty", "two-diffs", "old-record", "busy-end", "no-end-load", "own-threads",
        "quiet-share", "busy-share"])
def test_provenance_warnings_name_dirty_trees_mixed_states_and_a_busy_machine(records, run_env, expected):
    text = "\n".join(provenance_warnings(records, run_env))
    assert bool(text) == bool(expected)
    for words in expected:
        assert words in text


def test_a_run_records_its_load_and_its_report_warns_on_dirty_figures_and_load(tmp_path, monkeypatch):
    """``execute`` with nothing left to run (a resumed, finished run): env.json gets the load at start and end,
    and report.md marks records from a dirty tree and a load above the core count."""
    from bench.plan import Plan
    from bench.run import execute

    out = tmp_path / "run"
    shutil.copytree(ROOT / "results" / "baseline", out, ignore=shutil.ignore_patterns("plots"))
    lines = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines() if x.strip()]
    lines[0]["env"] = {**lines[0]["env"], "git_dirty": True, "git_diff_sha": "feedbeef0123"}
    (out / "records.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    loads = iter([[0.1, 0.1, 0.1], [64.0, 8.0, 1.0]])
    monkeypatch.setattr(bench.env, "load_average", lambda: next(loads))
    execute(out, Plan.load_json(out / "plan.json"), {"run_id": "t"}, None, resume=True)
    env = json.loads((out / "env.json").read_text())
    assert env["load_avg_start"] == [0.1, 0.1, 0.1] and env["load_avg_end"] == [64.0, 8.0, 1.0]
    report = (out / "report.md").read_text()
    assert "dirty tree" in report and "feedbeef0123" in report and lines[0]["case_id"] in report
    assert "64.00 at the end" in report


def _committed_runs() -> list[Path]:
    """The run directories git tracks under results/ (a user's own runs, results/<run-id>/, are ignored by
    .gitignore and are not committed figures); every one where git cannot say (an export without .git)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--", "results/*/records.jsonl"], cwd=ROOT, capture_output=True)
    if listed.returncode == 0:
        return sorted({(ROOT / f).parent for f in listed.stdout.decode().split("\0") if f})
    return sorted(p.parent for p in (ROOT / "results").glob("*/records.jsonl"))


@pytest.mark.parametrize("run", _committed_runs(), ids=lambda p: p.name)
def test_committed_results_come_from_a_clean_tree_on_a_quiet_machine(run):
    dirty = [r["case_id"] for r in read_records(run / "records.jsonl", latest=False)
             if (r.get("env") or {}).get("git_dirty") is True]
    assert not dirty, f"{run.name}: {len(dirty)} records from a dirty tree (e.g. {dirty[0]}); re-record from a clean commit"
    env = json.loads((run / "env.json").read_text()) if (run / "env.json").is_file() else {}
    busy = provenance_warnings([], env)  # the report's own rule for a busy machine
    assert not busy, f"{run.name}: {busy}"
