"""`prunebench compare`: two locks on timing ratios, exact deterministic figures, lost / newly failing /
newly skipped cases, unjudgeable latency, quality judged in items on the same data only, refusal of
incomparable runs; and through the CLI, an A/A pair and a planted slowdown (deterministic: the planted
records carry a ratio worse by construction)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from bench.compare import (DETERMINISTIC, FIDELITY_TOL, QUALITY_ITEMS, CompareError, compare_latency, compare_records,
                           compare_runs, eval_items)
from bench.records import Record

from .planted_slowdown import plant_records

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
    ((1.00, 0.98, 1.02), (1.10, 1.08, 1.12), "regression"),   # a planted 10% slowdown: at the threshold counts
    ((1.00, float("nan"), float("nan")), (1.50, 1.4, 1.6), "unjudgeable"),  # no CI: cannot be judged
    ((1.00, 0.98, 1.02), (1.00, float("nan"), float("nan")), "unjudgeable"),
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
    ("skipped", "failed", "regression", 1),
    ("failed", "failed", "failing", 0),
    ("failed", "ok", "improved", 0),
    ("ok", "skipped", "regression", 1),      # newly skipped: a case the gate no longer measures
    ("failed", "skipped", "regression", 1),
    ("skipped", "skipped", "skipped", 0),
    ("skipped", "ok", "new", 0),
])
def test_status_changes(base_status, run_status, verdict, code):
    res = compare_records([_record(status=base_status)], [_record(status=run_status, error="RuntimeError: boom")])
    assert res.cases[0].verdict == verdict
    assert res.exit_code == code


def test_a_lost_case_is_a_regression_and_a_new_case_is_not():
    a, b = _record("m/x@0.50/torch-dense/cpu/b2s16"), _record("m/y@0.50/torch-dense/cpu/b2s16")
    shared = _record()
    res = compare_records([shared, a], [shared, b])
    verdicts = {c.case_id: c.verdict for c in res.cases}
    assert verdicts == {shared["case_id"]: "unchanged", a["case_id"]: "regression", b["case_id"]: "new"}
    assert res.exit_code == 1
    [lost] = res.regressions
    assert "lost" in lost.findings[0].detail and "re-record the baseline" in lost.findings[0].detail


def test_latency_without_a_ci_or_missing_in_the_run_is_a_regression():
    nan = float("nan")
    for over in ({"latency_ratio_lo": nan, "latency_ratio_hi": nan}, {"latency_ratio": None}):
        res = compare_records([_record()], [_record(**over)])
        assert res.exit_code == 1 and [f.figure for f in res.cases[0].findings] == ["latency_ci"], over


def test_mem_ratio_regression_reaches_the_exit_code():
    assert compare_records([_record(mem_ratio=1.0)], [_record(mem_ratio=1.05)]).exit_code == 0
    res = compare_records([_record(mem_ratio=1.0)], [_record(mem_ratio=1.2)])
    assert res.exit_code == 1 and [f.figure for f in res.cases[0].findings] == ["mem_ratio"]


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


def test_cli_a_run_holding_one_of_eight_baseline_cases_exits_1(tmp_path):
    """A run that lost 7 of the baseline's 8 cases is a regression, not "1 unchanged, 7 missing"."""
    recs = [_record(f"tiny-bert/global-l1@0.{i}0/torch-dense/cpu/b2s16") for i in range(1, 9)]
    base = _write(tmp_path / "base", recs)
    run = _write(tmp_path / "run", recs[:1])
    proc = _cli("compare", str(base), str(run))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "7 regression" in proc.stdout and proc.stdout.count("lost: in the baseline, not in the run") == 7


# -- the A/A pair and a planted slowdown, deterministic: the planted records are 15% (10%) slower by construction ----

@pytest.mark.parametrize("factor", [1.15, 1.10])
def test_planted_slowdown_is_reported_as_a_regression(tmp_path, factor):
    recs = [_record(), _record("tiny-bert/global-l1@0.50/torch-masked/cpu/b2s16", latency_ratio=1.3,
                               latency_ratio_lo=1.25, latency_ratio_hi=1.35)]
    base = _write(tmp_path / "base", recs)
    planted = plant_records(base, tmp_path / "planted", factor, ci=0.02)
    res = compare_runs(base, planted)
    by_runtime = {c.case_id.split("/")[2]: c for c in res.cases}
    dense = by_runtime["torch-dense"]
    assert dense.verdict == "regression", res.to_markdown()
    assert [f.figure for f in dense.findings if f.kind == "regression"] == ["latency_ratio"]
    assert dense.latency_change == pytest.approx(factor - 1)
    assert by_runtime["torch-masked"].verdict == "unchanged"  # untouched by the plant: an A/A pair
    assert _cli("compare", str(base), str(planted)).returncode == 1
    assert _cli("compare", str(base), str(base)).returncode == 0  # A/A: the same records twice


# -- quality ------------------------------------------------------------------------------------------------------------
SPLIT = "bbc-news seed=0 calibration=256 probe_train=200 eval=250 digest=003786797aa0"


def test_eval_items_reads_the_split():
    assert eval_items(SPLIT) == 250
    assert eval_items("file:x.tsv pairs=40 sha256=ab") == 40
    assert eval_items(None) is None and eval_items("planted") is None
    # the deduplicated corpus names four splits; the items are those of the split it scored
    four = "bbc-news dedup=content seed=0 calibration=256 probe_train=200 selection=120 report=250 scored=report"
    assert eval_items(four) == 250 and eval_items(four.replace("scored=report", "scored=selection")) == 120


def test_quality_on_different_data_is_a_regression_saying_re_record():
    base = [_record(quality_cosine=0.99)]  # no quality_split: scored on the old bundled sentences
    run = [_record(quality_cosine=0.99, quality_split=SPLIT)]
    res = compare_records(base, run)
    assert res.exit_code == 1
    [f] = [f for c in res.regressions for f in c.findings]
    assert f.figure == "quality_split" and "re-record the baseline" in f.detail


def test_planted_quality_collapse_is_a_regression():
    base = [_record(quality_split=SPLIT, quality_r1=0.86, quality_cosine=0.99)]
    res = compare_records(base, [_record(quality_split=SPLIT, quality_r1=0.0, quality_cosine=0.01)])
    assert res.exit_code == 1
    assert sorted(f.figure for c in res.regressions for f in c.findings) == ["quality_cosine", "quality_r1"]


@pytest.mark.parametrize(("items", "code"), [(0, 0), (1, 0), (QUALITY_ITEMS, 0), (QUALITY_ITEMS + 1, 1), (-10, 0)])
def test_task_metrics_are_judged_in_items(items, code):
    """One or two near-ties flipping (1/250 each) pass; a drop of more than QUALITY_ITEMS items fails."""
    base = [_record(quality_split=SPLIT, quality_r1=0.8)]
    res = compare_records(base, [_record(quality_split=SPLIT, quality_r1=0.8 - items / 250)])
    assert res.exit_code == code, res.to_markdown()


def test_fidelity_on_an_absolute_tolerance_and_a_lost_figure_is_a_regression():
    base = [_record(quality_split=SPLIT, quality_r1=0.8)]
    near = compare_records(base, [_record(quality_split=SPLIT, quality_r1=0.8, quality_cosine=0.9 - FIDELITY_TOL / 2)])
    assert near.exit_code == 0
    far = compare_records(base, [_record(quality_split=SPLIT, quality_r1=0.8, quality_cosine=0.9 - 2 * FIDELITY_TOL)])
    assert far.exit_code == 1
    lost = compare_records(base, [_record(quality_split=SPLIT, quality_r1=None)])
    assert [f.figure for c in lost.regressions for f in c.findings] == ["quality_r1"]


def test_report_states_the_rules():
    text = compare_records([_record()], [_record()]).to_markdown()
    for rule in ("lost case", "newly skipped", "crashed", "re-record the baseline", "evaluation items", "mem_ratio"):
        assert rule in text, rule
