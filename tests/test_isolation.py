"""Runs that survive crashes, hangs and kills: fault injection under --isolate, kill -9 then --resume,
Ctrl-C, and shards merged back into the whole plan. Faults come from the test-only environment
variable PRUNEBENCH_FAULT (bench/_faults.py), read where a case starts measuring."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.cli import main
from bench.launch.isolate import classify_exception, classify_exit
from bench.measure.latency import Latency
from bench.plan import load_plan
from bench.records import RecordWriter, read_records
from bench.launch.shard import in_shard

REPO = Path(__file__).resolve().parents[1]

# 4 cases: {torch-masked, torch-dense} x batch {1, 2}; tiny caps so a case measures in well under a second.
TINY_TOML = """
name = "tiny"
models = ["tiny-bert"]
runtimes = ["torch-masked", "torch-dense"]
batch = [1, 2]
seq_len = [8]
threads = 1
time_cap_s = 0.2
min_rounds = 3
warmup = 0
ci_target = 0.5
memory = false
quality = false

[[recipes]]
method = "global-l1"
sparsity = [0.5]
"""
MASKED_B1 = "tiny-bert/global-l1@0.50/torch-masked/cpu/b1s8"
MASKED_B2 = "tiny-bert/global-l1@0.50/torch-masked/cpu/b2s8"
DENSE_B1 = "tiny-bert/global-l1@0.50/torch-dense/cpu/b1s8"
DENSE_B2 = "tiny-bert/global-l1@0.50/torch-dense/cpu/b2s8"


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_TOML)
    return path


def _env(tmp_path: Path, fault: str | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TMPDIR": str(tmp_path)}
    env.pop("PRUNEBENCH_FAULT", None)
    if fault:
        env["PRUNEBENCH_FAULT"] = fault
    return env


def _cli(args: list[str], tmp_path: Path, fault: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, cwd=tmp_path,
                          env=_env(tmp_path, fault), timeout=timeout)


# A terminal starts a command with Ctrl-C at its default. This test process may not pass that on: a signal
# ignored at exec stays ignored, and Python then installs no KeyboardInterrupt handler. One runner started
# here with SIGINT and SIGQUIT ignored (/proc/PID/status SigIgn) and never stopped on the test's Ctrl-C; both
# at once is what glibc's system() does process-wide while it runs (libtorch_cpu links it), so the likely
# cause is a thread of this process inside system() at the moment of the spawn. The runner restores it.
_AS_FROM_A_TERMINAL = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                       "sys.argv[0] = 'prunebench'; runpy.run_module('bench.cli', run_name='__main__', alter_sys=True)")


def _start(args: list[str], tmp_path: Path, fault: str | None = None) -> subprocess.Popen:
    """The runner in its own process group, as a terminal or a scheduler would start it (Ctrl-C at its default)."""
    return subprocess.Popen([sys.executable, "-c", _AS_FROM_A_TERMINAL, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=_env(tmp_path, fault),
                            start_new_session=True)


def _wait_for_records(path: Path, n: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.is_file() and path.read_text().count("\n") >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"runner ended early (exit {proc.returncode}): {proc.stderr.read()[-2000:]}")
        time.sleep(0.1)
    raise AssertionError(f"no {n} records in {path} after {timeout}s")


def _by_case(run: Path) -> dict[str, dict]:
    return {r["case_id"]: r for r in read_records(run)}


def _planned(plan_file: Path) -> set[str]:
    return {c.case_id for c in load_plan(plan_file).cases}


# -- fault injection under --isolate ---------------------------------------------------------------

def test_isolated_run_records_a_raise_and_a_segfault_and_goes_on(tmp_path, plan_file):
    out = tmp_path / "run"
    fault = f"raise@{MASKED_B1};segv@{MASKED_B2}"
    proc = _cli(["run", "--plan", str(plan_file), "--out", str(out), "--isolate", "--case-timeout", "120",
                 "-k", "not (dense and b1s8)"], tmp_path, fault)
    assert proc.returncode == 1, proc.stderr[-3000:]
    recs = _by_case(out)
    assert set(recs) == {MASKED_B1, MASKED_B2, DENSE_B2}
    assert recs[MASKED_B1]["status"] == "failed"
    assert recs[MASKED_B1]["error"].startswith("InjectedFault: injected fault in")
    assert recs[MASKED_B2]["status"] == "crashed"
    assert recs[MASKED_B2]["error"].startswith("killed by SIGSEGV")
    assert "injected segv" in recs[MASKED_B2]["error"]  # the end of the child's stderr
    ok = recs[DENSE_B2]
    assert ok["status"] == "ok" and ok["latency_ratio"] > 0 and ok["rounds"] >= 3
    assert ok["arch"] == "bert"  # measured by the child, written by the parent
    bench = json.loads((out / "benchmark.json").read_text())
    assert [b["param"] for b in bench["benchmarks"]] == [DENSE_B2]
    entry = bench["benchmarks"][0]
    assert entry["extra_info"]["isolated"] is True and entry["name"] == f"test_case[{DENSE_B2}]"
    stats = entry["stats"]
    assert len(stats["data"]) == stats["rounds"] == ok["rounds"]  # the child's samples, not a re-timing
    assert round(stats["median"] * 1e3, 4) == ok["latency_ms"]  # the very rounds the record's median came from
    report = (out / "report.md").read_text()
    assert "## Cases that did not succeed" in report and "killed by SIGSEGV" in report
    assert (out / "logs" / (MASKED_B2.replace("/", "__") + ".log")).is_file()


def test_isolated_case_that_hangs_is_killed_at_its_timeout_with_its_process_group(tmp_path, plan_file, monkeypatch):
    import psutil

    from bench.engine import Session
    from bench.launch.isolate import IsolatedCaseError, run_isolated
    from bench.records import Record

    monkeypatch.setenv("PRUNEBENCH_FAULT", f"hang@{MASKED_B1}")
    plan = load_plan(plan_file)
    case = next(c for c in plan.cases if c.case_id == MASKED_B1)
    session = Session(plan, tmp_path / "run", "r", isolate=True, case_timeout_s=3)
    rec = Record()
    session.describe(case, rec)
    workdir = str(session.workdir(case))  # the child's command line names its job file in there
    t0 = time.monotonic()
    with pytest.raises(IsolatedCaseError) as err:
        run_isolated(session, case, rec)
    session.close()
    assert err.value.status == rec.status == "timeout"
    assert rec.error.startswith("no result within 3s wall clock")
    assert 3 <= rec.duration_s < 20 and time.monotonic() - t0 < 30
    assert (tmp_path / "run" / "logs" / (MASKED_B1.replace("/", "__") + ".log")).is_file()
    leftovers = [p.pid for p in psutil.process_iter(["cmdline"]) if workdir in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []


@pytest.mark.parametrize("returncode, timed_out, evidence, status, start", [
    (None, True, None, "timeout", "no result within 5s"),
    (-signal.SIGKILL, False, "cgroup oom_kill 0 -> 1", "oom", "killed by SIGKILL with memory evidence"),
    (-signal.SIGKILL, False, None, "crashed", "killed by SIGKILL"),
    (-signal.SIGSEGV, False, "RSS reached 9 of 10 MiB", "crashed", "killed by SIGSEGV"),
    (3, False, None, "crashed", "exited with code 3"),
    (0, False, None, "crashed", "exited without a result"),
])
def test_child_exit_is_classified_by_the_stated_rule(returncode, timed_out, evidence, status, start):
    got = classify_exit(returncode, timed_out=timed_out, timeout_s=5, memory_evidence=evidence, stderr_tail="boom")
    assert got[0] == status
    assert got[1].startswith(start)
    assert timed_out or got[1].endswith("; stderr: boom")


@pytest.mark.parametrize("exc, status", [
    (MemoryError("x"), "oom"),
    (type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory"), "oom"),
    (TimeoutError("memory measurement got no answer in 5s"), "timeout"),
    (ValueError("bad"), "failed"),
])
def test_exceptions_are_classified_oom_timeout_or_failed(exc, status):
    assert classify_exception(exc)[0] == status
    assert classify_exception(exc)[1].startswith(type(exc).__name__ + ": ")


# -- durability: kill -9, resume, Ctrl-C --------------------------------------------------------------

def test_interrupted_then_killed_run_resumes_to_the_whole_plan_losing_nothing(tmp_path, plan_file):
    out = tmp_path / "run"
    records = out / "records.jsonl"
    # 1. Ctrl-C while the third case hangs: partial report, exit 130, a hint to resume.
    runner = _start(["run", "--plan", str(plan_file), "--out", str(out)], tmp_path, f"raise@{MASKED_B2};hang@{DENSE_B1}")
    _wait_for_records(records, 2, runner)
    os.killpg(runner.pid, signal.SIGINT)
    _, err = runner.communicate(timeout=60)
    assert runner.returncode == 130, err[-3000:]
    assert f"prunebench run --resume {out}" in err
    assert "Cases: 1 ok, 1 failed" in (out / "report.md").read_text()
    before = records.read_text()
    # 2. Resume; kill -9 while the last case hangs, then leave half a line as a kill mid-write would.
    runner = _start(["run", "--resume", str(out)], tmp_path, f"hang@{DENSE_B2}")
    _wait_for_records(records, 4, runner)
    os.killpg(runner.pid, signal.SIGKILL)
    runner.wait(timeout=30)
    with open(records, "a") as fh:
        fh.write(before[:57])
    # 3. Resume again: only the case never finished runs; the truncated line is set aside.
    proc = _cli(["run", "--resume", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "truncated" in proc.stderr
    assert records.read_text().startswith(before)  # what was measured before is kept byte for byte
    history = [(r["case_id"], r["status"]) for r in read_records(out, latest=False)]
    assert history == [(MASKED_B1, "ok"), (MASKED_B2, "failed"), (MASKED_B2, "ok"), (DENSE_B1, "ok"), (DENSE_B2, "ok")]
    assert set(_by_case(out)) == _planned(plan_file)
    assert all(r["status"] == "ok" for r in read_records(out))
    assert (out / "records.jsonl.partial").read_text() == before[:57] + "\n"
    assert "Cases: 4 ok" in (out / "report.md").read_text()
    params = {b["param"] for b in json.loads((out / "benchmark.json").read_text())["benchmarks"]}
    assert {MASKED_B1, DENSE_B2} <= params  # run 1's benchmark carried over; run 2 was killed before writing its JSON


def test_writer_cuts_a_truncated_last_line_before_appending(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"schema": 1, "case_id": "a", "status": "ok"}\n{"schema": 1, "case_')
    RecordWriter(path)
    assert path.read_text() == '{"schema": 1, "case_id": "a", "status": "ok"}\n'
    assert (tmp_path / "records.jsonl.partial").read_text() == '{"schema": 1, "case_\n'


# -- stability: percentiles only where the rounds support them ---------------------------------------

@pytest.mark.parametrize("rounds, p90, p99", [(9, False, False), (10, True, False), (99, True, False), (100, True, True)])
def test_percentiles_are_null_with_too_few_rounds(rounds, p90, p99):
    samples = tuple(0.001 * (1 + i % 7) for i in range(rounds))
    lat = Latency(samples, samples, 0.03)
    assert (lat.variant_percentile_ms(0.90) is not None) == p90
    assert (lat.variant_percentile_ms(0.99) is not None) == p99


# -- sharding ----------------------------------------------------------------------------------------

def test_shard_split_is_complete_disjoint_and_stable_when_cases_are_added():
    ids = [f"m/global-l1@0.{i:02d}/torch-dense/cpu/b{b}s128" for i in range(50) for b in (1, 8)]
    for n in (1, 2, 3, 7):
        owners = [[i for i in range(1, n + 1) if in_shard(c, i, n)] for c in ids]
        assert all(len(o) == 1 for o in owners)  # every case in exactly one shard
    before = {c: next(i for i in range(1, 4) if in_shard(c, i, 3)) for c in ids}
    grown = ids + [f"m/local-l1@0.{i:02d}/onnx/cpu/b8s128" for i in range(30)]
    assert all(in_shard(c, before[c], 3) for c in grown if c in before)  # adding cases moves none


def test_three_shards_merged_equal_the_unsharded_plan(tmp_path, plan_file, capsys):
    dirs = [tmp_path / f"shard{i}" for i in (1, 2, 3)]
    runners = [_start(["run", "--plan", str(plan_file), "--out", str(d), "--shard", f"{i}/3"], tmp_path)
               for i, d in zip((1, 2, 3), dirs)]
    for r in runners:
        _, err = r.communicate(timeout=120)
        assert r.returncode == 0, err[-3000:]
    shard_ids = [set(_by_case(d)) for d in dirs]
    assert sum(len(s) for s in shard_ids) == len(set().union(*shard_ids))  # disjoint
    out = tmp_path / "merged"
    assert main(["merge", str(out), *map(str, dirs)]) == 0  # in process: the subprocess path is in test_bad_input_cli
    assert set(_by_case(out)) == _planned(plan_file)
    assert json.loads((out / "plan.json").read_text()) == json.loads((dirs[0] / "plan.json").read_text())
    bench = json.loads((out / "benchmark.json").read_text())
    assert sorted(b["param"] for b in bench["benchmarks"]) == sorted(_planned(plan_file))
    report = (out / "report.md").read_text()
    assert "Cases: 4 ok" in report and "## tiny-bert" in report
    assert json.loads((out / "run.json").read_text())["shards"] == ["1/3", "2/3", "3/3"]


def test_an_empty_shard_is_a_complete_run_of_nothing(tmp_path, plan_file, capsys):
    ids = _planned(plan_file)
    i = next(i for i in range(1, 51) if not any(in_shard(c, i, 50) for c in ids))
    out = tmp_path / "empty"
    assert main(["run", "--plan", str(plan_file), "--out", str(out), "--shard", f"{i}/50"]) == 0  # no pytest inside: in process
    assert (out / "records.jsonl").read_text() == ""
    assert {"plan.json", "env.json", "run.json", "report.md"} <= {p.name for p in out.iterdir()}
    assert "Cases: none recorded." in (out / "report.md").read_text()
