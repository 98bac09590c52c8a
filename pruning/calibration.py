"""A calibration set (tokenized batches of real text) and the hooks data-aware pruning reads it with.

Data-aware importance (activation, Fisher, Wanda) and recovery (least squares, distillation) see the
model only through a ``Calibration``: a few hundred sequences, tokenized once by the model's own
tokenizer, padded per batch. The caller picks the text; it must never be the text quality is scored
on. ``capture`` records what chosen modules receive and return during forwards, ``run_until`` stops
a forward as soon as a module has run (layer-by-layer work needs only the layers below),
``first_layer_inputs`` / ``run_layer`` / ``run_layers`` carry the calibration batches up the encoder
layer by layer (each layer's inputs stored, so fitting layer i costs one layer's forward, not i), and
``mean_pool`` is the sentence embedding every label-free loss compares.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn

from .registry import RecipeError
from .targets import layer_stack

__all__ = ["Calibration", "Capture", "LayerInputs", "StopForward", "capture", "first_layer_inputs", "mean_pool", "run_layer",
           "run_layers", "run_until", "tokens_of"]

log = logging.getLogger("pruning.calibration")


@dataclass(frozen=True)
class Calibration:
    """Tokenized calibration batches: each a dict of ``input_ids`` / ``attention_mask`` (and whatever
    else the tokenizer returns), on CPU. ``size`` counts sequences."""

    batches: tuple[dict[str, torch.Tensor], ...]

    def __post_init__(self) -> None:
        if not self.batches:
            raise RecipeError("the calibration set is empty; pass at least one text")
        for b in self.batches:
            if "input_ids" not in b or "attention_mask" not in b:
                raise RecipeError("a calibration batch needs input_ids and attention_mask")

    @property
    def size(self) -> int:
        return sum(int(b["input_ids"].shape[0]) for b in self.batches)

    @property
    def tokens(self) -> int:
        """Non-padding tokens over all batches."""
        return sum(int(b["attention_mask"].sum()) for b in self.batches)

    @classmethod
    def from_texts(cls, texts: Sequence[str], tokenizer, seq_len: int = 128, batch_size: int = 16) -> "Calibration":
        """Tokenize ``texts`` (truncated to ``seq_len`` tokens, padded per batch) into batches."""
        if not texts:
            raise RecipeError("the calibration set is empty; pass at least one text")
        if seq_len < 2 or batch_size < 1:
            raise RecipeError(f"calibration seq_len {seq_len} / batch_size {batch_size}: need seq_len >= 2, batch_size >= 1")
        batches = []
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(list(texts[i:i + batch_size]), padding=True, truncation=True, max_length=seq_len, return_tensors="pt")
            batches.append({k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")})
        return cls(tuple(batches))


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors under the attention mask: the sentence embedding losses compare."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


def tokens_of(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The non-padding rows of a (batch, seq, features) tensor, as (tokens, features)."""
    return x[mask.bool()]


class StopForward(Exception):
    """Raised by ``run_until``'s hook to end a forward once the module of interest has run."""


@dataclass
class Capture:
    """What one module received (positional ``args``) and returned, per call, in call order."""

    inputs: list[tuple]
    outputs: list


@contextlib.contextmanager
def capture(modules: dict[str, nn.Module], detach: bool = True) -> Iterator[dict[str, Capture]]:
    """Record every call's positional inputs and output of each named module while the block runs."""
    got = {name: Capture([], []) for name in modules}
    handles = []

    def make(name: str):
        def hook(_mod, args, out):
            c = got[name]
            if detach:
                args = tuple(a.detach() if torch.is_tensor(a) else a for a in args)
                out = out.detach() if torch.is_tensor(out) else out
            c.inputs.append(args)
            c.outputs.append(out)
        return hook

    try:
        for name, mod in modules.items():
            handles.append(mod.register_forward_hook(make(name)))
        yield got
    finally:
        for h in handles:
            h.remove()


def run_until(model: nn.Module, batch: dict[str, torch.Tensor], stop_after: nn.Module | None) -> None:
    """Run ``model`` on ``batch`` (no grad), ending the forward right after ``stop_after`` has run."""
    if stop_after is None:
        with torch.no_grad():
            model(**batch)
        return

    def hook(*_):
        raise StopForward

    h = stop_after.register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(**batch)
    except StopForward:
        pass
    finally:
        h.remove()


LayerInputs = list[tuple[tuple, dict]]  # per calibration batch: the (args, kwargs) a layer is called with


def first_layer_inputs(model: nn.Module, calibration: Calibration) -> LayerInputs:
    """What the model's first encoder layer is called with, per calibration batch (the forward stops there)."""
    first = layer_stack(model)[0]
    got: LayerInputs = []

    def pre(_mod, args, kwargs):
        got.append((tuple(a.detach() if torch.is_tensor(a) else a for a in args), dict(kwargs)))
        raise StopForward

    dev = next(model.parameters()).device
    h = first.register_forward_pre_hook(pre, with_kwargs=True)
    try:
        for b in calibration.batches:
            try:
                with torch.no_grad():
                    model(**{k: v.to(dev) for k, v in b.items()})
            except StopForward:
                pass
    finally:
        h.remove()
    return got


def run_layer(block: nn.Module, inputs: LayerInputs, watch: dict[str, nn.Module] | None = None) -> tuple[LayerInputs, list[dict]]:
    """Run one layer on stored inputs: the next layer's inputs, and per batch what ``watch``'s modules got
    (``name -> (first positional input, output)``)."""
    nxt: LayerInputs = []
    seen: list[dict] = []
    for args, kwargs in inputs:
        with torch.no_grad(), capture(watch or {}) as got:
            out = block(*args, **kwargs)
        hidden = out[0] if isinstance(out, tuple) else out
        nxt.append(((hidden,) + tuple(args[1:]), kwargs))
        seen.append({k: (c.inputs[0][0], c.outputs[0]) for k, c in got.items()})
    return nxt, seen


def run_layers(stack: nn.ModuleList, inputs: LayerInputs, pos: int, until: int) -> tuple[LayerInputs, int]:
    """Run layers ``pos .. until - 1`` of ``stack`` on ``inputs``: the inputs of layer ``until``, and ``until``."""
    while pos < until:
        inputs, _ = run_layer(stack[pos], inputs)
        pos += 1
    return inputs, pos
