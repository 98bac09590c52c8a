"""Plans expand into uniquely named cases and refuse bad fields."""

from __future__ import annotations

import pytest

from bench.models import ModelError
from bench.plan import Case, Plan, PlanError, builtin_plan, load_plan, plan_from_dict
from bench.runtimes import UnknownRuntime
from pruning import PruneRecipe, RecipeError


def test_study_plan_is_the_tutorial_and_what_it_should_have_tried():
    plan = builtin_plan("study")
    labels = {c.recipe.label for c in plan.cases}
    assert {"global-l1[seed]@0.20", "global-l1@0.50", "global-l1@0.90", "local-l1@0.50", "global-random@0.50",
            "ln-structured@0.50"} <= labels
    assert {c.runtime for c in plan.cases} >= {"torch-masked", "torch-dense"}
    assert all((c.batch, c.seq_len, c.device) == (8, 128, "cpu") for c in plan.cases)


def test_default_plan_answers_the_tutorials_question_in_a_few_cases_measured_as_the_study_measures_them():
    """The default keeps the tutorial's recipe and unstructured 0.5 / 0.9 masked and baked, and the best
    recovered recipe of each structured family; every case of it is a study case, measured with the same knobs
    (so its figures equal those of the study's run), and nothing the study measures is lost."""
    default, study = builtin_plan("default"), builtin_plan("study")
    ids = {c.case_id for c in default.cases}
    assert 12 <= len(ids) <= 16 and ids <= {c.case_id for c in study.cases}
    knobs = ("ci_target", "time_cap_s", "warmup", "min_rounds", "memory", "quality", "eval")
    assert [getattr(default, k) for k in knobs] == [getattr(study, k) for k in knobs]
    pairs = {(c.recipe.label, c.runtime) for c in default.cases}
    for label in ("global-l1[seed]@0.20", "global-l1@0.50", "global-l1@0.90"):
        assert {(label, "torch-masked"), (label, "torch-dense")} <= pairs
    assert {("heads+ffn[global,fisher,lstsq]@0.50", "torch-dense"), ("layers[lstsq]@0.50", "torch-dense")} <= pairs


def test_case_ids_are_readable_and_the_baseline_is_dense_in_the_same_runtime():
    c = Case("minilm", PruneRecipe("global-l1", 0.5), "torch-dense")
    assert c.case_id == "minilm/global-l1@0.50/torch-dense/cpu/b8s128"
    assert c.baseline.case_id == "minilm/dense@0.00/torch-dense/cpu/b8s128"


def test_plan_round_trips_through_json(tmp_path):
    plan = builtin_plan("quick")
    plan.save(tmp_path / "p.json")
    assert Plan.load_json(tmp_path / "p.json").cases == plan.cases


def test_grid_expansion_and_runtime_restriction():
    plan = plan_from_dict({"models": ["tiny-bert"], "runtimes": ["torch-masked", "torch-dense"], "batch": [1, 2],
                           "recipes": [{"method": "global-l1", "sparsity": [0.5, 0.9]},
                                       {"method": "local-l1", "sparsity": 0.5, "runtimes": ["torch-dense"]}]})
    assert len(plan.cases) == 2 * 2 * 2 + 1 * 1 * 2


@pytest.mark.parametrize("data, err, match", [
    ({"recipes": [{"method": "global-l1", "sparsity": 1.5}]}, RecipeError, "outside"),
    ({"recipes": [{"sparsity": 0.5}]}, PlanError, "needs a 'method'"),
    ({"recipes": [{"method": "global-l1", "amount": 0.5}]}, PlanError, "unknown key"),
    ({"recipes": [{"method": "global-l1"}], "modles": ["x"]}, PlanError, "unknown plan key"),
    ({"recipes": [{"method": "global-l1"}], "models": ["nosuch"]}, ModelError, "unknown model"),
    ({"recipes": [{"method": "global-l1"}], "runtimes": ["tensorrt"]}, UnknownRuntime, "unknown runtime"),
    ({"recipes": [{"method": "global-l1"}], "batch": [0]}, PlanError, "positive integer"),
    ({"recipes": [{"method": "global-l1"}], "seq_len": [4096]}, PlanError, "512"),
    ({"recipes": [{"method": "global-l1"}], "devices": ["tpu"]}, PlanError, "unknown device"),
    ({"recipes": []}, PlanError, "empty list"),
])
def test_bad_plans_are_refused_with_the_field_named(data, err, match):
    with pytest.raises(err, match=match):
        plan_from_dict(data)


def test_malformed_toml_is_a_plan_error(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("models = [minilm\n")
    with pytest.raises(PlanError, match="not valid TOML"):
        load_plan(p)


# -- threads: 0 is not "torch's default" (issue 20 §6) -------------------------------------------------------------------

@pytest.mark.parametrize("threads", [0, -1, True, "2", 1.5])
def test_threads_that_are_not_a_positive_integer_are_refused(threads):
    with pytest.raises(PlanError, match=r"threads must be a positive integer, got .*--threads 1 or more"):
        plan_from_dict({"recipes": [{"method": "dense"}], "threads": threads})


def test_threads_left_out_is_torchs_default_and_given_is_kept():
    import torch

    assert {c.threads for c in plan_from_dict({"recipes": [{"method": "dense"}]}).cases} == {torch.get_num_threads()}
    assert {c.threads for c in plan_from_dict({"recipes": [{"method": "dense"}], "threads": 3}).cases} == {3}


def test_cli_threads_0_exits_2_with_one_line_naming_the_fix(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    # the old code took 0 as torch's default and started measuring: the timeout keeps that from hanging the suite
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--threads", "0", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr[-500:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "threads must be a positive integer, got 0" in lines[0] and "--threads 1 or more" in lines[0]
    assert not (tmp_path / "run" / "records.jsonl").exists()


# -- the smoke budget (issue 21) ----------------------------------------------------------------------------------------

def test_only_the_quick_plan_has_a_smoke_budget_and_it_keeps_every_phase():
    """quality_items / memory_cases cap what --quick measures; no other built-in plan sets them, so no other plan's
    figures change; the quick plan still measures memory and quality."""
    from importlib import resources

    names = [p.name.removesuffix(".toml") for p in resources.files("bench").joinpath("plans").iterdir()
             if p.name.endswith(".toml")]
    assert "quick" in names and len(names) > 1
    for name in names:
        plan = builtin_plan(name)
        budget = (plan.quality_items, plan.memory_cases, plan.compress_cases)
        assert budget == ((50, 1, 1) if name == "quick" else (None, None, None)), name
    quick = builtin_plan("quick")
    assert quick.memory and quick.quality
    assert quick.memory_skipped(quick.cases[0]) is None
    assert all("memory_cases = 1" in quick.memory_skipped(c) for c in quick.cases[1:])
    assert quick.compress_skipped(quick.cases[0]) is None
    assert all("compress_cases = 1" in quick.compress_skipped(c) for c in quick.cases[1:])


def test_the_budget_keys_round_trip_and_without_them_every_case_measures_memory(tmp_path):
    d = {"recipes": [{"method": "global-l1", "sparsity": [0.25, 0.5]}], "runtimes": ["torch-dense"]}
    plan = plan_from_dict({**d, "quality_items": 30, "memory_cases": 1})
    plan.save(tmp_path / "plan.json")
    again = Plan.load_json(tmp_path / "plan.json")
    assert (again.quality_items, again.memory_cases) == (30, 1)
    assert [again.memory_skipped(c) is None for c in again.cases] == [True, False]
    whole = plan_from_dict(d)
    assert all(whole.memory_skipped(c) is None for c in whole.cases)
    off = plan_from_dict({**d, "memory": False, "memory_cases": 1})  # no memory at all: nothing to explain per case
    assert all(off.memory_skipped(c) is None for c in off.cases)


@pytest.mark.parametrize("key, value", [("quality_items", 0), ("quality_items", "50"), ("memory_cases", -1),
                                        ("memory_cases", True), ("compress_cases", 0), ("compress_cases", 1.5)])
def test_a_budget_key_that_is_not_a_positive_integer_is_refused_with_the_fix(key, value):
    with pytest.raises(PlanError, match=rf"{key} must be a positive integer, got .*; leave it out to"):
        plan_from_dict({"recipes": [{"method": "dense"}], key: value})
