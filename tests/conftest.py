"""Shared fixtures: tiny seeded encoders of three architectures, and the real MiniLM (loaded once)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY = ("tiny-bert", "tiny-distilbert", "tiny-roberta")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_models():
    from bench.models import load_model

    return {name: load_model(name) for name in TINY}


@pytest.fixture(scope="session")
def minilm():
    from bench.models import load_model

    return load_model("minilm")
