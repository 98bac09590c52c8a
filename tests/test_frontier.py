"""The frontier: floors parse (task terms on the change vs dense, fidelity absolute), bisection finds the
highest passing sparsity of a monotone quality curve, bad floors exit 2, and the default plan puts
weight-norm and data-aware + recovered heads+ffn side by side."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.frontier import Floor, FrontierError, meets, parse_floor, search
from bench.measure.stats import Estimate
from bench.plan import builtin_plan
from pruning import PruneRecipe


def test_floor_parses_task_and_fidelity_terms():
    floors = parse_floor("r@1>=-0.02, cosine>=0.95")
    assert floors == (Floor("r@1", -0.02), Floor("cosine", 0.95))
    figures = {"r1": Estimate(0.70, 0.6, 0.8, drop=0.03), "cosine": Estimate(0.96, 0.95, 0.97)}
    ok, got = meets(floors, figures)
    assert not ok and got == {"r@1>=-0.02": pytest.approx(-0.03), "cosine>=0.95": 0.96}
    ok, _ = meets(floors, {**figures, "r1": Estimate(0.70, 0.6, 0.8, drop=0.01)})
    assert ok
    assert not meets(floors, {"cosine": Estimate(0.99, 0.98, 1.0)})[0]  # a missing figure fails its term


@pytest.mark.parametrize("text", ["", "r@1>-0.02", "bleu>=0.3", "cosine>=high"])
def test_bad_floors_are_refused(text):
    with pytest.raises(FrontierError):
        parse_floor(text)


@pytest.mark.parametrize("edge", [0.0, 0.33, 0.61, 0.95])
def test_bisection_finds_the_highest_passing_sparsity_of_a_monotone_curve(edge):
    def score(recipe):
        return {"cosine": Estimate(1.0 if recipe.sparsity <= edge else 0.5, 0, 1)}

    point = search(lambda s: PruneRecipe("heads+ffn", s), score, parse_floor("cosine>=0.9"), hi=0.9, steps=6)
    if edge >= 0.9:
        assert point.sparsity == 0.9 and len(point.trail) == 1
    elif edge < 0.9 / 64:
        assert point.sparsity is None
    else:
        assert point.sparsity <= edge and edge - point.sparsity <= 0.9 / 2 ** 6 + 1e-9
        assert all(t["passes"] == (t["sparsity"] <= edge) for t in point.trail)


def test_frontier_cli_bad_floor_exits_2_with_one_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "bench.cli", "frontier", "--floor", "bleu>=1", "--out", str(tmp_path / "f")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    assert p.stderr.count("prunebench: error:") == 1 and "unknown floor metric" in p.stderr and "Traceback" not in p.stderr


def test_default_plan_shows_weight_norm_and_data_aware_recovered_side_by_side():
    labels = {c.recipe.label for c in builtin_plan("default").cases}
    for s in ("0.25", "0.50"):
        assert {f"heads+ffn@{s}", f"heads+ffn[fisher]@{s}", f"heads+ffn[fisher,lstsq]@{s}"} <= labels
