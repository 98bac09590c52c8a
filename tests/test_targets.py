"""Target discovery finds every encoder's prunable weights from structure alone."""

from __future__ import annotations

import pytest
from torch import nn

from pruning import TargetError, discover, scope_params
from tests.conftest import TINY


def test_seed_scope_equals_the_tutorials_tuple_on_distilbert(tiny_models):
    model = tiny_models["tiny-distilbert"].model
    # the tutorial's hand-written tuple for DistilBERT
    expected = [(model.embeddings.word_embeddings, "weight")]
    for layer in model.transformer.layer:
        for lin in (layer.attention.q_lin, layer.attention.k_lin, layer.attention.v_lin):
            expected += [(lin, "weight"), (lin, "bias")]
    got = scope_params(model, "seed")
    assert [(id(m), n) for m, n in got] == [(id(m), n) for m, n in expected]


@pytest.mark.parametrize("name", TINY)
def test_discovery_finds_attention_and_ffn_of_every_layer(tiny_models, name):
    model = tiny_models[name].model
    t = discover(model)
    n_layers = model.config.num_hidden_layers if hasattr(model.config, "num_hidden_layers") else model.config.n_layers
    assert len(t.attention) == len(t.ffn) == n_layers
    for att, ffn in zip(t.attention, t.ffn):
        assert att.num_heads == 4 and att.head_size == 8
        assert ffn.inp.in_features == ffn.out.out_features == t.hidden_size == 32
        assert ffn.neurons == 64
    assert len(t.linears()) == 6 * n_layers


def test_bert_projections_are_named_as_expected(tiny_models):
    model = tiny_models["tiny-bert"].model
    t = discover(model)
    names = {id(m): n for n, m in model.named_modules()}
    att = t.attention[0]
    assert [names[id(x)] for x in (att.query, att.key, att.value, att.output)] == [
        "encoder.layer.0.attention.self.query",
        "encoder.layer.0.attention.self.key",
        "encoder.layer.0.attention.self.value",
        "encoder.layer.0.attention.output.dense",
    ]
    assert names[id(t.ffn[0].inp)] == "encoder.layer.0.intermediate.dense"
    assert names[id(t.ffn[0].out)] == "encoder.layer.0.output.dense"


@pytest.mark.parametrize("name", TINY)
def test_scopes_nest(tiny_models, name):
    model = tiny_models[name].model
    linear = {(id(m), n) for m, n in scope_params(model, "linear")}
    everything = {(id(m), n) for m, n in scope_params(model, "all")}
    assert linear < everything
    assert all(isinstance(m, nn.Embedding) for m, _ in scope_params(model, "all") if (id(m), _) not in linear)


def test_model_without_encoder_is_a_clear_error():
    with pytest.raises(TargetError, match="no stack of encoder layers"):
        discover(nn.Sequential(nn.Linear(4, 4), nn.ReLU()))


def test_unknown_scope_is_a_clear_error(tiny_models):
    with pytest.raises(TargetError, match="unknown scope"):
        scope_params(tiny_models["tiny-bert"].model, "everything")
