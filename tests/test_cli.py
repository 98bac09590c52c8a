"""The CLI end to end: a run writes its four files and a report; failures are recorded and the run
goes on (exit 1); bad input gets one line on stderr and exit 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import cli
from bench.records import read_records

from .forked_cli import run_many

TINY_RUN = ["--model", "tiny-bert", "--batch", "2", "--seq-len", "16", "--time-cap", "0.5", "--threads", "1"]


def _prunebench(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """One real run on tiny-bert (two methods x torch-masked, torch-dense; memory measured), read by the tests below."""
    out = tmp_path_factory.mktemp("cli") / "run"
    r = _prunebench("run", *TINY_RUN, "--methods", "global-l1,ln-structured", "--sparsity", "0.5", "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


def test_run_writes_records_benchmark_env_and_report(tiny_run):
    out = tiny_run
    for name in ("records.jsonl", "benchmark.json", "env.json", "report.md", "plan.json"):
        assert (out / name).is_file(), name
    records = read_records(out)
    assert [x["status"] for x in records] == ["ok"] * 4
    for x in records:
        assert x["latency_ratio_lo"] <= x["latency_ratio"] <= x["latency_ratio_hi"]
        assert x["sparsity_actual"] == pytest.approx(0.5, abs=1e-3)
        assert x["quality_meaningful"] is False
        assert x["max_abs_diff"] <= 1e-5
    masked = next(x for x in records if x["runtime"] == "torch-masked" and x["method"] == "global-l1")
    baked = next(x for x in records if x["runtime"] == "torch-dense" and x["method"] == "global-l1")
    assert masked["size_bytes"] > baked["size_bytes"]  # weight_orig + weight_mask vs plain tensors
    assert baked["size_ratio"] == pytest.approx(1.0, abs=0.01)
    bench_json = json.loads((out / "benchmark.json").read_text())
    assert len(bench_json["benchmarks"]) == 4
    info = json.loads((out / "run.json").read_text())  # the run's wall time and the harness's share of it
    assert 0 < info["overhead_s"] < info["wall_s"]
    report = (out / "report.md").read_text()
    assert "torch-masked" in report and "torch-dense" in report and "random-init" in report
    assert "Verdict: the tutorial's claim" in report


def test_report_command_regenerates_the_report_from_records(tiny_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out)  # a copy: the run above stays as it was written
    (out / "report.md").unlink()
    r = _prunebench("report", str(out))
    assert r.returncode == 0 and (out / "report.md").is_file()


def test_a_failing_case_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    from bench import runtimes

    monkeypatch.setitem(runtimes.RUNTIMES, "broken", "tests.broken_runtime")
    out = tmp_path / "run"
    code = cli.main(["run", *TINY_RUN, "--methods", "global-l1", "--runtimes", "broken,torch-dense", "--no-memory",
                     "--out", str(out)])
    assert code == 1
    records = {x["runtime"]: x for x in read_records(out)}
    assert records["broken"]["status"] == "failed"
    assert "planted failure" in records["broken"]["error"]
    assert records["torch-dense"]["status"] == "ok"
    assert "planted failure" in (out / "report.md").read_text()


def test_list_names_models_methods_and_runtimes(cli_runs):
    r = cli_runs[("list",)]
    assert r.returncode == 0
    for word in ("minilm", "global-l1", "ln-structured", "torch-masked", "torch-dense"):
        assert word in r.stdout


BAD_INPUT = [
    (["run", "--sparsity", "1.0"], "outside [0, 1)"),
    (["run", "--sparsity", "-0.2"], "outside [0, 1)"),
    (["run", "--sparsity", "half"], "comma-separated list of numbers"),
    (["run", "--model", "bert-huge"], "unknown model"),
    (["run", "--model", "/no/such/model/dir"], "does not exist"),
    (["run", "--methods", "magic"], "unknown method"),
    (["run", "--runtimes", "tensorrt"], "unknown runtime"),
    (["run", "--methods", "global-l1", "--scope", "everything"], "unknown scope"),
    (["run", "--plan", "/no/such/plan.toml"], "does not exist"),
    (["run", "--batch", "0"], "positive integer"),
    (["run", "--seq-len", "100000"], "512"),
    (["run", "--device", "tpu"], "unknown device"),
    (["run", "--out", "/proc/prunebench-cannot-write"], "cannot write"),
    (["report", "/no/such/run"], "does not exist"),
    (["frobnicate"], "invalid choice"),
]

MALFORMED_PLAN = ("run", "--plan", "<a file holding 'recipes = [['>")  # cli_runs writes the file and runs that
CUDA_ON_CPU = ("run", "--device", "cuda", "--model", "tiny-bert")


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory) -> dict[tuple[str, ...], subprocess.CompletedProcess]:
    """``list``, the bad-input commands below and the two refused plans, run concurrently, each in a process of
    its own (tests/forked_cli.py), by argv."""
    bad = tmp_path_factory.mktemp("malformed") / "plan.toml"
    bad.write_text("recipes = [[\n")
    argvs = [("list",), *(tuple(args) for args, _ in BAD_INPUT), MALFORMED_PLAN, CUDA_ON_CPU]
    real = [["run", "--plan", str(bad)] if argv == MALFORMED_PLAN else list(argv) for argv in argvs]
    return dict(zip(argvs, run_many([(argv, None) for argv in real])))


@pytest.mark.parametrize("args, needle", BAD_INPUT)
def test_bad_input_exits_2_with_one_line(cli_runs, args, needle):
    r = cli_runs[tuple(args)]
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert needle in lines[0]
    assert "Traceback" not in r.stderr


def test_malformed_plan_file_exits_2(cli_runs):
    r = cli_runs[MALFORMED_PLAN]
    assert r.returncode == 2 and "not valid TOML" in r.stderr and "Traceback" not in r.stderr


def test_cuda_only_plan_on_a_cpu_machine_exits_2(cli_runs):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = cli_runs[CUDA_ON_CPU]
    assert r.returncode == 2 and "CUDA is not available" in r.stderr
