"""Models load by name or directory; inputs are fixed, seeded, real text."""

from __future__ import annotations

import pytest
import torch

from bench.models import ModelError, load_model, resolve_model, sentences


def test_bundled_sentence_set_is_large_and_unique():
    s = sentences()
    assert len(s) >= 200
    assert len(set(s)) == len(s)


def test_fixed_batch_has_exact_shape_and_no_padding(tiny_models):
    b = tiny_models["tiny-bert"].batch(8, 128)
    assert b["input_ids"].shape == (8, 128)
    assert bool(b["attention_mask"].all())
    assert torch.equal(b["input_ids"], tiny_models["tiny-bert"].batch(8, 128)["input_ids"])
    assert not torch.equal(b["input_ids"], tiny_models["tiny-bert"].batch(8, 128, seed=1)["input_ids"])


def test_token_type_ids_are_explicit_where_the_model_takes_them(tiny_models):
    assert "token_type_ids" in tiny_models["tiny-bert"].batch(2, 16)
    assert "token_type_ids" not in tiny_models["tiny-distilbert"].batch(2, 16)


def test_random_init_is_seeded_and_marked():
    a, b = load_model("tiny-bert"), load_model("tiny-bert")
    assert a.weights == "random-init"
    assert all(torch.equal(x, y) for x, y in zip(a.model.parameters(), b.model.parameters()))


def test_minilm_is_pretrained(minilm):
    assert minilm.weights == "pretrained" and minilm.arch == "bert"
    assert minilm.config.hidden_size == 384 and minilm.config.num_hidden_layers == 6


def test_local_directory_round_trip(tmp_path, tiny_models):
    src = tiny_models["tiny-roberta"]
    src.model.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    inputs = src.batch(2, 16)
    with torch.inference_mode():
        assert torch.allclose(src.model(**inputs).last_hidden_state, loaded.model(**inputs).last_hidden_state)


@pytest.mark.parametrize("name, match", [
    ("bert-huge", "unknown model 'bert-huge'"),
    ("minilm2", "did you mean 'minilm'"),
    ("/no/such/dir", "does not exist"),
])
def test_bad_model_names_are_clear_errors(name, match):
    with pytest.raises(ModelError, match=match):
        resolve_model(name)


def test_directory_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_broken_config_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(str(tmp_path))
