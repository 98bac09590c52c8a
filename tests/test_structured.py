"""Structured pruning really shrinks: removed heads/neurons compute exactly what masking them did, the
shrunk model saves and reloads with the same outputs, counts per layer are exact, FLOPs follow the
shapes, and the Torch-Pruning peer lands on the same parameter count."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from bench import cli
from bench.measure.flops import macs
from bench.models import load_model
from pruning import PruneRecipe, RecipeError, apply, bake, discover
from pruning.structured import layer_shapes, removed_fraction, save_pruned

ARCHS = ("tiny-bert", "tiny-distilbert", "tiny-roberta")
METHODS = ("heads", "ffn", "heads+ffn")
HAS_TP = importlib.util.find_spec("torch_pruning") is not None


@pytest.fixture(scope="module")
def models():
    return {name: load_model(name) for name in ARCHS}


def _out(model, inputs) -> torch.Tensor:
    with torch.inference_mode():
        return model.eval()(**inputs).last_hidden_state


def _counts(model) -> list[tuple[int, int]]:
    t = discover(model)
    return [(a.num_heads, f.neurons) for a, f in zip(t.attention, t.ffn)]


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("allocation", ["uniform", "global"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("arch", ARCHS)
def test_shrunk_model_equals_masked_model(models, arch, method, allocation):
    loaded = models[arch]
    recipe = PruneRecipe(method, 0.5, allocation=allocation)
    inputs = loaded.batch(2, 16)
    masked = apply(loaded.fresh(), recipe)
    shrunk = bake(apply(loaded.fresh(), recipe))
    assert (_out(shrunk, inputs) - _out(masked, inputs)).abs().max() <= 1e-5
    assert _params(shrunk) < loaded.params
    assert not any(k.endswith("_mask") or k.endswith("_orig") for k in shrunk.state_dict())
    assert removed_fraction(shrunk) == removed_fraction(masked) == pytest.approx(0.5)


@pytest.mark.minilm
def test_shrunk_minilm_equals_masked_minilm(minilm):
    loaded = minilm
    recipe = PruneRecipe("heads+ffn", 0.5)
    inputs = loaded.batch(2, 32)
    shrunk = bake(apply(loaded.fresh(), recipe))
    assert (_out(shrunk, inputs) - _out(apply(loaded.fresh(), recipe), inputs)).abs().max() <= 1e-5
    assert _counts(shrunk) == [(6, 768)] * 6


@pytest.mark.parametrize("arch", ARCHS)
def test_save_and_reload_gives_identical_outputs(models, arch, tmp_path):
    loaded = models[arch]
    shrunk = bake(apply(loaded.fresh(), PruneRecipe("heads+ffn", 0.5, allocation="global")))
    save_pruned(shrunk, tmp_path / "m", loaded.tokenizer, weights=loaded.weights)
    back = load_model(str(tmp_path / "m"))
    inputs = loaded.batch(2, 16)
    assert torch.equal(_out(back.model, inputs), _out(shrunk, inputs))
    assert _counts(back.model) == _counts(shrunk)
    assert back.weights == "random-init" and back.arch == loaded.arch
    block = json.loads((tmp_path / "m" / "config.json").read_text())["prunebench"]
    assert [(x["num_heads"], x["ffn_size"]) for x in block["layers"]] == _counts(shrunk)
    assert [len(x["head_indices"]) for x in block["layers"]] == [h for h, _ in _counts(shrunk)]


def test_plain_model_directory_is_not_a_structured_checkpoint(models, tmp_path):
    from transformers import AutoConfig

    from pruning.structured import load_pruned

    models["tiny-bert"].model.save_pretrained(str(tmp_path))
    assert load_pruned(tmp_path, AutoConfig.from_pretrained(str(tmp_path))) is None


@pytest.mark.parametrize("sparsity, kept", [(0.25, (3, 48)), (0.5, (2, 32)), (0.75, (1, 16))])
@pytest.mark.parametrize("arch", ARCHS)
def test_uniform_allocation_keeps_exact_counts_in_every_layer(models, arch, sparsity, kept):
    shrunk = bake(apply(models[arch].fresh(), PruneRecipe("heads+ffn", sparsity)))
    assert _counts(shrunk) == [kept, kept]


def test_global_allocation_ranks_across_layers_and_keeps_one_head_per_layer(models):
    model = models["tiny-bert"].fresh()
    t = discover(model)
    with torch.no_grad():  # layer 0's heads are weaker than layer 1's, layer 1's neurons weaker than layer 0's
        for lin in (t.attention[0].query, t.attention[0].key, t.attention[0].value, t.attention[0].output):
            lin.weight.mul_(1e-3)
        t.ffn[1].inp.weight.mul_(1e-3)
        t.ffn[1].out.weight.mul_(1e-3)
    shrunk = bake(apply(model, PruneRecipe("heads+ffn", 0.5, allocation="global")))
    # 4 of 8 heads go: 3 from layer 0 (it must keep one), then the weakest of layer 1;
    # 64 of 128 neurons go: 63 from layer 1 (it must keep one), then the weakest of layer 0
    assert _counts(shrunk) == [(1, 63), (3, 1)]


@pytest.mark.parametrize("allocation", ["uniform", "global"])
def test_every_layer_keeps_a_head_and_a_neuron_at_high_sparsity(models, allocation):
    loaded = models["tiny-distilbert"]
    recipe = PruneRecipe("heads+ffn", 0.99, allocation=allocation)
    shrunk = bake(apply(loaded.fresh(), recipe))
    assert all(h >= 1 and f >= 1 for h, f in _counts(shrunk))
    inputs = loaded.batch(2, 16)
    assert (_out(shrunk, inputs) - _out(apply(loaded.fresh(), recipe), inputs)).abs().max() <= 1e-5


@pytest.mark.parametrize("bad, match", [
    (dict(allocation="diagonal"), "takes allocation uniform, global"),
    (dict(norm="l3"), "takes norm l1, l2, random"),
    (dict(sparsity=1.0), "outside"),
    (dict(scope="nonsense"), "unknown scope"),
])
def test_bad_structured_recipes_are_clear_errors(bad, match):
    with pytest.raises(RecipeError, match=match):
        PruneRecipe(**{"method": "heads+ffn", "sparsity": 0.5, **bad})


def test_structured_sparsity_is_the_fraction_of_groups_removed(models):
    loaded = models["tiny-bert"]
    assert removed_fraction(apply(loaded.fresh(), PruneRecipe("heads", 0.25))) == pytest.approx(0.25)
    assert removed_fraction(bake(apply(loaded.fresh(), PruneRecipe("ffn", 0.25)))) == pytest.approx(0.25)
    shapes = layer_shapes(bake(apply(loaded.fresh(), PruneRecipe("heads+ffn", 0.25))))
    assert [(s["num_heads"], s["dense_num_heads"], s["ffn_size"], s["dense_ffn_size"]) for s in shapes] == [(3, 4, 48, 64)] * 2
    # heads+ffn counts each kind equally: at 0.99 each layer keeps 1 of 4 heads (0.75) and 1 of 64 neurons (63/64)
    assert removed_fraction(bake(apply(loaded.fresh(), PruneRecipe("heads+ffn", 0.99)))) == pytest.approx((0.75 + 63 / 64) / 2)


def test_flops_of_a_shrunk_model_match_a_hand_count(models):
    loaded = models["tiny-bert"]
    recipe = PruneRecipe("heads+ffn", 0.5)
    shrunk = bake(apply(loaded.fresh(), recipe))
    b, s = 2, 16
    # per layer and token: 2 heads x 8 = 16 wide; q,k,v 3x32x16, output 16x32, FFN 2x32x32; scores + context 2 x s x 16
    per_token = 2 * (3 * 32 * 16 + 16 * 32 + 2 * 32 * 32 + 2 * s * 16)
    assert macs(shrunk, b, s) == macs(shrunk, b, s, nonzero=False) == b * s * per_token
    assert macs(apply(loaded.fresh(), recipe), b, s) == b * s * per_token  # masked heads do no counted work
    dense = b * s * 2 * (4 * 32 * 32 + 2 * 32 * 64 + 2 * s * 32)
    assert macs(loaded.model, b, s, nonzero=False) == dense


@pytest.mark.parametrize("arch", ["tiny-bert", "tiny-distilbert"])
def test_discovery_finds_projections_of_a_shrunk_model(models, arch):
    # at 0.5 the FFN is 32 wide = hidden, so every Linear of the layer is square again
    shrunk = bake(apply(models[arch].fresh(), PruneRecipe("heads+ffn", 0.5)))
    names = {id(m): n.rsplit(".", 1)[-1] if arch == "tiny-distilbert" else ".".join(n.split(".")[-2:]) for n, m in shrunk.named_modules()}
    t = discover(shrunk)
    att, ffn = t.attention[0], t.ffn[0]
    got = [names[id(x)] for x in (att.query, att.key, att.value, att.output, ffn.inp, ffn.out)]
    if arch == "tiny-distilbert":
        assert got == ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"]
    else:
        assert got == ["self.query", "self.key", "self.value", "output.dense", "intermediate.dense", "output.dense"]
    assert (att.query.out_features, att.output.in_features, ffn.inp.out_features) == (16, 16, 32)


@pytest.mark.skipif(not HAS_TP, reason="torch-pruning is not installed (pip install 'prunebench[peers]')")
@pytest.mark.parametrize("arch", ["tiny-bert", "tiny-distilbert"])
def test_torch_pruning_peer_matches_our_parameter_count(models, arch):
    loaded = models[arch]
    ours = bake(apply(loaded.fresh(), PruneRecipe("heads+ffn", 0.5)))
    with torch.inference_mode():  # as the engine builds its reference outputs
        peer = bake(apply(loaded.fresh(), PruneRecipe("torch-pruning", 0.5)))
    assert _params(peer) == pytest.approx(_params(ours), rel=1e-3)
    assert _counts(peer) == _counts(ours)
    assert _out(peer, loaded.batch(2, 16)).shape[-1] == 32  # hidden size untouched
    assert removed_fraction(peer) == pytest.approx(0.5)


def test_peer_without_its_package_is_skipped_with_the_reason(monkeypatch):
    from bench.engine import Session
    from bench.plan import Case

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch_pruning" else real(name, *a))
    case = Case("tiny-bert", PruneRecipe("torch-pruning", 0.5), "torch-dense")
    reason = Session.unavailable(None, case)
    assert reason is not None and "torch_pruning" in reason and "prunebench[peers]" in reason


def test_prune_cli_writes_a_directory_that_run_loads(tmp_path):
    out = tmp_path / "pruned"
    assert cli.main(["prune", "--model", "tiny-distilbert", "--method", "heads+ffn", "--sparsity", "0.5", "--out", str(out)]) == 0
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    run = tmp_path / "run"
    assert cli.main(["run", "--model", str(out), "--methods", "heads+ffn", "--sparsity", "0.5", "--runtimes", "torch-masked,torch-dense",
                     "--batch", "2", "--seq-len", "16", "--time-cap", "0.3", "--threads", "1", "--no-memory", "--out", str(run)]) == 0
    recs = [json.loads(x) for x in (run / "records.jsonl").read_text().splitlines()]
    assert [x["status"] for x in recs] == ["ok", "ok"]
    masked, dense = sorted(recs, key=lambda x: x["runtime"] != "torch-masked")
    assert masked["sparsity_actual"] == dense["sparsity_actual"] == pytest.approx(0.5)
    assert dense["params"] < masked["params"] and dense["flops_ratio"] == pytest.approx(masked["flops_ratio"])
    assert dense["max_abs_diff"] <= 1e-5
    assert "Structured pruning against the FLOP limit" in (run / "report.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["--sparsity", "1.5"], "outside [0, 1)"),
    (["--allocation", "diagonal"], "takes allocation uniform, global"),
])
def test_prune_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, args, message):
    code = cli.main(["prune", "--model", "tiny-bert", "--method", "heads+ffn", "--sparsity", "0.5", "--out", str(tmp_path / "x"), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_prune_cli_onnx_format_writes_a_checked_onnx_file(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "pruned"
    assert cli.main(["prune", "--model", "tiny-bert", "--method", "heads+ffn", "--sparsity", "0.5", "--out", str(out), "--format", "onnx"]) == 0
    assert (out / "model.onnx").is_file() and (out / "model.safetensors").is_file()
    assert "ONNX Runtime matches torch" in capsys.readouterr().out


def test_prune_cli_refuses_a_directory_that_holds_files(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    assert cli.main(["prune", "--model", "tiny-bert", "--method", "heads", "--sparsity", "0.5", "--out", str(tmp_path)]) == 2
    assert "not an empty directory" in capsys.readouterr().err
