"""Bad input, widened: every entry below is refused with one line on stderr, exit code 2 and no
traceback, before any model is measured. The commands of the matrix run concurrently, each in a process of
its own forked from one that has imported torch once (tests/forked_cli.py), then each parametrized test
checks its own result."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .forked_cli import run_many

REPO = Path(__file__).resolve().parents[1]

TINY_TOML = """
name = "tiny"
models = ["tiny-bert"]
runtimes = ["torch-dense"]
batch = [1]
seq_len = [8]
threads = 1
memory = false
quality = false
[[recipes]]
method = "global-l1"
sparsity = [0.5]
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _record(case_id: str, status: str = "ok", schema: int = 1) -> str:
    return json.dumps({"schema": schema, "run_id": "r", "case_id": case_id, "status": status, "model": "tiny-bert",
                       "recipe": "global-l1@0.50", "runtime": "torch-dense", "device": "cpu", "batch": 1, "seq_len": 8})


def _run_dir(root: Path, name: str, *, plan_toml: str = TINY_TOML, shard: str | None = None,
             env: dict | None = None, records: list[str] | None = None) -> Path:
    """A finished-looking run directory made without measuring anything."""
    from bench.plan import load_plan

    d = root / name
    d.mkdir(parents=True)
    plan = load_plan(_write(root / f"{name}.toml", plan_toml))
    plan.save(d / "plan.json")
    ids = [c.case_id for c in plan.cases_in_shard(None)]
    (d / "records.jsonl").write_text("".join(r + "\n" for r in (records if records is not None else [_record(i) for i in ids])))
    (d / "env.json").write_text(json.dumps(env or {"torch": "2.13.0", "transformers": "5.24.0", "cpu": "A", "machine": "x86_64"}))
    (d / "run.json").write_text(json.dumps({"run_id": name, "shard": shard}))
    return d


def _model_dirs(root: Path) -> dict[str, Path]:
    """A directory with a broken config.json, and one whose safetensors do not match its config."""
    from transformers import AutoConfig, AutoModel

    broken = root / "broken-config"
    _write(broken / "config.json", '{"model_type": "bert", "hidden_size": 32,')
    cfg = AutoConfig.for_model("bert", hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4)
    wider = AutoConfig.for_model("bert", hidden_size=48, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4)
    mismatch = root / "mismatched-weights"
    AutoModel.from_config(wider).save_pretrained(mismatch)
    cfg.save_pretrained(mismatch)  # config.json now says 32 wide; the weights are 48 wide
    return {"broken": broken, "mismatch": mismatch}


def _cases(root: Path) -> list[tuple[str, list[str], str]]:
    """(id, argv, expected words in the error) for each bad input."""
    plan = lambda name, text: str(_write(root / "plans" / f"{name}.toml", text))  # noqa: E731
    models = _model_dirs(root)
    base = _run_dir(root, "base")
    other = _run_dir(root, "other-plan", plan_toml=TINY_TOML.replace('batch = [1]', 'batch = [2]'))
    other_cpu = _run_dir(root, "other-cpu", env={"torch": "2.13.0", "transformers": "5.24.0", "cpu": "B", "machine": "x86_64"},
                         records=[])
    shard_a = _run_dir(root, "shard-a", shard="1/2", records=[])
    shard_b = _run_dir(root, "shard-b", shard="1/2", records=[])
    shard_c = _run_dir(root, "shard-c", shard="2/3", records=[])
    twin = _run_dir(root, "twin")  # records the same case as base
    no_plan = root / "no-plan"
    no_plan.mkdir()
    (no_plan / "records.jsonl").write_text(_record("x") + "\n")
    bad_plan_json = _run_dir(root, "bad-plan-json")
    (bad_plan_json / "plan.json").write_text('{"cases": [{"model": "tiny-bert"}]}')
    cid = "tiny-bert/global-l1@0.50/torch-dense/cpu/b1s8"
    garbage_middle = _run_dir(root, "garbage-middle", records=[_record(cid), "{not json", _record(cid)])
    schema99 = _run_dir(root, "schema99", records=[_record(cid, schema=99)])
    no_case_id = _run_dir(root, "no-case-id", records=[json.dumps({"schema": 1, "status": "ok"})])
    garbage_resume = _run_dir(root, "garbage-resume", records=[_record(cid), "][", _record(cid)])
    run = ["run", "--no-memory"]
    return [
        ("shard-zero", [*run, "--shard", "0/3"], "numbered 1..3"),
        ("shard-past-n", [*run, "--shard", "4/3"], "numbered 1..3"),
        ("shard-not-i-over-n", [*run, "--shard", "x"], "is not i/n"),
        ("case-timeout-zero", [*run, "--case-timeout", "0"], "positive number of seconds"),
        ("case-timeout-text", [*run, "--case-timeout", "soon"], "positive number of seconds"),
        ("shards-without-ray", [*run, "--shards", "2"], "--shards goes with --executor ray"),
        ("executor-unknown", [*run, "--executor", "dask"], "invalid choice"),
        ("resume-missing-dir", ["run", "--resume", str(root / "nope")], "no such run directory"),
        ("resume-without-plan", ["run", "--resume", str(no_plan)], "no plan.json"),
        ("resume-with-plan-flags", ["run", "--resume", str(base), "--model", "tiny-bert"], "drop --model"),
        ("resume-corrupt-plan-json", ["run", "--resume", str(bad_plan_json)], "not a plan written by"),
        ("resume-garbage-middle-record", ["run", "--resume", str(garbage_resume)], ":2 is not valid JSON"),
        ("plan-bad-toml", [*run, "--plan", plan("syntax", "models = [tiny-bert\n")], "not valid TOML"),
        ("plan-missing-file", [*run, "--plan", str(root / "missing.toml")], "does not exist"),
        ("plan-unknown-key", [*run, "--plan", plan("unknown", 'colour = "red"\n' + TINY_TOML)], "unknown plan key(s) colour"),
        ("plan-unknown-recipe-key", [*run, "--plan", plan("recipe-key", TINY_TOML + "power = 2\n")], "unknown key(s) power"),
        ("plan-batch-wrong-type", [*run, "--plan", plan("batch-type", TINY_TOML.replace("batch = [1]", 'batch = ["eight"]'))],
         "batch must be a positive integer"),
        ("plan-time-cap-wrong-type", [*run, "--plan", plan("cap-type", 'time_cap_s = "fast"\n' + TINY_TOML)], "time_cap_s must be a number"),
        ("plan-warmup-negative", [*run, "--plan", plan("warmup", "warmup = -1\n" + TINY_TOML)], "warmup must be a non-negative integer"),
        ("plan-empty-models", [*run, "--plan", plan("empty", TINY_TOML.replace('models = ["tiny-bert"]', "models = []"))], "models is an empty list"),
        ("plan-bad-sparsity", [*run, "--plan", plan("sparsity", TINY_TOML.replace("sparsity = [0.5]", "sparsity = [1.5]"))], "outside [0, 1)"),
        ("model-dir-missing", [*run, "--model", str(root / "no-such-model")], "does not exist"),
        ("model-dir-broken-config", [*run, "--model", str(models["broken"])], "is not valid JSON"),
        ("model-dir-mismatched-safetensors", [*run, "--model", str(models["mismatch"]), "--runtimes", "torch-dense"],
         "do not match its config.json"),
        ("report-garbage-middle-line", ["report", str(garbage_middle)], ":2 is not valid JSON"),
        ("report-unknown-schema", ["report", str(schema99)], "has schema 99"),
        ("report-not-a-record", ["report", str(no_case_id)], "not a prunebench record"),
        ("report-missing-dir", ["report", str(root / "nope")], "does not exist"),
        ("merge-mismatched-plans", ["merge", str(root / "m1"), str(base), str(other)], "different plan"),
        ("merge-mismatched-env", ["merge", str(root / "m2"), str(base), str(other_cpu)], "ran with cpu 'B'"),
        ("merge-same-shard-twice", ["merge", str(root / "m3"), str(shard_a), str(shard_b)], "are both shard 1/2"),
        ("merge-different-splits", ["merge", str(root / "m4"), str(shard_a), str(shard_c)], "different splits"),
        ("merge-overlapping-cases", ["merge", str(root / "m5"), str(base), str(twin)], "recorded by both"),
        ("merge-shard-without-plan", ["merge", str(root / "m6"), str(no_plan)], "has no plan.json"),
        ("merge-dir-given-twice", ["merge", str(root / "m7"), str(base), str(base)], "given twice"),
    ]


CASE_IDS = [
    "shard-zero", "shard-past-n", "shard-not-i-over-n", "case-timeout-zero", "case-timeout-text", "shards-without-ray",
    "executor-unknown", "resume-missing-dir", "resume-without-plan", "resume-with-plan-flags", "resume-corrupt-plan-json",
    "resume-garbage-middle-record", "plan-bad-toml", "plan-missing-file", "plan-unknown-key", "plan-unknown-recipe-key",
    "plan-batch-wrong-type", "plan-time-cap-wrong-type", "plan-warmup-negative", "plan-empty-models", "plan-bad-sparsity",
    "model-dir-missing", "model-dir-broken-config", "model-dir-mismatched-safetensors", "report-garbage-middle-line",
    "report-unknown-schema", "report-not-a-record", "report-missing-dir", "merge-mismatched-plans", "merge-mismatched-env",
    "merge-same-shard-twice", "merge-different-splits", "merge-overlapping-cases", "merge-shard-without-plan",
    "merge-dir-given-twice",
]


def _cli(argv: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "bench.cli", *argv], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=120)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, str]]:
    """Each case id's result and expected words; TRUNCATED's: its result and the run directory it reported on."""
    root = tmp_path_factory.mktemp("bad-input")
    cases = _cases(root)
    assert [c[0] for c in cases] == CASE_IDS
    killed = _killed_run(root)  # not bad input: run with the matrix to share its process
    cases.append((TRUNCATED, ["report", str(killed)], str(killed)))
    procs = run_many([(argv, root) for _, argv, _ in cases], env={"HF_HUB_OFFLINE": "1"})
    return {cid: (proc, words) for (cid, _, words), proc in zip(cases, procs)}


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_bad_input_is_one_line_exit_2_no_traceback(outcomes, case_id):
    proc, words = outcomes[case_id]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("prunebench: error: ")
    assert words in lines[0]


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="ray is installed here")
def test_executor_ray_without_ray_is_bad_input(tmp_path):
    proc = _cli(["run", "--executor", "ray", "--model", "tiny-bert"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "prunebench: error: --executor ray needs the optional package ray; pip install 'prunebench[ray]' or drop --executor"]


TRUNCATED = "report-truncated-last-line"


def _killed_run(root: Path) -> Path:
    cid = "tiny-bert/global-l1@0.50/torch-dense/cpu/b1s8"
    run = _run_dir(root, "killed", records=[_record(cid)])
    with open(run / "records.jsonl", "a") as fh:
        fh.write(_record(cid)[:40])  # a runner killed mid-write
    return run


def test_truncated_last_record_line_is_tolerated_with_a_warning(outcomes):
    proc, run = outcomes[TRUNCATED]  # prunebench report on _killed_run's directory
    run = Path(run)
    assert proc.returncode == 0, proc.stderr
    assert "last line 2 is truncated" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Cases: 1 ok." in (run / "report.md").read_text()
