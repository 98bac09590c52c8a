"""report.md from records alone: the verdict on the tutorial's claim first, plots embedded, tables kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from bench.records import Record
from bench.report import frame, latency_verdict, render, summary_table, write_report
from bench.report.plots import PLOTS, write_plots

ROOT = Path(__file__).resolve().parents[1]
ENV = {"torch": "2.13.0+cpu", "transformers": "5.24.0", "cpu": "AMD EPYC", "cpu_count": 2, "machine": "x86_64"}


def _rec(runtime: str, sparsity: float, ratio: float, size: float = 1.0, method: str = "global-l1", **over) -> dict:
    d = asdict(Record(
        run_id="r", case_id=f"tiny-bert/{method}@{sparsity:.2f}/{runtime}/cpu/b2s16", status="ok", model="tiny-bert",
        weights="random-init", method=method, recipe=f"{method}@{sparsity:.2f}", runtime=runtime, device="cpu",
        batch=2, seq_len=16, sparsity_target=sparsity, sparsity_actual=sparsity, latency_ratio=ratio,
        latency_ratio_lo=ratio * 0.97, latency_ratio_hi=ratio * 1.03, latency_ms=ratio, baseline_latency_ms=1.0,
        flops_ratio=1 - sparsity, efficiency=(1 - sparsity) / ratio, size_bytes=int(1e6 * size), size_ratio=size,
        size_compressed_bytes=int(8e5 * size), size_compressed_ratio=0.8 * size, quality_cosine=1 - sparsity / 2,
        quality_knn_agreement=0.9, quality_meaningful=False, env=dict(ENV)))
    d.update(over)
    return d


RECORDS = [
    _rec("torch-masked", 0.5, 1.25, size=1.5, mem_ratio=1.4),
    _rec("torch-masked", 0.9, 1.30, size=1.5, mem_ratio=1.4),
    _rec("torch-dense", 0.5, 1.00, mem_ratio=1.0),
    _rec("torch-dense", 0.9, 1.01, mem_ratio=1.0),
    _rec("torch-csr", 0.5, 2.50, size=1.2),
    _rec("torch-csr", 0.9, 0.60, size=0.3),
    _rec("torch-csr", 0.99, 0.70, status="failed", error="RuntimeError: boom", latency_ratio=None),
]


def _verdict_line(md: str, runtime: str) -> str:
    return next(line for line in md.splitlines() if line.startswith(f"- **{runtime}**"))


@pytest.mark.parametrize(("runtime", "speed", "size"), [
    ("torch-masked", "holds", "holds"),  # slower and larger: the tutorial's observation
    ("torch-dense", "holds", "holds"),   # unchanged
    ("torch-csr", "fails", "fails"),     # 0.60x latency and 0.30x on disk at 90%
])
def test_verdict_answers_the_claim_per_runtime(runtime, speed, size):
    md = render(RECORDS, command="prunebench run --plan x.toml")
    line = _verdict_line(md, runtime)
    assert f"speed: **the claim {speed}**" in line
    assert f"size: **the claim {size}**" in line


def test_verdict_comes_first_and_names_the_command():
    md = render(RECORDS, command="prunebench run --plan x.toml")
    verdict, tables = md.index("## Verdict"), md.index("## tiny-bert")
    assert verdict < tables
    assert "inference speed and size barely decreased" in md[verdict:tables]
    assert "`prunebench run --plan x.toml`" in md[verdict:tables]
    assert "- (a) zeros in the weights: the claim holds on torch-masked, torch-dense; it does not hold on torch-csr." in md


def test_per_model_tables_keep_runtimes_side_by_side_with_efficiency():
    md = render(RECORDS)
    table = md[md.index("## tiny-bert"):]
    header = next(line for line in table.splitlines() if line.startswith("| variant"))
    assert "efficiency" in header and "runtime" in header
    for runtime in ("torch-masked", "torch-dense", "torch-csr"):
        assert runtime in table
    assert "random-init" in table


def test_latency_verdict_reads_the_ci_and_the_summary_table_has_a_row_per_record():
    assert latency_verdict(0.8, 0.75, 0.85) == "faster: 0.80x [0.75, 0.85]"
    assert latency_verdict(1.2, 1.1, 1.3) == "slower: 1.20x [1.10, 1.30]"
    assert latency_verdict(1.0, 0.95, 1.05) == "no measurable change: 1.00x [0.95, 1.05]"
    assert latency_verdict(0.8, None, None) == "not measured"
    lines = summary_table(RECORDS).splitlines()
    assert len(lines) == 2 + len(RECORDS)  # header, rule, one row per record
    masked = next(line for line in lines if line.startswith("tiny-bert/global-l1@0.50/torch-masked")).split()
    assert masked[1:4] == ["ok", "1.25", "[1.21,"] and masked[4] == "1.29]"
    assert [float(x) for x in masked[5:]] == [1.5, 1.2, 1.4, 0.75]  # size, gzip, memory ratios; cosine
    failed = next(line for line in lines if "@0.99/torch-csr" in line).split()
    assert failed[1:3] == ["failed", "–"]
    assert summary_table([]) == "(no records)"


def test_render_is_pure_it_reads_and_writes_no_file(tmp_path):
    md = render(RECORDS, tmp_path, "prunebench run")
    assert list(tmp_path.iterdir()) == [] and "](plots/" not in md


def test_plots_render_from_records(tmp_path):
    written = write_plots(frame(RECORDS), tmp_path)
    assert [p.stem for _, p in written] == list(PLOTS)
    for _, path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_without_data_are_left_out_and_stale_ones_removed(tmp_path):
    write_plots(frame(RECORDS), tmp_path)
    no_mem = [{**r, "mem_ratio": None} for r in RECORDS]
    written = write_plots(frame(no_mem), tmp_path)
    assert "memory_vs_sparsity" not in [p.stem for _, p in written]
    assert not (tmp_path / "memory_vs_sparsity.png").exists()


def test_report_command_regenerates_report_and_plots_from_records_alone(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    (run / "command.txt").write_text("prunebench run --model tiny-bert --out run\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "report", str(run)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    md = (run / "report.md").read_text()
    assert md.startswith("# prunebench report")
    assert "`prunebench run --model tiny-bert --out run`" in md
    for name in PLOTS:
        assert f"](plots/{name}.png)" in md
        assert (run / "plots" / f"{name}.png").is_file()


def test_report_of_a_run_without_records_is_a_one_line_error(tmp_path, capsys):
    from bench.cli import main

    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no records" in err


def test_write_report_embeds_relative_plot_links(tmp_path):
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS[:4]))
    md = write_report(tmp_path).read_text()
    assert "![Latency ratio vs sparsity](plots/latency_vs_sparsity.png)" in md
    assert str(tmp_path) not in md.split("## Plots")[1].split("##")[0]


def test_verdict_is_grouped_by_what_a_variant_does_to_the_weights():
    """A 0.5x structured variant on torch-dense cannot flip the tutorial's group: zeros alone still hold."""
    recs = [_rec("torch-dense", 0.5, 1.00, pattern="unstructured"), _rec("torch-dense", 0.9, 0.99, pattern="unstructured"),
            _rec("torch-masked", 0.5, 1.10, size=1.5, pattern="unstructured"),
            _rec("torch-dense", 0.5, 0.52, size=0.77, method="heads+ffn", pattern="heads+ffn"),
            _rec("torch-dense", 0.5, 0.52, size=0.77, method="torch-pruning")]  # no pattern field: from its method
    md = render(recs)
    answer = md[md.index("**Answer**"):]
    zeros = next(line for line in answer.splitlines() if line.startswith("- (a)"))
    removed = next(line for line in answer.splitlines() if line.startswith("- (b)"))
    assert zeros == "- (a) zeros in the weights: the claim holds on torch-dense, torch-masked."
    assert removed == "- (b) weights removed: it does not hold on torch-dense."
    assert "(c)" not in answer


def test_dense_in_another_runtime_is_its_own_group_and_dense_against_itself_is_left_out():
    recs = [_rec("torch-dense", 0.5, 1.0, pattern="unstructured"),
            _rec("onnxruntime", 0.0, 0.60, method="dense", baseline="tiny-bert/dense/torch-dense/cpu/b2s16"),
            _rec("torch-dense", 0.0, 1.0, method="dense", baseline="tiny-bert/dense@0.00/torch-dense/cpu/b2s16",
                 case_id="tiny-bert/dense@0.00/torch-dense/cpu/b2s16")]
    answer = render(recs)[render(recs).index("**Answer**"):]
    assert "- (c) other compressions: it does not hold on onnxruntime." in answer
    assert "on torch-dense, onnxruntime" not in answer


def test_the_report_says_what_a_smoke_budget_left_out_and_a_full_run_says_nothing():
    split = "bbc-news dedup=content seed=0 probe_train=50 selection=50 report=50 scored=report digest=abc"
    budget = [_rec("torch-masked", 0.5, 1.25, mem_ratio=1.4, quality_split=f"{split} capped=50"),
              _rec("torch-dense", 0.5, 1.0, quality_split=f"{split} capped=50",
                   memory_skipped="not measured: the plan measures memory on its first 1 of 2 cases (memory_cases = 1)",
                   compress_skipped="not compressed: the plan gzips the artifacts of its first 1 of 2 cases")]
    md = render(budget)
    assert "Compressed size measured on 1 of 2 cases (the plan's compress_cases" in md
    assert "Quality capped: scored on at most 50 articles per split" in md
    assert "Memory measured on 1 of 2 cases (the plan's memory_cases" in md
    full = render([_rec("torch-masked", 0.5, 1.25, mem_ratio=1.4, quality_split=split)])
    assert "Quality capped" not in full and "Memory measured on" not in full
