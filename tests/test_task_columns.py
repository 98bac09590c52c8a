"""The report's task columns follow the task the run scored: an STS eval file (``s1<TAB>s2<TAB>score``) shows
Spearman with its paired change vs dense in every table that shows task quality (main tables, recovery,
alternatives and its verdict) and no empty R@1 column; the built-in BBC News task keeps R@1 and probe accuracy."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from bench.records import Record, read_records
from bench.report import render
from bench.report.quality import run_tasks, table_figures

STS = Path(__file__).resolve().parent / "data" / "sts.tsv"
SPLITS = {"pairs": "file:sts.tsv pairs=32 sha256=8cc3731b5b47", "labels": "file:topics.tsv labels=3 probe_train=6 eval=9 seed=0 sha256=ab",
          "corpus": "bbc-news dedup=content unique=2124/2225 seed=0 probe_train=200 report=250 scored=report digest=0a5b"}
FIGURES = {"pairs": "quality_spearman", "labels": "quality_probe_acc", "corpus": "quality_r1"}
DROP = {"quality_spearman": "quality_spearman_drop", "quality_probe_acc": "quality_probe_drop", "quality_r1": "quality_r1_drop"}


def _rec(task: str, recipe: str, runtime: str, ratio: float, value: float, drop: float, dtype: str = "float32",
         importance: str | None = None, recovery: str | None = None) -> dict:
    """An ok record of a pretrained model scored on ``task``, timed against dense fp32 torch eager."""
    method = recipe.split("[")[0].split("@")[0]
    d = asdict(Record(
        run_id="r", case_id=f"minilm/{recipe}/{runtime}/cpu-{dtype}/b8s128", status="ok", model="minilm", weights="pretrained",
        method=method, pattern=None if method == "dense" else "heads+ffn", recipe=recipe, runtime=runtime, device="cpu",
        dtype=dtype, batch=8, seq_len=128, sparsity_target=0.0 if method == "dense" else 0.5, latency_ratio=ratio,
        latency_ratio_lo=ratio * 0.95, latency_ratio_hi=ratio * 1.05, baseline_runtime="torch-dense", baseline_dtype="float32",
        quality_cosine=0.9, quality_meaningful=True, quality_split=SPLITS[task], importance=importance, recovery_method=recovery))
    field = FIGURES[task]
    return {**d, field: value, DROP[field]: drop, f"{DROP[field]}_lo": drop - 0.01, f"{DROP[field]}_hi": drop + 0.01}


def _run(task: str) -> list[dict]:
    return [_rec(task, "dense@0.00", "torch-dense", 1.0, 0.82, 0.0),
            _rec(task, "dense@0.00", "torch-dense", 0.5, 0.815, 0.005, dtype="bfloat16"),
            _rec(task, "heads+ffn@0.50", "torch-dense", 0.6, 0.70, 0.12, importance="magnitude", recovery="none"),
            _rec(task, "heads+ffn[fisher,lstsq]@0.50", "torch-dense", 0.6, 0.81, 0.01, importance="fisher", recovery="lstsq")]


def _headers(md: str) -> list[str]:
    return [ln for ln in md.splitlines() if ln.startswith("| variant") or ln.startswith("| recipe")]


def test_an_sts_run_shows_spearman_in_every_quality_table_and_no_r1():
    md = render(_run("pairs"), command="prunebench run --eval tests/data/sts.tsv")
    heads = _headers(md)
    main = next(h for h in heads if "| verdict" in h)
    recovery = next(h for h in heads if "recovery s" in h)
    alternatives = next(h for h in heads if "speedup" in h)
    assert "Spearman (Δ [CI])" in main and "Spearman (Δ) |" in recovery and "Spearman (Δ vs dense fp32 [CI])" in alternatives
    assert "R@1" not in md and "recall@1" not in md and "probe acc" not in md
    assert "0.700 (Δ -0.120 [-0.130, -0.110])" in md  # the value and its paired change vs dense with the CI
    assert "**Verdict:** Fastest at a Spearman drop of at most 2 points vs dense fp32" in md
    assert "quality dropped measurably: Spearman -0.120" in md  # the per-variant verdict names it too
    assert "Spearman correlation of the embeddings' cosine with the --eval file's gold scores" in md


@pytest.mark.parametrize("task, shown, hidden", [
    ("corpus", ["R@1 (Δ vs dense [CI])", "probe acc (Δ [CI])", "probe acc (Δ) | recall@1 (Δ) |"], ["Spearman"]),
    ("labels", ["probe acc (Δ [CI])", "probe acc (Δ) | recovery s"], ["R@1", "recall@1", "Spearman"]),
])
def test_other_tasks_keep_their_own_columns(task, shown, hidden):
    md = render(_run(task))
    heads = "\n".join(_headers(md))
    assert all(s in heads for s in shown), heads
    assert not any(h in heads for h in hidden), heads


def test_without_a_recorded_task_the_tables_keep_the_bbc_columns():
    """Quality off (or records from before quality_split): R@1 and probe columns, as the report always had."""
    rec = {k: v for k, v in _rec("corpus", "heads+ffn@0.50", "torch-dense", 0.6, 0.7, 0.1).items() if not k.startswith("quality_")}
    assert run_tasks([rec]) == () and [f[2] for f in table_figures([rec])] == ["R@1", "probe acc"]
    assert [f[2] for f in table_figures([_rec("pairs", "x@0.50", "torch-dense", 1, 0.5, 0)])] == ["Spearman"]


def test_a_run_with_the_sts_file_reports_spearman_end_to_end(tmp_path):
    from bench import cli

    out = tmp_path / "run"
    assert cli.main(["run", "--model", "tiny-bert", "--methods", "heads+ffn", "--sparsity", "0.5", "--runtimes", "torch-dense",
                     "--batch", "1", "--seq-len", "8", "--time-cap", "0.3", "--threads", "1", "--no-memory",
                     "--eval", str(STS), "--out", str(out)]) == 0
    (r,) = read_records(out)
    assert r["quality_split"].startswith("file:sts.tsv pairs=32") and r["quality_spearman"] is not None
    md = (out / "report.md").read_text()
    main = next(h for h in _headers(md) if "| verdict" in h)
    assert "Spearman (Δ [CI])" in main and "R@1" not in main and "probe acc" not in main
