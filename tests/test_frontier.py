"""The frontier: floors parse (task terms on the change vs dense, fidelity absolute), the search runs over the
levels a method reaches (exact on a discrete non-monotone curve, bisection on a fine monotone one) and reports
achieved sparsity, bad floors exit 2, and the default plan puts
weight-norm and data-aware + recovered heads+ffn side by side."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.frontier import Floor, FrontierError, levels, meets, parse_floor, search
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


MINILM = dict(heads=[12] * 6, neurons=[1536] * 6)  # MiniLM-L6's shape


@pytest.mark.parametrize("edge", [0.0, 0.33, 0.61, 0.95])
def test_bisection_finds_the_highest_passing_level_of_a_monotone_curve(edge):
    """FFN neurons reach ~1,400 levels: more than steps + 1, so they are bisected (a monotone curve)."""
    def score(recipe):
        return {"cosine": Estimate(1.0 if recipe.sparsity <= edge + 1e-9 else 0.5, 0, 1)}

    reach = levels("ffn", "uniform", hi=0.9, **MINILM)
    point = search(lambda s: PruneRecipe("ffn", s), score, parse_floor("cosine>=0.9"), reach, steps=6)
    assert point.how == "bisect" and len(point.trail) <= 7
    if edge >= 0.9:
        assert point.sparsity == reach[-1][1] and len(point.trail) == 1
    elif edge < 0.9 / 64:
        assert point.sparsity is None
    else:
        assert point.sparsity <= edge + 1e-6 and edge - point.sparsity <= 0.9 / 2 ** 6 + 1e-3
        assert all(t["passes"] == (t["target"] <= edge + 1e-9) for t in point.trail)


def test_discrete_levels_are_what_a_method_reaches_and_never_the_dense_model():
    """layers@0.23 removes 1 of 6 layers (0.167) and layers@0.05 none: the levels are k/6, each with the target
    that reaches it, and 0 is not one of them; heads are whole heads per layer (uniform) or across layers."""
    assert [a for _, a in levels("layers", "importance", hi=0.9, **MINILM)] == [round(k / 6, 6) for k in range(1, 6)]
    assert levels("layers", "top", hi=0.05, **MINILM) == []
    assert [a for _, a in levels("heads", "uniform", hi=0.9, **MINILM)] == [round(h / 12, 6) for h in range(1, 11)]
    assert len(levels("heads", "global", hi=0.99, **MINILM)) == 6 * 11
    assert [a for _, a in levels("heads+ffn", "uniform", hi=0.9, **MINILM)][:2] == [round(1 / 12, 6), round(2 / 12, 6)]
    with pytest.raises(FrontierError, match="reachable sparsity"):
        search(lambda s: PruneRecipe("layers", s), lambda r: {}, parse_floor("cosine>=0.9"), [], steps=5)


def test_a_discrete_non_monotone_method_gets_its_highest_passing_level_reported_as_achieved():
    """Removing 3 of 6 layers passes while removing 2 fails (a non-monotone curve bisection would miss): the
    levels are few, so each is tried from the top down, and the point is the achieved 0.5, not a target."""
    passing = {1, 3}  # layers removed that keep the floor

    def score(recipe):
        removed = min(round(recipe.sparsity * 6), 5)
        assert removed >= 1  # no dense-equivalent target is ever scored
        return {"cosine": Estimate(0.99 if removed in passing else 0.5, 0, 1)}

    reach = levels("layers", "top", hi=0.9, **MINILM)
    point = search(lambda s: PruneRecipe("layers", s, allocation="top"), score, parse_floor("cosine>=0.95"), reach, steps=5)
    assert point.how == "scan" and point.sparsity == 0.5 and point.target == pytest.approx(0.5)
    assert [t["sparsity"] for t in point.trail] == [round(k / 6, 6) for k in (5, 4, 3)]
    assert point.label == PruneRecipe("layers", 0.5, allocation="top").label
    bisected = search(lambda s: PruneRecipe("layers", s, allocation="top"), score, parse_floor("cosine>=0.95"), reach, steps=1)
    assert bisected.how == "bisect"  # with too small a budget it may miss the level; the point says how it searched


def test_frontier_cli_bad_floor_exits_2_with_one_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "bench.cli", "frontier", "--floor", "bleu>=1", "--out", str(tmp_path / "f")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    assert p.stderr.count("prunebench: error:") == 1 and "unknown floor metric" in p.stderr and "Traceback" not in p.stderr


def test_study_plan_shows_weight_norm_and_data_aware_recovered_side_by_side():
    labels = {c.recipe.label for c in builtin_plan("study").cases}
    for s in ("0.25", "0.50"):
        assert {f"heads+ffn@{s}", f"heads+ffn[fisher]@{s}", f"heads+ffn[fisher,lstsq]@{s}"} <= labels


def test_recovery_section_puts_unrecovered_and_recovered_side_by_side_without_nan():
    """Rows from a DataFrame carry NaN where a field is absent (an unrecovered variant has no calibration
    size): the cell reads "–", never "nan"."""
    from bench.report import frame
    from bench.report.structured import recovery_section

    base = {"status": "ok", "pattern": "heads+ffn", "runtime": "torch-dense", "sparsity_target": 0.5,
            "latency_ratio": 0.55, "latency_ratio_lo": 0.5, "latency_ratio_hi": 0.6, "quality_cosine": 0.5,
            "quality_r1": 0.7, "quality_r1_drop": 0.16, "quality_probe_acc": 0.94, "quality_probe_drop": 0.0}
    recs = [{**base, "recipe": "heads+ffn@0.50", "importance": "magnitude", "recovery_method": "none"},
            {**base, "recipe": "heads+ffn[fisher,lstsq]@0.50", "importance": "fisher", "recovery_method": "lstsq",
             "recovery_seconds": 12.0, "calibration_size": 256, "quality_cosine": 0.85}]
    text = "\n".join(recovery_section(frame(recs)))
    assert "| heads+ffn@0.50 | torch-dense | 0.55 [0.50, 0.60] | 0.500 |" in text
    assert text.count("| 12 | 256 |") == 1 and "nan" not in text


def test_distillation_loss_plot_is_drawn_and_linked_only_when_a_variant_was_distilled(tmp_path):
    from bench.report import frame
    from bench.report.section_plots import DISTILL_PLOT, distill_plot
    from bench.report.structured import recovery_section

    base = {"status": "ok", "pattern": "heads+ffn", "runtime": "torch-dense", "sparsity_target": 0.5, "latency_ratio": 0.5,
            "latency_ratio_lo": 0.45, "latency_ratio_hi": 0.55, "importance": "fisher"}
    plain = [{**base, "recipe": "heads+ffn@0.50", "importance": "magnitude", "recovery_method": "none"},
             {**base, "recipe": "heads+ffn[fisher,lstsq]@0.50", "recovery_method": "lstsq"}]
    assert distill_plot(frame(plain)) is None
    distilled = plain + [{**base, "recipe": "heads+ffn[fisher,lstsq+distill,2s]@0.50", "recovery_method": "lstsq+distill",
                          "distill_seconds": 2.0, "distill_loss": [0.5, 0.3, 0.2, 0.15]}]
    assert distill_plot(frame(distilled)) is not None
    link = f"plots/{DISTILL_PLOT}"
    assert f"![distillation loss]({link})" in "\n".join(recovery_section(frame(distilled), link))
    assert "distillation loss" not in "\n".join(recovery_section(frame(plain)))
    from bench.report.plots import save

    assert save(distill_plot(frame(distilled)), tmp_path / link).stat().st_size > 0
    assert save(distill_plot(frame(plain)), tmp_path / link) is None and not (tmp_path / link).exists()
