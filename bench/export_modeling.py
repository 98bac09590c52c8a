"""The loader shipped inside every ``prunebench export --to hf`` directory whose layers were shrunk.

``bench.export_hf`` copies this file verbatim into the export as ``modeling_pruned.py`` and points the
config's ``auto_map`` at it; prunebench itself never imports it. It needs only torch and transformers, so
``transformers.AutoModel.from_pretrained(DIR, trust_remote_code=True)`` (and sentence-transformers with
``trust_remote_code=True``) rebuilds the pruned encoder without prunebench installed.

Why custom code at all: structured pruning leaves each layer with its own head count and FFN width, and a
plain config has one number of each for every layer. The config keeps the dense architecture and adds
``pruned_layers``: per layer, the dotted paths of its attention module, q/k/v and output projections and FFN
pair, with the kept head count, head size and FFN width. ``Pruned<Base>`` (e.g. ``PrunedBertModel``) builds
``<Base>`` from the config, then replaces those Linears by ones of the kept shapes before the weights load.
"""

from __future__ import annotations

from functools import lru_cache

import transformers
from torch import nn

_HEAD_COUNT_ATTRS = ("num_attention_heads", "n_heads", "num_heads")


def _resize(model: nn.Module, path: str, out_features: int | None = None, in_features: int | None = None) -> None:
    """Replace the Linear at ``path`` by one with the given widths (same dtype, device and bias)."""
    parent, _, name = path.rpartition(".")
    holder = model.get_submodule(parent) if parent else model
    old = getattr(holder, name)
    new = nn.Linear(in_features or old.in_features, out_features or old.out_features, bias=old.bias is not None,
                    device=old.weight.device, dtype=old.weight.dtype)
    setattr(holder, name, new)


def shrink(model: nn.Module, layers: list[dict]) -> None:
    """Cut each layer listed in ``layers`` (the config's ``pruned_layers``) to its kept heads and FFN width."""
    for spec in layers:
        width = int(spec["num_heads"]) * int(spec["head_size"])
        for path in spec["qkv"]:
            _resize(model, path, out_features=width)
        _resize(model, spec["attention_output"], in_features=width)
        attention = model.get_submodule(spec["attention"])
        for attr in _HEAD_COUNT_ATTRS:
            if isinstance(getattr(attention, attr, None), int):
                setattr(attention, attr, int(spec["num_heads"]))
        if isinstance(getattr(attention, "all_head_size", None), int):
            attention.all_head_size = width
        _resize(model, spec["ffn_in"], out_features=int(spec["ffn_size"]))
        _resize(model, spec["ffn_out"], in_features=int(spec["ffn_size"]))


@lru_cache(maxsize=None)
def _pruned(base_name: str) -> type:
    """``Pruned<base_name>``: transformers' ``base_name`` model class, shrunk per ``config.pruned_layers``."""
    base = getattr(transformers, base_name)

    class Pruned(base):
        def __init__(self, config, *args, **kwargs):
            super().__init__(config, *args, **kwargs)
            shrink(self, list(getattr(config, "pruned_layers", None) or []))

    Pruned.__name__ = Pruned.__qualname__ = f"Pruned{base_name}"
    return Pruned


def __getattr__(name: str) -> type:
    """``PrunedBertModel``, ``PrunedRobertaModel``, ...: the class the config's ``auto_map`` names."""
    if name.startswith("Pruned") and hasattr(transformers, name[len("Pruned"):]):
        return _pruned(name[len("Pruned"):])
    raise AttributeError(name)
