"""Method configs: one frozen, self-checking dataclass per family, dispatched on its type; the PruneRecipe
short form keeps its label, dict and equality; a method's own knob needs its module only."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.nn.utils import prune

from bench.plan import Case, plan_from_dict
from pruning import (METHODS, NM, Depth, PruneRecipe, RecipeError, RecoveryConfig, Structured, TorchPruning, Unstructured,
                     apply, bake, register_method, register_transform, scope_params)
from pruning.registry import TRANSFORMS, MethodConfig
from pruning.unstructured import sparsity_of


@pytest.mark.parametrize("recipe, family", [
    (PruneRecipe("global-l1", 0.5), Unstructured), (PruneRecipe("wanda", 0.5), Unstructured),
    (PruneRecipe("2:4"), NM), (PruneRecipe("heads+ffn", 0.5), Structured), (PruneRecipe("layers", 0.5), Depth),
    (PruneRecipe("torch-pruning", 0.5), TorchPruning),
])
def test_each_method_is_configured_by_its_family(recipe, family):
    assert type(recipe.config) is family
    assert recipe.spec.config is family
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.config.sparsity = 0.1  # type: ignore[misc]


@pytest.mark.parametrize("recipe, expected", [
    (PruneRecipe("global-l1", 0.5),
     {"method": "global-l1", "sparsity": 0.5, "scope": "linear", "norm": None, "allocation": None, "seed": 0}),
    (PruneRecipe("2:4"), {"method": "2:4", "sparsity": 0.5, "scope": "linear", "norm": None, "allocation": None, "seed": 0}),
    (PruneRecipe("heads+ffn", 0.5, importance="fisher", recover="lstsq"),
     {"method": "heads+ffn", "sparsity": 0.5, "scope": "linear", "norm": "l1", "allocation": "uniform", "seed": 0,
      "importance": "fisher", "recover": "lstsq"}),
    (PruneRecipe("layers", 0.5, allocation="top", calibration=64),
     {"method": "layers", "sparsity": 0.5, "scope": "linear", "norm": None, "allocation": "top", "seed": 0, "calibration": 64}),
])
def test_to_dict_is_the_flat_dict_fingerprints_hash(recipe, expected):
    assert recipe.to_dict() == expected
    assert list(recipe.to_dict()) == list(expected)  # key order too
    assert PruneRecipe.from_dict(recipe.to_dict()) == recipe


def test_labels_list_every_non_default_knob_in_order():
    r = PruneRecipe("heads+ffn", 0.5, norm="l2", allocation="global", seed=2, importance="fisher",
                    recover="lstsq+distill", fit="scales", calibration=64, recover_seconds=30)
    assert r.label == "heads+ffn[l2,global,seed2,fisher,lstsq-scales+distill,cal64,30s]@0.50"
    assert PruneRecipe("global-random", 0.2, scope="all", seed=3).label == "global-random[all,seed3]@0.20"
    assert PruneRecipe("dense", scope="all").label == "dense@0.00"  # dense has no scope to show


def test_the_long_form_is_the_short_form():
    short = PruneRecipe("heads+ffn", 0.5, importance="fisher", recover="lstsq", fit="scales")
    long = PruneRecipe.of(Structured("heads+ffn", 0.5, importance="fisher"), RecoveryConfig("lstsq", fit="scales"))
    assert long == short and hash(long) == hash(short) and {short: 1}[long] == 1
    assert long.config == short.config and long.recovery == short.recovery


@pytest.mark.parametrize("make, match", [
    (lambda: Structured("heads", 0.5, allocation="diagonal"), "takes allocation uniform, global, not 'diagonal'"),
    (lambda: Structured("global-l1", 0.5), "configured by Unstructured, not Structured"),
    (lambda: Unstructured("wanda", 0.5, scope="all"), "takes scope linear, not 'all'"),
    (lambda: NM("2:4", importance="fisher"), "takes importance magnitude, wanda, not 'fisher'"),
    (lambda: Depth("layers", 1.0), r"outside \[0, 1\)"),
    (lambda: RecoveryConfig("lstsq", fit="exact"), "unknown lstsq fit 'exact'"),
    (lambda: RecoveryConfig("distil"), "did you mean 'distill'"),
    (lambda: PruneRecipe("2:4", norm="l2"), "takes norm none"),
    (lambda: PruneRecipe("heads", 0.5, options={"block": 4}), "has no option 'block'"),
])
def test_configs_check_themselves_with_one_line_errors(make, match):
    with pytest.raises(RecipeError, match=match) as exc:
        make()
    assert "\n" not in str(exc.value)


@dataclasses.dataclass(frozen=True)
class _Blocky(MethodConfig):
    """A method with a knob of its own: masks whole blocks of ``block`` consecutive weights of each row."""

    block: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.block, int) or self.block < 1:
            raise RecipeError(f"block {self.block!r} must be a positive integer")


def _blocky(model, config: _Blocky, calibration=None):
    for module, name in scope_params(model, "linear"):
        w = getattr(module, name).detach()
        rows, cols = w.shape
        score = w.abs().reshape(rows, cols // config.block, config.block).sum(-1)
        drop = round(config.sparsity * score.shape[1])
        keep = torch.ones_like(score, dtype=torch.bool)
        keep.scatter_(1, score.argsort(dim=1, stable=True)[:, :drop], False)
        prune.custom_from_mask(module, name, keep.repeat_interleave(config.block, dim=1))
    return model


@pytest.fixture
def blocky():
    """Register the method for one test only (the registry is global)."""
    register_transform(_Blocky)(_blocky)
    register_method("test-blocky", _Blocky, pattern="unstructured", help="test: blocks of weights by L1", scoped=False)
    yield
    METHODS.pop("test-blocky")
    TRANSFORMS.pop(_Blocky)


def test_a_new_knob_lives_in_its_method_module_only(blocky, tiny_models):
    recipe = PruneRecipe("test-blocky", 0.5, options={"block": 4})
    assert recipe.config == _Blocky("test-blocky", 0.5, block=4)
    assert recipe.label == "test-blocky[block4]@0.50"
    assert recipe.to_dict()["block"] == 4 and PruneRecipe.from_dict(recipe.to_dict()) == recipe
    assert PruneRecipe("test-blocky", 0.5).label == "test-blocky@0.50"  # the default is not shown
    with pytest.raises(RecipeError, match="block 0 must be a positive integer"):
        PruneRecipe("test-blocky", 0.5, options={"block": 0})
    plan = plan_from_dict({"models": ["tiny-bert"], "runtimes": ["torch-masked"],
                           "recipes": [{"method": "test-blocky", "sparsity": 0.5, "block": 4}]})
    assert [c.recipe for c in plan.cases] == [recipe]
    assert Case.from_dict(plan.cases[0].to_dict()) == plan.cases[0]
    model = bake(apply(tiny_models["tiny-bert"].fresh(), recipe))
    assert sparsity_of(scope_params(model, "linear")) == 0.5
    w = scope_params(model, "linear")[0][0].weight
    blocks = (w.reshape(w.shape[0], -1, 4) != 0).any(-1)
    assert ((w.reshape(w.shape[0], -1, 4) != 0).all(-1) == blocks).all()  # whole blocks go
    from bench import steps
    from bench.records import Record

    rec = Record.from_parts(steps.describe("test", plan.cases[0]))  # no Record field for the knob: the dict holds it
    assert rec.recipe == "test-blocky[block4]@0.50" and rec.recipe_config["block"] == 4 and not hasattr(rec, "block")
