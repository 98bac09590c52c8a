"""Quality on held-out text: the split, the task metrics, bootstrap CIs and paired drops, --eval files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data.corpus import articles, content_key, splits, unique_articles
from bench.data.evalfile import EvalFileError, load_eval_file
from bench.measure.quality import METRICS, EvalTask, QualityMeter, corpus_task, embed_texts, file_task, task_items
from bench.measure.stats import estimates, knn_vote, retrieval_scores
from bench.records import Record, read_records
from bench.report.quality import quality_columns, quality_verdict
from pruning import PruneRecipe, apply

from .forked_cli import run_many

SMALL = dict(probe_train=40, eval=30)  # a reduced split (eval: each held-out split's size): seconds, not minutes
SMALL_SPLITS = dict(probe_train=40, selection=30, report=30)  # the same split, as bench.data.corpus.splits sizes it


# -- the split ------------------------------------------------------------------------------------
def test_corpus_split_is_disjoint_by_content_stratified_and_seeded():
    """No text is in two splits (nor twice in one): the corpus's exact duplicates (tech/176 = tech/132, tech/285 =
    tech/304, ...) are dropped before splitting; ids alone were disjoint before, with copies across splits."""
    s = splits(0, **SMALL_SPLITS)
    parts = (s.calibration, s.probe_train, s.selection, s.report)
    keys = [content_key(a) for part in parts for a in part]
    assert len(keys) == len(set(keys))
    s_full = splits(0)
    full_keys = [content_key(a) for part in (s_full.calibration, s_full.probe_train, s_full.selection, s_full.report)
                 for a in part]
    assert len(full_keys) == len(set(full_keys)) and len(full_keys) == 256 + 1000 + 250 + 250
    arts = {a.id: a for a in articles()}
    assert content_key(arts["tech/176"]) == content_key(arts["tech/132"])  # the corpus does hold copies
    kept = {a.id for a in unique_articles()}
    assert len(kept) < len(arts) and ("tech/132" in kept) != ("tech/176" in kept)
    assert {a.topic for a in s.report} == {a.topic for a in s.probe_train} == {a.topic for a in s.selection}
    assert len({a.topic for a in s.report}) == 5
    assert splits(0, **SMALL_SPLITS).digest == s.digest and splits(1, **SMALL_SPLITS).digest != s.digest
    # the calibration set (recovery, data-aware pruning) and the held-out sets do not move with the probe-train size
    assert [a.id for a in splits(0).calibration] == [a.id for a in s.calibration]
    assert [a.id for a in splits(0, probe_train=90, selection=30, report=30).report] == [a.id for a in s.report]
    task, select = corpus_task(0, **SMALL), corpus_task(0, **SMALL, split="selection")
    assert task.split.startswith(f"bbc-news dedup=content unique={len(kept)}/{len(arts)} seed=0") and s.digest in task.split
    assert "selection=30 report=30 scored=report" in task.split and "scored=selection" in select.split
    assert task.texts["title"][0] == s.report[0].title and task.texts["body"][0] == s.report[0].body
    assert select.texts["title"][0] == s.selection[0].title and not set(select.texts["body"]) & set(task.texts["body"])
    assert len(corpus_task().texts["eval"]) == 250


# -- scoring on a tiny model ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tiny_models):
    return tiny_models["tiny-bert"]


def _measure(loaded, nets: dict, task: EvalTask, meter: QualityMeter | None = None):
    meter = meter or QualityMeter(resamples=200)
    return meter.measure("dense", "variant", nets.__getitem__, loaded.encode, task, 16)


def test_same_seed_same_accuracy_and_an_identical_variant_drops_exactly_zero(tiny):
    task = corpus_task(0, **SMALL)
    nets = {"dense": tiny.model, "variant": tiny.fresh()}  # the same weights under another key
    a, b = _measure(tiny, nets, task), _measure(tiny, nets, task)
    for name, est in a.figures.items():
        assert est.value == pytest.approx(b.figures[name].value, abs=1e-9)
        assert (est.lo, est.hi) == pytest.approx((b.figures[name].lo, b.figures[name].hi), abs=1e-9)
    assert set(a.figures) == {"probe_acc", "knn_acc", "r1", "mrr10", "cosine", "knn_agreement"}
    for name in ("probe_acc", "knn_acc", "r1", "mrr10"):
        est = a.figures[name]
        assert (est.drop, est.drop_lo, est.drop_hi) == (0.0, 0.0, 0.0), name
        assert est.measurable_drop is False
    assert a.figures["knn_agreement"].value == 1.0


def test_a_pruned_variants_drop_is_paired_with_dense_on_the_same_report_items(tiny):
    """The drop is dense's figure minus the variant's on the same items (dense scored alone gives that figure),
    the record fields exist in Record, and a figure scored on other items is refused rather than paired."""
    task = corpus_task(0, **SMALL)
    pruned = apply(tiny.fresh(), PruneRecipe("global-l1", 0.7)).eval()
    meter = QualityMeter(resamples=200)
    res = _measure(tiny, {"dense": tiny.model, "variant": pruned}, task, meter)
    alone = meter.measure("dense", "dense", {"dense": tiny.model}.__getitem__, tiny.encode, task, 16)
    for name in ("probe_acc", "knn_acc", "r1", "mrr10"):
        est = res.figures[name]
        assert est.drop == pytest.approx(alone.figures[name].value - est.value, abs=1e-12), name
    assert res.figures["cosine"].value < 1.0
    fields = res.record_fields()
    assert set(fields) <= {f.name for f in dataclasses.fields(Record)}
    assert fields["quality_split"] == task.split and "scored=report" in fields["quality_split"] and fields["quality_max_len"] == 16
    assert {"quality_r1_drop_lo", "quality_probe_acc_hi", "quality_knn_drop", "quality_mrr10", "quality_seconds"} <= set(fields)
    with pytest.raises(ValueError, match="different items"):
        estimates({"r1": np.zeros(5)}, {"r1": np.zeros(6)})


def test_meter_embeds_each_model_once_per_run(tiny):
    task = corpus_task(0, **SMALL)
    calls = []

    def net(key):
        calls.append(key)
        return tiny.model

    meter = QualityMeter(resamples=50)
    for _ in range(3):  # three runtimes of one variant
        meter.measure("dense", "variant", net, tiny.encode, task, 16)
    assert calls == ["dense", "variant"]
    meter.measure("dense", "other", net, tiny.encode, task, 16)
    assert calls == ["dense", "variant", "other"]


def test_embeddings_do_not_depend_on_the_length_sorted_batching(tiny):
    texts = tuple(corpus_task(0, **SMALL).texts["title"][:12]) + ("a much longer text " * 10,)
    batched = embed_texts(tiny.model, tiny.encode, texts, 32, batch=4)
    one_by_one = torch.cat([embed_texts(tiny.model, tiny.encode, (t,), 32) for t in texts])
    assert torch.allclose(batched, one_by_one, atol=1e-5)


def test_long_bodies_are_truncated_exactly_as_the_tokenizer_would(tiny):
    body = " ".join(f"word{i}" for i in range(3000))
    clipped = embed_texts(tiny.model, tiny.encode, (body,), 24)
    with torch.inference_mode():
        enc = tiny.encode([body], 24)
        ref = tiny.model(**enc).last_hidden_state.mean(1)
    assert torch.allclose(clipped, ref, atol=1e-5)


# -- the statistics on planted embeddings --------------------------------------------------------------
def _planted(n_train=60, n_eval=40, classes=3, dim=16, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 3
    y_tr, y_ev = np.arange(n_train) % classes, np.arange(n_eval) % classes
    task = EvalTask("corpus", "planted", {g: ("x",) * n for g, n in
                                          (("train", n_train), ("eval", n_eval), ("title", n_eval), ("body", n_eval))},
                    train_labels=tuple(y_tr), eval_labels=tuple(y_ev))
    docs = rng.normal(size=(n_eval, dim))
    good = {"train": centres[y_tr] + noise * rng.normal(size=(n_train, dim)),
            "eval": centres[y_ev] + noise * rng.normal(size=(n_eval, dim)),
            "title": docs + 0.01 * rng.normal(size=docs.shape), "body": docs}
    bad = {k: rng.normal(size=v.shape) for k, v in good.items()}
    as_t = lambda d: {k: torch.tensor(v, dtype=torch.float32) for k, v in d.items()}  # noqa: E731
    return task, as_t(good), as_t(bad)


def test_planted_signal_scores_perfectly_and_noise_drops_measurably():
    task, good, bad = _planted()
    d_items, v_items = task_items(task, good), task_items(task, bad)
    dense = estimates(d_items, resamples=300)
    assert dense["probe_acc"].value == 1.0 and dense["knn_acc"].value == 1.0
    assert dense["r1"].value == 1.0 and dense["mrr10"].value == 1.0
    drop = estimates(v_items, d_items, resamples=300)
    for name in ("probe_acc", "knn_acc", "r1", "mrr10"):
        assert drop[name].drop_lo > 0 and drop[name].measurable_drop, name
        assert drop[name].drop == pytest.approx(dense[name].value - drop[name].value)


def _collapsed(kind: str, like: dict) -> dict:
    rng = np.random.default_rng(7)
    make = {"zero": lambda t: torch.zeros_like(t), "constant": lambda t: torch.ones_like(t) * 0.3,
            "random": lambda t: torch.tensor(rng.normal(size=tuple(t.shape)), dtype=torch.float32)}[kind]
    return {k: make(v) for k, v in like.items()}


@pytest.mark.parametrize("kind", ["zero", "constant", "random"])
def test_a_collapsed_model_scores_chance_on_every_task_metric_and_fails_the_floor(kind):
    """Chance: R@1 = 1/n, MRR@10 = H(10)/n for n documents; accuracy: the eval majority-class rate; Spearman 0.
    Zero and constant embeddings tie everything, so they score chance exactly (ties are never hits); random
    ones score near it. Before ties counted, zero embeddings scored R@1 = MRR = 1.0."""
    from bench.frontier import meets, parse_floor

    n_eval = 60
    task, good, _ = _planted(n_eval=n_eval, classes=4)
    y_ev = np.asarray(task.eval_labels)
    majority = np.bincount(y_ev).max() / len(y_ev)
    items = task_items(task, _collapsed(kind, good))
    r1, mrr = 1 / n_eval, sum(1 / r for r in range(1, 11)) / n_eval
    if kind == "random":  # a draw: near chance, far below the planted model's 1.0
        assert items["r1"].mean() <= 5 * r1 and items["mrr10"].mean() <= 3 * mrr
        assert items["probe_acc"].mean() <= majority + 0.15 and items["knn_acc"].mean() <= majority + 0.15
    else:
        assert items["r1"].mean() == pytest.approx(r1) and items["mrr10"].mean() == pytest.approx(mrr)
        assert items["probe_acc"].mean() <= majority + 1e-9 and items["knn_acc"].mean() <= majority + 1e-9
    figures = estimates(items, task_items(task, good), resamples=200)
    for floor in ("r@1>=-0.02", "mrr>=-0.02", "probe>=-0.02", "knn>=-0.02"):
        assert not meets(parse_floor(floor), figures)[0], floor
    pairs = EvalTask("pairs", "planted pairs", {"s1": ("x",) * 5, "s2": ("y",) * 5}, scores=(4.5, 0.5, 4.0, 3.5, 0.0))
    s = {k: torch.ones(5, 4) * (0 if kind == "zero" else 0.3) for k in ("s1", "s2")}
    if kind == "random":
        s = {k: torch.tensor(np.random.default_rng(i).normal(size=(5, 4)), dtype=torch.float32) for i, k in enumerate(("s1", "s2"))}
    est = estimates(task_items(pairs, s), resamples=100)["spearman"]
    assert np.isfinite(est.value) and (est.value == 0.0 if kind != "random" else abs(est.value) <= 1)


def test_retrieval_splits_ties_a_duplicated_document_halves_the_hit():
    docs = torch.tensor(np.random.default_rng(0).normal(size=(20, 8)), dtype=torch.float32)
    docs[1] = docs[0]  # two articles with the same body
    r1, rr = retrieval_scores(docs, docs)
    assert (r1[0], r1[1], rr[0]) == (0.5, 0.5, 0.75) and (r1[2:] == 1.0).all()


def test_knn_vote_under_ties_does_not_depend_on_the_order_of_the_train_items():
    """With every similarity tied, the k nearest are all of them in equal share: the vote is the train set's
    class proportions (majority 0), whatever order the items come in (the old vote took the first k)."""
    y = np.array([1] * 10 + [0] * 30 + [2] * 20)
    for order in (y, y[::-1], np.sort(y)[::-1]):
        assert (knn_vote(torch.ones(60, 4), order, torch.ones(7, 4), 10, 3) == 0).all()


def test_the_paired_drop_ci_is_narrower_than_the_unpaired_figures():
    """Dense and variant share the items, so item difficulty cancels in the drop."""
    rng = np.random.default_rng(3)
    hard = rng.random(400) < 0.3
    dense = {"probe_acc": (~hard).astype(float)}
    variant = {"probe_acc": ((~hard) & (rng.random(400) > 0.05)).astype(float)}
    est = estimates(variant, dense, resamples=500)["probe_acc"]
    assert est.drop_hi - est.drop_lo < 0.6 * (est.hi - est.lo)


# -- report cells and verdict ---------------------------------------------------------------------------
def _rec(**kw):
    base = dict(quality_meaningful=True, quality_cosine=0.52, quality_r1=0.728, quality_r1_drop=0.184,
                quality_r1_drop_lo=0.128, quality_r1_drop_hi=0.24, quality_probe_acc=0.936, quality_probe_drop=0.01,
                quality_probe_drop_lo=-0.01, quality_probe_drop_hi=0.03)
    return {**base, **kw}


def test_report_cells_and_verdict_say_whether_quality_dropped_measurably():
    cols = quality_columns(_rec())
    assert cols["R@1 (Δ vs dense [CI])"] == "0.728 (Δ -0.184 [-0.240, -0.128])"
    assert cols["probe acc (Δ [CI])"] == "0.936 (Δ -0.010 [-0.030, +0.010])"
    assert cols["cosine to dense"] == "0.520"
    assert quality_verdict(_rec()) == "quality dropped measurably: R@1 -0.184 [-0.240, -0.128]"
    same = _rec(quality_r1_drop=0.004, quality_r1_drop_lo=-0.02, quality_r1_drop_hi=0.03)
    assert quality_verdict(same) == "no measurable quality drop (R@1 Δ -0.004 [-0.030, +0.020])"
    assert "not meaningful" in quality_verdict(_rec(quality_meaningful=False))
    assert quality_verdict({"quality_cosine": 0.9}) is None


# -- --eval files ------------------------------------------------------------------------------------------
LABELS = "".join(f"{t}\t{lab}\n" for lab, words in (("sport", "goal match team win"), ("money", "bank shares price profit"),
                                                      ("tech", "phone chip software web")) for t in words.split())
PAIRS = "a cat sat\ta cat sat down\t4.5\na dog ran\tthe stock fell\t0.5\nrain today\tit is raining\t4.0\n" \
        "new phone\tnew mobile phone\t3.5\nbank rate\ta goal scored\t0.0\n"


def test_eval_files_parse_into_a_seeded_split_or_pairs(tmp_path):
    lab = load_eval_file(_write(tmp_path / "labels.tsv", LABELS))
    assert lab.kind == "labels" and lab.classes == ("money", "sport", "tech")
    assert len(lab.train_texts) == 6 and len(lab.eval_texts) == 6 and not set(lab.train_texts) & set(lab.eval_texts)
    assert load_eval_file(tmp_path / "labels.tsv").describe() == lab.describe()
    pairs = load_eval_file(_write(tmp_path / "pairs.tsv", PAIRS))
    assert pairs.kind == "pairs" and pairs.scores == (4.5, 0.5, 4.0, 3.5, 0.0)
    task = file_task(pairs)
    items = task_items(task, {"s1": torch.eye(5), "s2": torch.eye(5)})
    assert items["spearman"].shape == (5, 2)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


TINY_RUN = ["run", "--model", "tiny-bert", "--methods", "global-l1", "--sparsity", "0.5", "--runtimes", "torch-dense",
            "--batch", "1", "--seq-len", "8", "--time-cap", "0.3", "--threads", "1", "--no-memory"]


@pytest.mark.parametrize("shape, text, figure", [("labels", LABELS, "quality_probe_acc"), ("pairs", PAIRS, "quality_spearman")])
def test_run_with_eval_file_records_its_task_figures(tmp_path, shape, text, figure):
    from bench import cli

    f = _write(tmp_path / f"{shape}.tsv", text)
    out = tmp_path / "run"
    assert cli.main([*TINY_RUN, "--eval", str(f), "--out", str(out)]) == 0
    (r,) = read_records(out)
    assert r["status"] == "ok" and r["quality_split"].startswith(f"file:{shape}.tsv")
    assert r[figure + "_lo"] <= r[figure] <= r[figure + "_hi"]
    drop = METRICS[figure.removeprefix("quality_")][1]
    assert r[drop + "_lo"] <= r[drop] <= r[drop + "_hi"]
    assert r["quality_r1"] is None and r["quality_cosine"] is not None and r["quality_meaningful"] is False


def _bad_files(root: Path) -> list[tuple[str, list[str], str]]:
    w = lambda name, text: str(_write(root / name, text))  # noqa: E731
    plan = w("plan.toml", f'models = ["tiny-bert"]\nruntimes = ["torch-dense"]\neval = "{root / "cols.tsv"}"\n'
                          '[[recipes]]\nmethod = "global-l1"\nsparsity = 0.5\n')
    return [
        ("missing", ["--eval", str(root / "nope.tsv")], "nope.tsv: does not exist; pass a TSV file"),
        ("empty", ["--eval", w("empty.tsv", "\n\n")], "empty.tsv: is empty"),
        ("columns", ["--eval", w("cols.tsv", "a\tx\nb\tx\nc\ty\td\n")], "cols.tsv line 3: has 3 tab-separated columns, line 1 has 2"),
        ("one-example", ["--eval", w("one.tsv", "a\tx\nb\tx\nc\ty\n")], "one.tsv line 3: label 'y' has one example"),
        ("score", ["--eval", w("score.tsv", "a\tb\t1\nc\td\tgood\ne\tf\t2\n")], "score.tsv line 2: score 'good' is not a number"),
        ("plan-key", ["--plan", plan], "cols.tsv line 3: has 3 tab-separated columns"),
    ]


def test_bad_eval_files_exit_2_with_one_line(tmp_path):
    cases = _bad_files(tmp_path)
    runs = run_many([(["run", "--no-memory", *argv], tmp_path) for _, argv, _ in cases], env={"HF_HUB_OFFLINE": "1"})
    procs = dict(zip([c[0] for c in cases], runs))
    for name, _, words in cases:
        proc = procs[name]
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, (name, proc.stderr[-1500:])
        assert lines[0].startswith("prunebench: error: eval file ") and words in lines[0], (name, lines[0])


def test_eval_file_errors_name_the_fix(tmp_path):
    with pytest.raises(EvalFileError, match=r"one label \('x'\); a probe needs at least two labels"):
        load_eval_file(_write(tmp_path / "one-label.tsv", "a\tx\nb\tx\n"))
    with pytest.raises(EvalFileError, match=r"line 2: has an empty column; fill it in or delete the line"):
        load_eval_file(_write(tmp_path / "blank.tsv", "a\tx\n\ty\nc\ty\nd\tx\n"))
    with pytest.raises(EvalFileError, match=r"every pair the same score"):
        load_eval_file(_write(tmp_path / "flat.tsv", "a\tb\t1\nc\td\t1\ne\tf\t1\n"))


# -- the real MiniLM, on a reduced split --------------------------------------------------------------------
@pytest.mark.minilm
def test_minilm_scores_the_bbc_task_well_above_chance_and_pruning_costs_retrieval(minilm):
    task = corpus_task(0, probe_train=60, eval=40)
    shrunk = apply(minilm.fresh(), PruneRecipe("heads+ffn", 0.5)).eval()
    res = QualityMeter(resamples=300).measure("dense", "heads+ffn", {"dense": minilm.model, "heads+ffn": shrunk}.__getitem__,
                                              minilm.encode, task, 48)
    dense_r1 = res.figures["r1"].value + res.figures["r1"].drop
    dense_probe = res.figures["probe_acc"].value + res.figures["probe_acc"].drop
    assert dense_probe >= 0.8 and dense_r1 >= 0.6  # five topics: chance is 0.2; 40 candidates: chance 0.025
    assert res.figures["r1"].drop > 0 and res.figures["cosine"].value < 0.9


def test_quality_plot_shows_the_task_metric_with_ci_bars():
    import pandas as pd

    from bench.report.plots import fidelity_plot

    rows = [dict(status="ok", method=m, recipe=f"{m}@{sp:.2f}", runtime="torch-dense", model="minilm", device="cpu", batch=8,
                 seq_len=128, sparsity_target=sp, latency_ratio=lat, quality_cosine=cos, quality_r1=r1, quality_r1_lo=r1 - 0.05,
                 quality_r1_hi=r1 + 0.05, quality_r1_drop=0.9 - r1, quality_meaningful=True)
            for m, sp, lat, cos, r1 in (("global-l1", 0.5, 1.0, 0.75, 0.87), ("heads+ffn", 0.5, 0.52, 0.52, 0.73))]
    fig = fidelity_plot(pd.DataFrame(rows))
    ax = fig.axes[0]
    assert ax.get_ylabel() == "R@1 (95% CI)"
    bars = [seg for c in ax.collections if hasattr(c, "get_segments") for seg in c.get_segments()]
    assert sorted(round(float(seg[1][1] - seg[0][1]), 6) for seg in bars) == [0.1, 0.1]  # each point's CI bar
    without_task = pd.DataFrame(rows).drop(columns=[c for c in rows[0] if c.startswith("quality_r1")])
    assert fidelity_plot(without_task).axes[0].get_ylabel() == "fidelity: mean cosine to dense"


# -- a smoke run's capped split (plan key quality_items, issue 21) ------------------------------------------------
def test_a_capped_split_scores_a_stratified_subset_of_the_full_one_and_says_capped():
    from bench.compare import eval_items

    full, capped = corpus_task(0), corpus_task(0, cap=40)
    assert len(capped.texts["eval"]) == len(capped.texts["train"]) == len(capped.eval_labels) == 40
    assert capped.split.endswith(" capped=40") and "capped" not in full.split
    assert "report=40 scored=report" in capped.split and eval_items(capped.split) == 40
    assert set(capped.texts["body"]) < set(full.texts["body"])  # the held-out articles are the full split's
    assert len(set(capped.eval_labels)) == 5  # every topic still scored
    assert corpus_task(0, cap=1000).texts == full.texts and "capped=1000" in corpus_task(0, cap=1000).split


def test_the_plans_quality_items_caps_the_corpus_and_a_users_eval_file_is_scored_whole(tmp_path):
    from bench.engine import Session
    from bench.plan import Case, Plan

    case = Case("tiny-bert", PruneRecipe("global-l1", 0.5), "torch-dense", batch=2, seq_len=16, threads=1)
    tsv = tmp_path / "eval.tsv"
    tsv.write_text("".join(f"text number {i} about {'sport' if i % 2 else 'markets'}\t{i % 2}\n" for i in range(40)))
    for plan, expect in ((Plan((case,), quality_items=30), "capped=30"), (Plan((case,)), None),
                         (Plan((case,), quality_items=30, eval=str(tsv)), None)):
        s = Session(plan, tmp_path / "run", "t", cache_dir=tmp_path / "cache")
        try:
            split = s.quality_task().split
        finally:
            s.close()
        assert (expect in split) if expect else "capped" not in split
