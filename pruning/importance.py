"""Scores for attention heads, FFN neurons and whole layers: which groups a structured recipe removes.

``magnitude`` reads the weights only (the norm of a head's q/k/v rows and output columns, of a
neuron's input row and output column). The data-aware scores read a ``Calibration``:

- ``activation``: the mean size of what the group puts out on the calibration tokens (a head's
  context vector L2 norm, a neuron's |activation|), times the norm of the output-projection columns
  it is multiplied by, so a loud group whose weights ignore it does not count as important.
- ``fisher`` (after Kwon et al. 2022): a mask of ones is put on every head and neuron (multiplying
  the output projection's input) and the squared gradient of a label-free loss w.r.t. each mask entry
  is summed over calibration sequences. The loss is the distance of the masked model's mean-pooled
  embedding to the dense model's. At the all-ones mask the masked model *is* dense, so the plain
  distance has a zero gradient; the loss is therefore measured to a target drawn around the dense
  embedding (dense + seeded unit Gaussian noise), which makes the squared gradient an unbiased
  estimate of ``sum_k (d emb_k / d mask_g)^2`` — the Fisher information of a Gaussian model of the
  embedding, the label-free analogue of Kwon's. One sequence at a time, so the estimate sums
  independent terms (padding is trimmed, too).
- ``layer_scores``: for depth pruning, the same label-free loss (1 - cosine of mean-pooled
  embeddings to dense) with one layer skipped, per layer.

``input_norms`` gives ``||X_j||_2`` per input column of Linears, what Wanda multiplies |W| by.
Every score is deterministic for a fixed model, calibration set and seed.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

import torch
from torch import nn

from .calibration import Calibration, capture, mean_pool, tokens_of
from .registry import RecipeError
from .targets import AttentionBlock, EncoderTargets, FFNBlock, discover, layer_stack

__all__ = ["IMPORTANCES", "group_masks", "group_scores", "input_norms", "layer_scores", "skip_hooks", "skip_layers"]

log = logging.getLogger("pruning.importance")

IMPORTANCES = ("magnitude", "activation", "fisher")


# -- magnitude ---------------------------------------------------------------------------------
def _norm(w: torch.Tensor, norm: str) -> torch.Tensor:
    w = w.float()
    return w.abs().sum(dim=1) if norm == "l1" else w.pow(2).sum(dim=1).sqrt()


def head_magnitude(att: AttentionBlock, norm: str, gen: torch.Generator) -> torch.Tensor:
    """One score per head: the norm of its q/k/v weight rows and output-projection columns."""
    n, d = att.num_heads, att.head_size
    if norm == "random":
        return torch.rand(n, generator=gen)
    rows = torch.cat([lin.weight.detach().reshape(n, -1) for lin in (att.query, att.key, att.value)], dim=1)
    cols = att.output.weight.detach().reshape(att.output.out_features, n, d).transpose(0, 1).reshape(n, -1)
    return _norm(torch.cat([rows, cols], dim=1), norm)


def neuron_magnitude(ffn: FFNBlock, norm: str, gen: torch.Generator) -> torch.Tensor:
    """One score per FFN neuron: the norm of its input row and output column."""
    if norm == "random":
        return torch.rand(ffn.neurons, generator=gen)
    w = torch.cat([ffn.inp.weight.detach(), ffn.out.weight.detach().t()], dim=1)
    return _norm(w, norm)


# -- masks on the groups -----------------------------------------------------------------------
@contextlib.contextmanager
def group_masks(t: EncoderTargets, heads: list[torch.Tensor] | None, neurons: list[torch.Tensor] | None) -> Iterator[None]:
    """Multiply each head's context slice / each neuron's activation by its mask entry while the block
    runs (a forward pre-hook on the output projection), so gradients w.r.t. the masks can be taken."""
    handles = []

    def make(mask: torch.Tensor, repeat: int):
        def pre(_mod, args):
            m = mask.repeat_interleave(repeat) if repeat > 1 else mask
            return (args[0] * m.to(args[0].dtype),) + tuple(args[1:])
        return pre

    try:
        for i, (att, ffn) in enumerate(zip(t.attention, t.ffn)):
            if heads is not None:
                handles.append(att.output.register_forward_pre_hook(make(heads[i], att.head_size)))
            if neurons is not None:
                handles.append(ffn.out.register_forward_pre_hook(make(neurons[i], 1)))
        yield
    finally:
        for h in handles:
            h.remove()


def _sequences(calibration: Calibration) -> Iterator[dict[str, torch.Tensor]]:
    """Each calibration sequence alone, its padding removed."""
    for b in calibration.batches:
        for i in range(b["input_ids"].shape[0]):
            keep = b["attention_mask"][i].bool()
            yield {k: v[i][keep].unsqueeze(0) for k, v in b.items()}


def _fisher(model: nn.Module, t: EncoderTargets, calibration: Calibration, kinds: tuple[str, ...], seed: int) -> dict[str, list[torch.Tensor]]:
    dev = next(model.parameters()).device
    heads = [torch.ones(a.num_heads, device=dev, requires_grad=True) for a in t.attention] if "heads" in kinds else None
    neurons = [torch.ones(f.neurons, device=dev, requires_grad=True) for f in t.ffn] if "ffn" in kinds else None
    masks = (heads or []) + (neurons or [])
    acc = [torch.zeros_like(m, dtype=torch.float64) for m in masks]
    gen = torch.Generator().manual_seed(seed)
    grads = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    was_training = model.training
    model.eval()
    try:
        with group_masks(t, heads, neurons):
            for seq in _sequences(calibration):
                seq = {k: v.to(dev) for k, v in seq.items()}
                emb = mean_pool(model(**seq).last_hidden_state.float(), seq["attention_mask"])
                noise = torch.randn(emb.shape, generator=gen).to(dev)
                loss = 0.5 * (emb - (emb.detach() + noise)).pow(2).sum()
                for a, g in zip(acc, torch.autograd.grad(loss, masks)):
                    a += g.double().pow(2)
    finally:
        for p, g in zip(model.parameters(), grads):
            p.requires_grad_(g)
        model.train(was_training)
    out: dict[str, list[torch.Tensor]] = {}
    n_heads = len(heads) if heads is not None else 0
    if heads is not None:
        out["heads"] = [a.float().cpu() for a in acc[:n_heads]]
    if neurons is not None:
        out["ffn"] = [a.float().cpu() for a in acc[n_heads:]]
    return out


def _activation(model: nn.Module, t: EncoderTargets, calibration: Calibration, kinds: tuple[str, ...]) -> dict[str, list[torch.Tensor]]:
    dev = next(model.parameters()).device
    mods = {f"att{i}": a.output for i, a in enumerate(t.attention)} | {f"ffn{i}": f.out for i, f in enumerate(t.ffn)}
    sums: dict[str, torch.Tensor] = {}
    count = 0
    with torch.no_grad():
        for b in calibration.batches:
            b = {k: v.to(dev) for k, v in b.items()}
            with capture(mods) as got:
                model(**b)
            mask = b["attention_mask"]
            count += int(mask.sum())
            for k, c in got.items():
                x = tokens_of(c.inputs[0][0].float(), mask)
                if k.startswith("att"):  # a head's output: the L2 norm of its context slice
                    att = t.attention[int(k[3:])]
                    x = x.reshape(x.shape[0], att.num_heads, att.head_size).norm(dim=-1)
                sums[k] = sums.get(k, 0) + x.abs().sum(dim=0).double().cpu()
    out: dict[str, list[torch.Tensor]] = {}
    if "heads" in kinds:
        scores = []
        for i, a in enumerate(t.attention):
            act = (sums[f"att{i}"] / count).float()
            w = a.output.weight.detach().float().reshape(a.output.out_features, a.num_heads, a.head_size)
            scores.append(act * w.pow(2).sum(dim=(0, 2)).sqrt())
        out["heads"] = scores
    if "ffn" in kinds:
        out["ffn"] = [(sums[f"ffn{i}"] / count).float() * f.out.weight.detach().float().norm(dim=0) for i, f in enumerate(t.ffn)]
    return out


_SCORES: dict[tuple, tuple[Calibration, dict[str, list[torch.Tensor]]]] = {}
_SCORES_KEPT = 8


def _signature(model: nn.Module) -> tuple:
    """A cheap fingerprint of a model's weights (shape and sum of every tensor)."""
    with torch.no_grad():
        return tuple((tuple(p.shape), round(float(p.double().sum()), 6)) for p in model.state_dict().values() if p.is_floating_point())


def group_scores(model: nn.Module, kinds: tuple[str, ...], importance: str, norm: str | None = "l1",
                 calibration: Calibration | None = None, seed: int = 0) -> dict[str, list[torch.Tensor]]:
    """Per kind (``heads``, ``ffn``), one score tensor per layer: higher means keep.

    ``importance`` is ``magnitude`` (uses ``norm``: l1 | l2 | random), ``activation`` or ``fisher``
    (both need ``calibration``; run on the dense model before any group is removed). Data-aware
    scores are kept for the same weights, calibration set and seed, so the sparsities of one
    recipe (and its recovered twin) pay for them once."""
    if importance not in IMPORTANCES:
        raise RecipeError(f"unknown importance {importance!r}; choose one of {', '.join(IMPORTANCES)}")
    t = discover(model)
    if importance == "magnitude":
        gen = torch.Generator().manual_seed(seed)
        out = {}
        if "heads" in kinds:
            out["heads"] = [head_magnitude(a, norm or "l1", gen) for a in t.attention]
        if "ffn" in kinds:
            out["ffn"] = [neuron_magnitude(f, norm or "l1", gen) for f in t.ffn]
        return out
    if calibration is None:
        raise RecipeError(f"importance {importance!r} needs a calibration set; pass calibration= or use importance 'magnitude'")
    key = (id(calibration), kinds, importance, seed, _signature(model))
    hit = _SCORES.get(key)
    if hit is not None and hit[0] is calibration:
        return {k: [x.clone() for x in v] for k, v in hit[1].items()}
    log.info("%s importance of %s on %d calibration sequences", importance, "+".join(kinds), calibration.size)
    out = _fisher(model, t, calibration, kinds, seed) if importance == "fisher" else _activation(model, t, calibration, kinds)
    if len(_SCORES) >= _SCORES_KEPT:
        _SCORES.pop(next(iter(_SCORES)))
    _SCORES[key] = (calibration, out)
    return {k: [x.clone() for x in v] for k, v in out.items()}


# -- layers ------------------------------------------------------------------------------------
def skip_hooks(model: nn.Module, layers: set[int]) -> list:
    """Make the given encoder layers pass their input through unchanged; returns the hook handles."""
    def hook(_mod, args, out):
        if isinstance(out, tuple):
            return (args[0],) + tuple(out[1:])
        return args[0]

    stack = layer_stack(model)
    return [stack[i].register_forward_hook(hook) for i in sorted(layers)]


@contextlib.contextmanager
def skip_layers(model: nn.Module, layers: set[int]) -> Iterator[None]:
    """``skip_hooks`` while the block runs."""
    handles = skip_hooks(model, layers)
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _embed(model: nn.Module, calibration: Calibration) -> list[torch.Tensor]:
    dev = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for b in calibration.batches:
            b = {k: v.to(dev) for k, v in b.items()}
            out.append(mean_pool(model(**b).last_hidden_state.float(), b["attention_mask"]).cpu())
    return out


def layer_scores(model: nn.Module, calibration: Calibration) -> torch.Tensor:
    """Per encoder layer, the label-free loss with that layer skipped: mean (1 - cosine) of the
    mean-pooled embeddings to the full model's over the calibration set. Higher means keep."""
    dense = _embed(model, calibration)
    scores = []
    for i in range(len(layer_stack(model))):
        with skip_layers(model, {i}):
            got = _embed(model, calibration)
        cos = torch.cat([torch.nn.functional.cosine_similarity(a, b, dim=-1) for a, b in zip(got, dense)])
        scores.append(float((1 - cos).mean()))
    return torch.tensor(scores)


# -- Wanda -------------------------------------------------------------------------------------
def input_norms(model: nn.Module, linears: list[nn.Linear], calibration: Calibration) -> list[torch.Tensor]:
    """``||X_j||_2`` for every input column j of each Linear, over all non-padding calibration tokens."""
    dev = next(model.parameters()).device
    mods = {str(i): lin for i, lin in enumerate(linears)}
    sq = [torch.zeros(lin.in_features, dtype=torch.float64) for lin in linears]
    with torch.no_grad():
        for b in calibration.batches:
            b = {k: v.to(dev) for k, v in b.items()}
            with capture(mods) as got:
                model(**b)
            for i, c in enumerate(got.values()):
                for args in c.inputs:
                    x = args[0]
                    x = tokens_of(x, b["attention_mask"]) if x.dim() == 3 and x.shape[:2] == b["attention_mask"].shape else x.reshape(-1, x.shape[-1])
                    sq[i] += x.double().pow(2).sum(dim=0).cpu()
    return [s.sqrt().float() for s in sq]
