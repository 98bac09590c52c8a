"""`prunebench compare`: two locks on timing ratios, exact deterministic figures, newly failing cases,
refusal of incomparable runs; and, end to end on tiny-bert, an A/A pair and a planted slowdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from bench.compare import DETERMINISTIC, CompareError, compare_latency, compare_records, compare_runs
from bench.records import Record

ROOT = Path(__file__).resolve().parents[1]
ENV = {"torch": "2.13.0+cpu", "transformers": "5.24.0", "onnxruntime": "1.32.0", "cpu": "AMD EPYC", "gpu": None,
       "machine": "x86_64", "git_sha": "abc1234"}


def _record(case_id: str = "tiny-bert/global-l1@0.50/torch-dense/cpu/b2s16", **over) -> dict:
    d = asdict(Record(
        run_id="r", case_id=case_id, fingerprint="f-" + case_id, status="ok", model="tiny-bert", method="global-l1",
        recipe="global-l1@0.50", runtime=case_id.split("/")[2], device="cpu", threads=1, batch=2, seq_len=16,
        sparsity_target=0.5, sparsity_actual=0.5, params=1000, size_bytes=4000, size_compressed_bytes=3000,
        flops_ratio=0.51, latency_ratio=1.0, latency_ratio_lo=0.98, latency_ratio_hi=1.02, quality_cosine=0.9,
        quality_knn_agreement=0.8, env=dict(ENV)))
    d.update(over)
    return d


def _write(run_dir: Path, records: list[dict], command: str | None = None) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if command:
        (run_dir / "command.txt").write_text(command + "\n")
    return run_dir


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)


# -- the rule ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("base", "run", "kind"), [
    ((1.00, 0.98, 1.02), (1.20, 1.18, 1.22), "regression"),   # 20% worse, CIs disjoint: both locks open
    ((1.00, 0.90, 1.10), (1.20, 1.05, 1.35), "note"),         # 20% worse but CIs overlap
    ((1.00, 0.99, 1.01), (1.05, 1.04, 1.06), "note"),         # CIs disjoint but only 5% worse
    ((1.00, 0.98, 1.02), (0.80, 0.78, 0.82), "improvement"),  # 20% better, CIs disjoint
    ((1.00, float("nan"), float("nan")), (1.50, 1.4, 1.6), "note"),  # no CI: never a regression
])
def test_latency_regression_needs_both_locks(base, run, kind):
    assert compare_latency(base, run, 0.10)[1] == kind


def test_identical_runs_report_no_regression():
    recs = [_record(), _record("tiny-bert/global-l1@0.50/torch-masked/cpu/b2s16", latency_ratio=1.3,
                               latency_ratio_lo=1.25, latency_ratio_hi=1.35)]
    res = compare_records(recs, [dict(r) for r in recs])
    assert res.exit_code == 0
    assert {c.verdict for c in res.cases} == {"unchanged"}


@pytest.mark.parametrize("figure", DETERMINISTIC)
def test_changed_deterministic_figure_is_a_regression(figure):
    changed = {"sparsity_actual": 0.45, "params": 999, "size_bytes": 4001, "size_compressed_bytes": 2999,
               "flops_ratio": 0.52}[figure]
    res = compare_records([_record()], [_record(**{figure: changed})])
    assert res.exit_code == 1
    [case] = res.cases
    assert case.verdict == "regression"
    assert [f.figure for f in case.findings] == [figure]


def test_quality_drop_is_a_regression_and_float_noise_is_not():
    assert compare_records([_record()], [_record(quality_cosine=0.9 + 1e-7)]).exit_code == 0
    res = compare_records([_record()], [_record(quality_cosine=0.85)])
    assert res.exit_code == 1 and res.cases[0].findings[0].figure == "quality_cosine"


@pytest.mark.parametrize(("base_status", "run_status", "verdict", "code"), [
    ("ok", "failed", "regression", 1),
    ("ok", "timeout", "regression", 1),
    ("failed", "failed", "failing", 0),
    ("failed", "ok", "improved", 0),
    ("ok", "skipped", "missing", 0),
])
def test_status_changes(base_status, run_status, verdict, code):
    res = compare_records([_record(status=base_status)], [_record(status=run_status, error="RuntimeError: boom")])
    assert res.cases[0].verdict == verdict
    assert res.exit_code == code


def test_missing_and_new_cases_are_reported_not_failed():
    a, b = _record("m/x@0.50/torch-dense/cpu/b2s16"), _record("m/y@0.50/torch-dense/cpu/b2s16")
    shared = _record()
    res = compare_records([shared, a], [shared, b])
    verdicts = {c.case_id: c.verdict for c in res.cases}
    assert verdicts == {shared["case_id"]: "unchanged", a["case_id"]: "missing", b["case_id"]: "new"}
    assert res.exit_code == 0
    assert "missing" in res.to_markdown()


@pytest.mark.parametrize(("field", "value"), [("torch", "2.12.0+cpu"), ("cpu", "Intel Xeon"), ("machine", "aarch64")])
def test_different_environment_refuses(field, value):
    with pytest.raises(CompareError, match=field):
        compare_records([_record()], [_record(env={**ENV, field: value})])


def test_changed_case_definition_refuses_naming_the_field():
    with pytest.raises(CompareError, match="threads differs"):
        compare_records([_record()], [_record(threads=2, fingerprint="other")])


def test_disjoint_runs_refuse():
    with pytest.raises(CompareError, match="no case"):
        compare_records([_record("a/x@0.50/torch-dense/cpu/b2s16")], [_record("b/x@0.50/torch-dense/cpu/b2s16")])


# -- the command line ---------------------------------------------------------------------------------------------------

def test_cli_exit_codes_and_json(tmp_path, capsys):
    base = _write(tmp_path / "base", [_record()], "prunebench run --plan bench/plans/ci.toml --out results/baseline")
    same = _write(tmp_path / "same", [_record()])
    worse = _write(tmp_path / "worse", [_record(latency_ratio=1.2, latency_ratio_lo=1.15, latency_ratio_hi=1.25)])
    other = _write(tmp_path / "other", [_record(env={**ENV, "torch": "2.12.0+cpu"})])

    ok = _cli("compare", str(base), str(same))
    assert ok.returncode == 0, ok.stderr
    assert "no regression" in ok.stdout and "| case" in ok.stdout

    bad = _cli("compare", str(base), str(worse), "--json")
    assert bad.returncode == 1, bad.stderr
    data = json.loads(bad.stdout)
    assert data["regression"] is True and data["cases"][0]["verdict"] == "regression"

    refused = _cli("compare", str(base), str(other))
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert "torch differs" in refused.stderr and "results/baseline" in refused.stderr

    from bench.cli import main

    for args in ((str(base), str(tmp_path / "nope")), (str(base), str(same), "--threshold", "1.5")):
        assert main(["compare", *args]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "prunebench: error:" in err, err


# -- end to end on tiny-bert: A/A and a planted slowdown ------------------------------------------------------------------
# the runs come from conftest's session fixture gate_runs (GATE_PLAN, shared with test_gate): "a" is a normal run,
# "planted" one with a 15% slowdown planted in torch-dense


@pytest.mark.slow
def test_planted_slowdown_is_reported_as_a_regression(gate_runs):
    base, planted = gate_runs["a"], gate_runs["planted"]
    res = compare_runs(base, planted)
    verdicts = {c.case_id.split("/")[2]: c for c in res.cases}
    dense = verdicts["torch-dense"]
    assert dense.verdict == "regression", res.to_markdown()
    assert [f.figure for f in dense.findings if f.kind == "regression"] == ["latency_ratio"]
    assert 0.10 < dense.latency_change < 0.25
    assert _cli("compare", str(base), str(planted)).returncode == 1
    assert "planted_slowdown.py 0.15" in (planted / "command.txt").read_text()


@pytest.mark.slow
def test_same_code_twice_reports_no_regression_and_equal_deterministic_figures(gate_runs):
    base, planted = gate_runs["a"], gate_runs["planted"]
    res = compare_runs(base, planted)
    masked = next(c for c in res.cases if "/torch-masked/" in c.case_id)  # untouched by the plant: an A/A pair
    assert masked.verdict != "regression", res.to_markdown()
    # deterministic figures of every case (the planted one included) are reproduced exactly
    assert not [f for c in res.cases for f in c.findings if f.figure in DETERMINISTIC], res.to_markdown()


def test_quality_on_different_data_is_a_note_not_a_regression():
    base = [_record(quality_cosine=0.99)]  # no quality_split: scored on the old bundled sentences
    run = [_record(quality_cosine=0.70, quality_split="bbc-news seed=0 eval=250")]
    res = compare_records(base, run)
    assert not res.regressions
    assert [f.figure for c in res.cases for f in c.findings] == ["quality_split"]
    same = compare_records([_record(quality_r1=0.86, quality_split="s")], [_record(quality_r1=0.80, quality_split="s")])
    assert [f.figure for c in same.regressions for f in c.findings] == ["quality_r1"]
