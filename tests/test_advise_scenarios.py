"""``prunebench advise --scenario``: every survivor is timed in each scenario asked for, a resumed search times
only what a scenario still lacks, and the report recommends per scenario (with that scenario's figures); driven
with planted records and a fake launcher, so nothing depends on this machine's speed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench.advise import Candidate, Search, confirm, time_survivors
from bench.advise_command import _scenarios
from bench.advise_report import write_advice
from bench.frontier import parse_floor
from bench.records import SCHEMA
from bench.run import UsageError
from pruning import PruneRecipe

FLOOR = parse_floor("cosine>=0.9")
ORT = Candidate(PruneRecipe("layers", 0.5), "onnxruntime")
BF16 = Candidate(PruneRecipe("dense"), "torch-dense", "bfloat16")
# planted ratios: bf16 wins the fixed batch, the pruned ORT model wins single queries and the offline corpus
RATIO = {("fixed", ORT.key): 0.8, ("fixed", BF16.key): 0.5, ("query", ORT.key): 0.6, ("query", BF16.key): 0.9,
         ("offline", ORT.key): 0.7, ("offline", BF16.key): 1.2}
FIGS = {"fixed": None, "query": {"p50_ms": 4.5, "p90_ms": 6.0, "p99_ms": 9.25, "baseline_p50_ms": 7.5,
                                 "baseline_p90_ms": 9.5, "baseline_p99_ms": 14.0, "texts": 32},
        "offline": {"texts_per_s": 321.5, "baseline_texts_per_s": 225.0, "texts": 128}}


class ScenarioLaunch:
    """Writes one ok record per candidate x scenario not yet recorded (as ``execute --resume`` would)."""

    def __init__(self, out: Path, scenarios: tuple[str, ...]):
        self.scenarios, self.ran = scenarios, []
        (out / "timed").mkdir(parents=True, exist_ok=True)
        self.path = out / "timed" / "records.jsonl"

    def records(self) -> list[dict]:
        return [json.loads(x) for x in self.path.read_text().splitlines()] if self.path.is_file() else []

    def __call__(self, cands):
        have = {r["case_id"] for r in self.records()}
        with self.path.open("a") as fh:
            for c in cands:
                for sc in self.scenarios:
                    if f"{c.key}/{sc}" in have:
                        continue
                    self.ran.append((c.key, sc))
                    fh.write(json.dumps({"schema": SCHEMA, "case_id": f"{c.key}/{sc}", "status": "ok", "scenario": sc,
                                         "recipe": c.recipe.label, "runtime": c.runtime, "dtype": c.dtype,
                                         "batch": 1 if sc == "query" else 8, "recipe_config": c.recipe.to_dict(),
                                         "latency_ratio": RATIO[sc, c.key], "latency_ratio_lo": RATIO[sc, c.key] - 0.05,
                                         "latency_ratio_hi": RATIO[sc, c.key] + 0.05, "scenario_figures": FIGS[sc],
                                         "quality_cosine": 1.0, "quality_cosine_lo": 1.0, "quality_cosine_hi": 1.0}) + "\n")
        return self.records()


def _args(scenarios: list[str]) -> argparse.Namespace:
    return argparse.Namespace(model="minilm", batch=8, seq_len=128, eval=None, scenario=scenarios)


def test_each_survivor_is_timed_in_every_scenario_and_a_resume_times_only_what_is_missing(tmp_path):
    clock = [0.0]
    search = Search(tmp_path, 1e6, clock=lambda: clock[0], say=lambda _: None)
    only_fixed = ScenarioLaunch(tmp_path, ("fixed",))
    time_survivors(search, [ORT, BF16], only_fixed, 10, scenarios=("fixed",))
    assert sorted(only_fixed.ran) == sorted([(ORT.key, "fixed"), (BF16.key, "fixed")])
    three = ScenarioLaunch(tmp_path, ("fixed", "query", "offline"))
    records = time_survivors(search, [ORT, BF16], three, 10, scenarios=("fixed", "query", "offline"))
    assert sorted(three.ran) == sorted((c.key, sc) for c in (ORT, BF16) for sc in ("query", "offline"))
    again = ScenarioLaunch(tmp_path, ("fixed", "query", "offline"))
    time_survivors(search, [ORT, BF16], again, 10, scenarios=("fixed", "query", "offline"))
    assert again.ran == []  # every scenario recorded: nothing timed twice
    assert {(r["advise_key"], r["advise_scenario"]) for r in confirm(records, FLOOR)} == set(
        (c.key, sc) for c in (ORT, BF16) for sc in ("fixed", "query", "offline"))


def test_the_report_recommends_per_scenario_with_that_scenarios_figures(tmp_path):
    scenarios = ["fixed", "query", "offline"]
    records = ScenarioLaunch(tmp_path, tuple(scenarios))([ORT, BF16])
    task = argparse.Namespace(kind="corpus", split={"selection": 10})
    advice = write_advice(tmp_path, _args(scenarios), FLOOR, {}, confirm(records, FLOOR), {}, task)
    sections = {s.split("\n", 1)[0]: s for s in advice.text.split("## Recommendation (")[1:]}
    fixed = next(v for k, v in sections.items() if k.startswith("fixed: batch 8 x seq_len 128"))
    query = next(v for k, v in sections.items() if k.startswith("query scenario"))
    offline = next(v for k, v in sections.items() if k.startswith("offline scenario"))
    assert f"**{BF16.key}**" in fixed.split("###")[0]
    assert f"**{ORT.key}**" in query.split("###")[0] and "p50 ms 4.50 / 7.50" in query and "p99 ms 9.25 / 14.00" in query
    assert "--scenario query" in query and "--batch 1" in query
    assert f"**{ORT.key}**" in offline.split("###")[0] and "texts/s 321.5 / 225.0" in offline
    assert "--scenario offline" in offline
    assert advice.recommendation["advise_key"] == BF16.key  # the first scenario's
    assert "| scenario figures (variant / base) |" in advice.text


def test_a_scenario_where_nothing_beats_dense_says_so_and_others_still_recommend(tmp_path):
    records = ScenarioLaunch(tmp_path, ("offline", "query"))([BF16])  # bf16: 1.2 offline (slower), 0.9 query
    task = argparse.Namespace(kind="corpus", split={})
    advice = write_advice(tmp_path, _args(["offline", "query"]), FLOOR, {}, confirm(records, FLOOR), {}, task)
    offline, query = advice.text.split("## Recommendation (")[1:]
    assert offline.startswith("offline scenario") and "ship the dense model" in offline
    assert query.startswith("query scenario") and f"**{BF16.key}**" in query
    assert advice.recommendation["advise_key"] == BF16.key and not advice.dense


def test_scenario_flag_is_checked_and_deduplicated():
    assert _scenarios(None) == ["fixed"]
    assert _scenarios(["query", "fixed", "query"]) == ["query", "fixed"]
    with pytest.raises(UsageError, match="--scenario 'batchy' is not one of fixed, query, offline"):
        _scenarios(["fixed", "batchy"])
