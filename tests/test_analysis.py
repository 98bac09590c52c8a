"""Break-even sparsity (bench.report.analysis): interpolation, the CI's upper bound, grouping, and the report section."""

import json
import math

import pytest

from bench.report import render, write_report
from bench.report.analysis import break_even, crossing
from bench.report.section_plots import plot_break_even


def test_crossing_interpolates_linearly_between_the_bracketing_points():
    c = crossing([0.5, 0.7, 0.9], [2.0, 1.2, 0.8])
    assert c.sparsity == pytest.approx(0.8) and c.how == "interpolated"


def test_crossing_sorts_points_and_skips_missing_ratios():
    assert crossing([0.9, 0.5, 0.7], [0.5, 1.5, float("nan")]).sparsity == pytest.approx(0.5 + 0.5 * 0.4 / 1.0)


def test_crossing_never_below_one_is_none():
    c = crossing([0.5, 0.9, 0.99], [3.0, 1.4, 1.01])
    assert c.sparsity is None and c.describe(0.5, 0.99) == "not reached in 0.50–0.99"


def test_crossing_already_below_one_at_the_lowest_sparsity():
    c = crossing([0.5, 0.9], [0.9, 0.4])
    assert c.sparsity == 0.5 and c.describe(0.5, 0.9).startswith("≤ 0.50")


def test_crossing_says_when_the_curve_rises_above_one_again():
    c = crossing([0.5, 0.7, 0.9], [1.5, 0.9, 1.1])
    assert c.sparsity == pytest.approx(0.5 + 0.2 * 0.5 / 0.6)
    assert "again" in c.how and "rises above 1.0 again" in c.describe(0.5, 0.9)


def _rec(runtime, s, ratio, half=0.1, batch=8, method="global-l1", status="ok", pattern="unstructured"):
    ci = (None, None) if ratio is None else (ratio - half, ratio + half)
    return dict(status=status, model="minilm", method=method, pattern=pattern, scope="linear", norm="l1", allocation=None,
                runtime=runtime, device="cpu", dtype="float32", batch=batch, seq_len=128, sparsity_target=s,
                latency_ratio=ratio, latency_ratio_lo=ci[0], latency_ratio_hi=ci[1], recipe=f"{method}@{s:.2f}",
                case_id=f"minilm/{method}@{s:.2f}/{runtime}/cpu/b{batch}s128", size_ratio=1.0, size_compressed_ratio=0.9, mem_ratio=None)


SWEEP = [_rec("torch-csr", s, r) for s, r in [(0.5, 3.0), (0.8, 1.4), (0.9, 0.8), (0.99, 0.3)]]


def test_break_even_reports_median_and_confident_crossings_per_sweep():
    (b,) = break_even(SWEEP)
    assert b.key["runtime"] == "torch-csr" and b.sparsities == (0.5, 0.8, 0.9, 0.99)
    assert b.median.sparsity == pytest.approx(0.8 + 0.1 * 0.4 / 0.6)  # 1.4 -> 0.8
    assert b.confident.sparsity == pytest.approx(0.8 + 0.1 * 0.5 / 0.6)  # upper bound 1.5 -> 0.9
    assert b.confident.sparsity > b.median.sparsity


def test_break_even_separates_runtimes_and_shapes_and_ignores_dense_failed_and_single_points():
    recs = SWEEP + [_rec("torch-bsr", s, 2.0) for s in (0.5, 0.9)] + [_rec("torch-csr", s, r, batch=1) for s, r in [(0.5, 2), (0.9, 0.5)]]
    recs += [_rec("torch-csr", 0.0, 1.0, method="dense"), _rec("torch-csr", 0.95, None, status="failed"),
             _rec("torch-dense", 0.5, 1.0)]
    got = {(b.key["runtime"], b.key["batch"]): b for b in break_even(recs)}
    assert set(got) == {("torch-csr", 8), ("torch-bsr", 8), ("torch-csr", 1)}
    assert got[("torch-bsr", 8)].median.sparsity is None
    assert got[("torch-csr", 1)].median.sparsity == pytest.approx(0.5 + 0.4 / 1.5)
    assert 0.95 not in got[("torch-csr", 8)].sparsities


def test_sweeps_differing_only_in_importance_or_recovery_are_separate_curves():
    def sweep(**extra):
        return [{**_rec("torch-dense", s, r, method="heads+ffn", pattern="structured"), **extra}
                for s, r in [(0.3, 0.9), (0.5, 0.7)]]

    recs = sweep(importance="magnitude", recovery_method="none") + sweep(importance="fisher", recovery_method="none")
    recs += sweep(importance="fisher", recovery_method="lstsq", recovery_fit="ridge")
    got = {b.label: b for b in break_even(recs)}
    assert set(got) == {"torch-dense · heads+ffn[magnitude]", "torch-dense · heads+ffn[fisher]",
                        "torch-dense · heads+ffn[fisher,lstsq,ridge]"}
    assert all(b.sparsities == (0.3, 0.5) for b in got.values())  # no curve took another's points
    assert {b.row()["method"] for b in got.values()} == {"heads+ffn[magnitude]", "heads+ffn[fisher]", "heads+ffn[fisher,lstsq,ridge]"}


def test_records_from_before_importance_and_recovery_existed_still_make_one_sweep():
    old = [_rec("torch-csr", 0.5, 3.0), _rec("torch-csr", 0.8, 1.4)]  # no importance / recovery fields at all
    (b,) = break_even(old)
    assert b.sparsities == (0.5, 0.8) and b.label == "torch-csr · global-l1" and b.key.get("importance") is None
    new = [{**_rec("torch-csr", 0.9, 0.8), "importance": None, "recovery_method": "none", "recovery_fit": None}]
    (b,) = break_even(old + new)  # a resumed run's newer records join the older ones' curve
    assert b.sparsities == (0.5, 0.8, 0.9) and b.row()["method"] == "global-l1"


def test_break_even_keeps_a_single_fixed_sparsity_nm_point():
    (b,) = break_even([_rec("torch-semi24", 0.5, 0.7, method="2:4", pattern="n:m")])
    assert b.median.describe(0.5, 0.5) == "≤ 0.50 (already below 1.0 at 0.50)"


def test_break_even_of_no_records_is_empty():
    assert break_even([]) == [] and break_even([{"status": "skipped"}]) == []


def test_report_has_a_break_even_table_and_plot_when_a_sweep_exists(tmp_path):
    recs = SWEEP + [_rec("torch-dense", 0.5, 1.0)]
    (tmp_path / "records.jsonl").write_text("".join(json.dumps({"schema": 1, **r}) + "\n" for r in recs))
    text = write_report(tmp_path).read_text()
    assert "## Break-even sparsity" in text and "0.867" in text
    assert (tmp_path / "plots" / "breakeven-minilm-cpu-b8s128.png").stat().st_size > 1000
    assert "![breakeven-minilm-cpu-b8s128](plots/breakeven-minilm-cpu-b8s128.png)" in text
    assert "## Break-even sparsity" not in render([_rec("torch-dense", 0.5, 1.0)], None)
    assert "## Break-even sparsity" in render(recs) and "breakeven-" not in render(recs)  # links only the plots it is given


def test_plot_writes_one_png_per_device_and_shape(tmp_path):
    recs = SWEEP + [_rec("torch-csr", s, r, batch=1) for s, r in [(0.5, 2), (0.9, 0.5)]]
    paths = plot_break_even(break_even(recs), tmp_path)
    assert sorted(p.name for p in paths) == ["breakeven-minilm-cpu-b1s128.png", "breakeven-minilm-cpu-b8s128.png"]
    assert all(math.isfinite(p.stat().st_size) and p.stat().st_size > 1000 for p in paths)


def test_size_table_divides_each_artifact_by_the_dense_safetensors():
    from bench.report.analysis import size_table

    recs = [dict(_rec("torch-csr", 0.9, 0.8), size_bytes=60, size_compressed_bytes=50, dense_safetensors_bytes=100),
            dict(_rec("onnxruntime", 0.9, 1.0), size_bytes=99, size_compressed_bytes=57, dense_safetensors_bytes=100)]
    table = size_table(recs)
    assert list(table.columns) == ["model", "method", "sparsity", "torch-csr", "onnxruntime"]
    assert table.iloc[0]["torch-csr"] == "0.60 (0.50)" and table.iloc[0]["onnxruntime"] == "0.99 (0.57)"


def test_break_even_from_noise_around_one_is_no_measurable_crossing():
    """1.00 and 0.98 with CIs around 1.0 (the committed default run's global-l1 on torch-dense) are noise."""
    recs = [_rec("torch-dense", 0.5, 1.00, half=0.02), _rec("torch-dense", 0.9, 0.98, half=0.02)]
    (b,) = break_even(recs)
    assert b.median.sparsity is None
    assert b.row()["break-even sparsity (median ratio = 1)"] == "no measurable crossing in 0.50–0.90"


def test_break_even_needs_a_point_measurably_above_before_one_measurably_below():
    # measurably below at 0.9, but never measurably above: no crossing can be placed
    (b,) = break_even([_rec("torch-csr", 0.5, 1.02, half=0.05), _rec("torch-csr", 0.9, 0.6, half=0.05)])
    assert b.median.sparsity is None and b.median.how == "no measurable crossing"
    # measurably above at 0.8 and below at 0.9: the crossing is real and interpolated
    (b,) = break_even([_rec("torch-csr", 0.8, 1.40, half=0.05), _rec("torch-csr", 0.9, 0.79, half=0.04)])
    assert b.median.sparsity == pytest.approx(0.8 + 0.1 * 0.4 / 0.61)
