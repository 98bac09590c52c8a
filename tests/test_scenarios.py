"""Serving scenarios (bench.measure.scenarios): query requests are single real texts at their own lengths, offline
batches are length-sorted and padded only to their longest, percentiles come exactly from per-request times, a
runtime that cannot serve a scenario is skipped with its reason, and default case ids stay what they were."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bench.env import fingerprint
from bench.measure.scenarios import (ScenarioTimer, Workload, figures, offline_workload, percentile, query_workload,
                                     scenario_texts, workload)
from bench.plan import Case, Plan, PlanError, load_plan, plan_from_dict
from bench.variants import get_model, unavailable
from pruning import PruneRecipe

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny():
    return get_model("tiny-bert")  # seeded random init, the bundled MiniLM tokenizer


def test_query_requests_are_single_real_titles_at_their_own_varying_lengths(tiny):
    titles = scenario_texts("titles", 24)
    assert titles == scenario_texts("titles", 24)  # seeded: every case and its baseline time the same requests
    work = query_workload(tiny.encode, titles, 128)
    assert work.texts == len(work.units) == 24
    for text, unit in zip(titles, work.units):
        assert unit["input_ids"].shape[0] == 1  # batch 1
        assert bool(unit["attention_mask"].all())  # no padding at all
        own = len(tiny.tokenizer(text)["input_ids"])
        assert unit["input_ids"].shape[1] == min(own, 128)  # the text's own token length
    assert len({u["input_ids"].shape[1] for u in work.units}) >= 5  # lengths really vary


def test_query_requests_are_truncated_to_seq_len(tiny):
    work = query_workload(tiny.encode, ["a long title " * 40], 16)
    assert tuple(work.units[0]["input_ids"].shape) == (1, 16)


def test_offline_batches_are_length_sorted_and_padded_only_to_their_longest(tiny):
    texts = [" ".join(["word"] * n) for n in (30, 3, 17, 9, 50, 1, 22, 5, 12, 40, 7)]
    work = offline_workload(tiny.encode, texts, 4, 32)
    assert [u["input_ids"].shape[0] for u in work.units] == [4, 4, 3] and work.texts == len(texts)
    real = [u["attention_mask"].sum(1).tolist() for u in work.units]
    flat = [n for batch in real for n in batch]
    assert flat == sorted(flat)  # length-sorted across and within batches
    for unit, lengths in zip(work.units, real):
        assert unit["input_ids"].shape[1] == max(lengths)  # padded to this batch's longest only
    assert max(flat) == 32 and min(flat) < 8  # truncated to seq_len; short texts stay short
    assert work.lengths()[0][1] < work.lengths()[-1][1]


def test_offline_workload_of_the_corpus_embeds_every_text_once(tiny):
    work = workload("offline", tiny.encode, 16, 64)
    assert work.texts == sum(u["input_ids"].shape[0] for u in work.units)
    assert all(u["input_ids"].shape[1] <= 64 for u in work.units)


def test_percentiles_are_computed_exactly_from_planted_per_request_times():
    planted = [(i + 1) / 1000 for i in range(100)]  # 1 ms .. 100 ms, served in a shuffled order
    order = [planted[(i * 37) % 100] for i in range(100)]
    assert sorted(order) == planted
    units = tuple({"input_ids": torch.zeros(1, 3 + i % 5, dtype=torch.long)} for i in range(10))
    work = Workload("query", units, 10)
    ticks: list[float] = []

    def side(durations: list[float]) -> ScenarioTimer:
        now = [0.0]
        it = iter(durations)

        def run(_inputs):
            now[0] += next(it)

        return ScenarioTimer(run, work, clock=lambda: now[0])

    warm = [5.0] * 10  # a warm-up call with huge times: not one of the timed rounds
    variant = side(warm + order)
    base = side(warm + [2 * t for t in order])
    for _ in range(11):
        ticks.append(variant())
        base()
    assert ticks[0] == pytest.approx(50.0) and sum(ticks[1:]) == pytest.approx(sum(planted))
    got = figures("query", variant, base, rounds=10)
    assert got["p50_ms"] == pytest.approx(50.5) and got["p90_ms"] == pytest.approx(90.1)
    assert got["p99_ms"] == pytest.approx(99.01) and got["baseline_p99_ms"] == pytest.approx(198.02)
    assert got["texts"] == 10
    assert percentile([3.0], 99) == 3.0 and percentile([1.0, 2.0], 50) == 1.5


def test_offline_throughput_is_texts_over_the_median_corpus_time():
    work = Workload("offline", ({"input_ids": torch.zeros(2, 4)}, {"input_ids": torch.zeros(2, 9)}), 4)
    variant, base = ScenarioTimer(lambda _: None, work), ScenarioTimer(lambda _: None, work)
    variant.calls = [[9.0, 9.0], [0.5, 0.5], [1.0, 1.0], [0.25, 0.75]]  # the first is warm-up
    base.calls = [[9.0, 9.0], [1.0, 1.0], [2.0, 2.0], [1.0, 1.0]]
    got = figures("offline", variant, base, rounds=3)
    assert got["texts_per_s"] == pytest.approx(4 / 1.0) and got["baseline_texts_per_s"] == pytest.approx(4 / 2.0)
    assert got["batches"] == 2 and got["padded_tokens"] == 2 * 4 + 2 * 9


class _Fake:
    """A runner that records the shape of every input it is run on."""

    def __init__(self):
        self.shapes: list[tuple[int, int]] = []

    def run(self, inputs):
        self.shapes.append(tuple(inputs["input_ids"].shape))

    def timed(self):  # the fixed scenario's unit: must not be used by a query case
        raise AssertionError("a scenario case timed the fixed batch")


def test_a_query_case_times_the_whole_request_sequence_on_both_sides_through_runner_run():
    from bench import steps

    case = Case("tiny-bert", PruneRecipe("dense"), "torch-dense", batch=1, seq_len=64, threads=1, scenario="query")
    plan = Plan((case,), time_cap_s=0.05, warmup=1, min_rounds=2)
    runner, baseline = _Fake(), _Fake()
    speed = steps.latency(SimpleNamespace(plan=plan), case,
                          SimpleNamespace(runner=runner, baseline=baseline, flops_ratio=0.5))
    n = len(speed.latency.variant_s) + 1  # the timed rounds and the one warm-up call
    work = workload("query", get_model("tiny-bert").encode, 1, 64)
    assert runner.shapes == baseline.shapes == [tuple(u["input_ids"].shape) for u in work.units] * n
    fields = speed.record_fields()
    assert {"p50_ms", "p90_ms", "p99_ms", "baseline_p50_ms"} <= set(fields["scenario_figures"])
    assert fields["efficiency"] is None  # the FLOP ratio is of the fixed batch, not of these requests


@pytest.mark.parametrize("runtime, words", [("torch-compile", "static shapes"), ("st-onnx", "peer")])
def test_a_scenario_a_runtime_cannot_serve_is_skipped_with_its_reason(runtime, words, monkeypatch):
    from bench.runtimes import get_runtime

    rt = get_runtime(runtime)
    monkeypatch.setattr(type(rt), "unavailable", lambda self, device: None)  # as if installed here
    monkeypatch.setattr(type(rt), "incompatible", lambda self, case: None)
    fixed = Case("tiny-bert", PruneRecipe("dense"), runtime, batch=1, seq_len=16)
    assert unavailable(fixed) is None
    for scenario in ("query", "offline"):
        why = unavailable(Case("tiny-bert", PruneRecipe("dense"), runtime, batch=1, seq_len=16, scenario=scenario))
        assert why and words in why and scenario in why


def test_a_scenario_whose_baseline_cannot_serve_it_is_skipped_naming_the_baseline():
    case = Case("tiny-bert", PruneRecipe("global-l1", 0.5), "torch-dense", batch=1, seq_len=16, scenario="query",
                baseline_runtime="torch-compile")
    assert unavailable(case).startswith("its baseline: torch-compile compiles static shapes")


def test_default_case_ids_and_fingerprints_are_unchanged_and_a_scenario_is_its_own_case():
    base = ROOT / "results/baseline"
    committed = {r["case_id"]: r["fingerprint"] for r in map(json.loads, (base / "records.jsonl").read_text().splitlines())}
    env = json.loads((base / "env.json").read_text())
    plan = load_plan(ROOT / "bench/plans/ci.toml", scenario=["fixed"])  # the default spelled out
    assert {c.case_id for c in plan.cases} == set(committed)
    assert all(fingerprint(c, env) == committed[c.case_id] for c in plan.cases)
    assert all("scenario" not in c.to_dict() for c in plan.cases)
    both = load_plan(ROOT / "bench/plans/ci.toml", scenario=["fixed", "query", "offline"])
    extra = {c.case_id: c for c in both.cases if c.case_id not in committed}
    assert {c.scenario for c in extra.values()} == {"query", "offline"} and len(both.cases) == 3 * len(plan.cases)
    for cid, c in extra.items():
        assert f"/{c.scenario}-b{c.batch}s{c.seq_len}" in cid and fingerprint(c, env) not in committed.values()
        assert c.baseline.scenario == c.scenario and Case.from_dict(c.to_dict()) == c
        assert c.batch == (1 if c.scenario == "query" else plan.cases[0].batch)


def test_scenario_plan_key_refuses_bad_values_naming_the_fix():
    d = {"models": ["tiny-bert"], "runtimes": ["torch-dense"], "recipes": [{"method": "dense"}]}
    with pytest.raises(PlanError, match="scenario 'batchy' is not one of fixed, query, offline"):
        plan_from_dict(d, scenario=["batchy"])
    with pytest.raises(PlanError, match="scenario .* is not one of"):
        plan_from_dict({**d, "scenario": [["query"]]})
    with pytest.raises(PlanError, match="batch 1"):
        Case("tiny-bert", PruneRecipe("dense"), "torch-dense", batch=8, scenario="query")
    plan = plan_from_dict({**d, "batch": [8, 32]}, scenario=["query", "offline"])
    assert sorted(c.case_id.rsplit("/", 1)[1] for c in plan.cases) == ["offline-b32s128", "offline-b8s128", "query-b1s128"]


def test_the_report_shows_each_scenarios_figures_beside_its_ratio():
    from dataclasses import asdict

    from bench.records import Record
    from bench.report import render

    def rec(scenario: str | None, ratio: float | None, figs: dict | None, status: str = "ok") -> dict:
        shape = "b2s16" if scenario in (None, "fixed") else f"{scenario}-b{1 if scenario == 'query' else 2}s16"
        return asdict(Record(run_id="r", case_id=f"tiny-bert/global-l1@0.50/torch-dense/cpu/{shape}", status=status,
                             model="tiny-bert", weights="random-init", method="global-l1", recipe="global-l1@0.50",
                             runtime="torch-dense", device="cpu", batch=1 if scenario == "query" else 2, seq_len=16,
                             scenario=scenario, scenario_figures=figs, latency_ratio=ratio, latency_ratio_lo=ratio and ratio * 0.9,
                             latency_ratio_hi=ratio and ratio * 1.1, env={"cpu": "x"}))

    md = render([rec(None, 1.0, None),  # a record from before scenarios: the fixed batch
                 rec("query", 0.8, {"p50_ms": 1.25, "p90_ms": 2.5, "p99_ms": 7.75, "baseline_p50_ms": 1.5,
                                    "baseline_p90_ms": 3.0, "baseline_p99_ms": 9.0, "texts": 32}),
                 rec("offline", 0.7, {"texts_per_s": 412.5, "baseline_texts_per_s": 300.25, "texts": 128}),
                 rec("offline", None, None, status="skipped")])
    sections = md.split("\n## ")
    fixed = next(s for s in sections if s.startswith("tiny-bert — cpu, batch 2, seq 16"))
    query = next(s for s in sections if s.startswith("tiny-bert — cpu, query scenario"))
    offline = next(s for s in sections if s.startswith("tiny-bert — cpu, offline scenario"))
    assert "p50" not in fixed and "texts/s" not in fixed
    row = next(line for line in query.splitlines() if "0.80 [0.72, 0.88]" in line)
    assert "1.25 / 1.50" in row and "2.50 / 3.00" in row and "7.75 / 9.00" in row
    row = next(line for line in offline.splitlines() if "0.70 [0.63, 0.77]" in line)
    assert "412.5 / 300.2" in row or "412.5 / 300.3" in row
    assert "nan" not in md
