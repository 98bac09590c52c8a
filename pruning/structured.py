"""Structured pruning: remove whole attention heads and FFN neurons, so the matrices really shrink.

``apply`` masks the chosen heads (q/k/v rows and biases, output-projection columns) and FFN neurons
(input row and bias, output column) with ``torch.nn.utils.prune``, which buys nothing at run time;
``bake`` then removes them physically: the Linears are sliced and each attention module's head count
is set (head size unchanged), so transformers' ``.view(..., -1, head_size)`` sees fewer heads.
Sparsity is the fraction of heads / neurons removed; every layer keeps at least one of each.
``save_pruned`` / ``load_pruned`` write and read a directory whose config.json records per-layer
head indices and counts and FFN sizes (a ``prunebench`` block) beside model.safetensors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune

from .importance import group_scores
from .masks import remove_masks
from .registry import MethodConfig, RecipeError, register_method, register_transform
from .shapes import kept_from_masks, layer_shapes, removed_fraction
from .targets import AttentionBlock, EncoderTargets, FFNBlock, discover
from .widths import check_multiple, keep_top, rounded_counts

__all__ = ["FORMAT", "Structured", "bake", "layer_shapes", "load_pruned", "removal_counts", "removed_fraction", "save_pruned", "set_head_count", "shrink_layer"]

log = logging.getLogger("pruning.structured")

FORMAT = 1  # version of the ``prunebench`` block in config.json
_HEAD_COUNT_ATTRS = ("num_attention_heads", "n_heads", "num_heads")


# -- allocation --------------------------------------------------------------------------------
def _allocate(scores: list[torch.Tensor], sparsity: float, allocation: str) -> list[list[int]]:
    """Kept indices per layer. ``uniform``: remove ``round(s * n)`` of each layer; ``global``: remove
    ``round(s * total)`` lowest-scored across layers. Either way every layer keeps at least one."""
    removed: list[set[int]] = [set() for _ in scores]
    if allocation == "uniform":
        for i, s in enumerate(scores):
            r = min(round(sparsity * len(s)), len(s) - 1)
            removed[i] = set(torch.argsort(s, stable=True)[:r].tolist())
    elif allocation == "global":
        total = sum(len(s) for s in scores)
        target = round(sparsity * total)
        order = sorted((float(v), layer, j) for layer, s in enumerate(scores) for j, v in enumerate(s.tolist()))
        left = [len(s) for s in scores]
        n = 0
        for _, layer, j in order:
            if n >= target:
                break
            if left[layer] > 1:
                removed[layer].add(j)
                left[layer] -= 1
                n += 1
        if n < target:
            log.warning("global allocation removed %d of %d requested groups: every layer keeps one", n, target)
    else:
        raise RecipeError(f"unknown allocation {allocation!r}; choose uniform or global")
    return [[j for j in range(len(s)) if j not in removed[i]] for i, s in enumerate(scores)]


def removal_counts(t: EncoderTargets, sparsity: float, kinds: tuple[str, ...]) -> list[tuple[int, int]]:
    """Per layer, how many (heads, neurons) a uniform recipe keeps: what the Torch-Pruning peer targets."""
    keep = []
    for att, ffn in zip(t.attention, t.ffn):
        h, f = att.num_heads, ffn.neurons
        if "heads" in kinds:
            h -= min(round(sparsity * h), h - 1)
        if "ffn" in kinds:
            f -= min(round(sparsity * f), f - 1)
        keep.append((h, f))
    return keep


# -- masking (apply) ---------------------------------------------------------------------------
def _mask(module: nn.Linear, keep: torch.Tensor, dim: int) -> None:
    """Mask rows (dim 0, with the bias) or columns (dim 1) of a Linear where ``keep`` is False."""
    w = module.weight
    k = keep.to(device=w.device, dtype=w.dtype)
    prune.custom_from_mask(module, "weight", torch.ones_like(w) * (k[:, None] if dim == 0 else k[None, :]))
    if dim == 0 and module.bias is not None:
        prune.custom_from_mask(module, "bias", k.clone())


def _keep_vector(kept: list[int], n: int, size: int = 1) -> torch.Tensor:
    keep = torch.zeros(n, dtype=torch.bool)
    keep[kept] = True
    return keep.repeat_interleave(size)


@dataclass(frozen=True)
class Structured(MethodConfig):
    """Whole heads and/or FFN neurons (``heads``, ``ffn``, ``heads+ffn``): scored by ``importance``
    (``magnitude`` with ``norm`` l1 | l2 | random, or data-aware ``activation`` / ``fisher``), allocated
    ``uniform``ly per layer or ``global``ly across layers. ``multiple_of`` > 1 rounds each layer's kept FFN
    width to a multiple of it, the achieved sparsity as close to the target as that allows (``pruning.widths``:
    AMX tiles and OpenVINO's sparse decompression want channel multiples of 16 to 64)."""

    norm: str | None = None
    allocation: str | None = None
    importance: str | None = None
    multiple_of: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_multiple(self.multiple_of)
        if self.multiple_of != 1 and "ffn" not in self.kinds:
            raise RecipeError(f"method {self.method!r} removes no FFN neurons, so multiple_of {self.multiple_of} "
                              "rounds nothing (heads are whole already); leave it out or use ffn or heads+ffn")

    @property
    def kinds(self) -> tuple[str, ...]:
        """The groups it removes: ``("heads",)``, ``("ffn",)`` or both."""
        return tuple(self.spec.pattern.split("+"))


@register_transform(Structured)
def _prune(model: nn.Module, config: Structured, calibration=None) -> nn.Module:
    kinds = config.kinds
    t = discover(model)
    scores = group_scores(model, kinds, config.importance, config.norm, calibration, config.seed)
    if "heads" in kinds:
        kept = _allocate(scores["heads"], config.sparsity, config.allocation)
        for att, k in zip(t.attention, kept):
            rows = _keep_vector(k, att.num_heads, att.head_size)
            for lin in (att.query, att.key, att.value):
                _mask(lin, rows, 0)
            _mask(att.output, rows, 1)
    if "ffn" in kinds:
        kept = _allocate(scores["ffn"], config.sparsity, config.allocation)
        if config.multiple_of > 1:
            counts = rounded_counts([f.neurons for f in t.ffn], [len(k) for k in kept], config.sparsity,
                                    config.multiple_of, config.allocation)
            kept = keep_top(scores["ffn"], counts)
        for ffn, k in zip(t.ffn, kept):
            rows = _keep_vector(k, ffn.neurons)
            _mask(ffn.inp, rows, 0)
            _mask(ffn.out, rows, 1)
    return model


# -- physical removal (bake) -------------------------------------------------------------------
def _slice(lin: nn.Linear, idx: torch.Tensor, dim: int) -> None:
    """Keep rows (dim 0, with the bias) or columns (dim 1) ``idx`` of a Linear, in place."""
    idx = idx.to(lin.weight.device)
    lin.weight = nn.Parameter(lin.weight.detach().index_select(dim, idx).clone(), requires_grad=lin.weight.requires_grad)
    if dim == 0:
        if lin.bias is not None:
            lin.bias = nn.Parameter(lin.bias.detach()[idx].clone(), requires_grad=lin.bias.requires_grad)
        lin.out_features = len(idx)
    else:
        lin.in_features = len(idx)


def set_head_count(module: nn.Module, heads: int, head_size: int) -> None:
    """Tell an attention module it has ``heads`` heads (head-count attributes, ``all_head_size``)."""
    for name in _HEAD_COUNT_ATTRS:
        if isinstance(getattr(module, name, None), int):
            setattr(module, name, heads)
    if isinstance(getattr(module, "all_head_size", None), int):
        module.all_head_size = heads * head_size


def shrink_layer(att: AttentionBlock, ffn: FFNBlock, heads: list[int], neurons: list[int]) -> None:
    """Physically keep only ``heads`` of the attention and ``neurons`` of the FFN of one layer."""
    if not heads or not neurons:
        raise RecipeError(f"layer {att.layer} would keep no head or no FFN neuron; every layer keeps at least one")
    d = att.head_size
    if len(heads) != att.num_heads:
        rows = torch.tensor([h * d + i for h in heads for i in range(d)], dtype=torch.long)
        for lin in (att.query, att.key, att.value):
            _slice(lin, rows, 0)
        _slice(att.output, rows, 1)
        set_head_count(att.module, len(heads), d)
    if len(neurons) != ffn.neurons:
        idx = torch.tensor(neurons, dtype=torch.long)
        _slice(ffn.inp, idx, 0)
        _slice(ffn.out, idx, 1)


def bake(model: nn.Module) -> nn.Module:
    """Remove the masked heads and neurons physically; the result computes what the masked model did."""
    shapes = layer_shapes(model)
    t = discover(model)
    kept = kept_from_masks(t) or [(list(range(a.num_heads)), list(range(f.neurons))) for a, f in zip(t.attention, t.ffn)]
    remove_masks(model)
    for att, ffn, (heads, neurons) in zip(t.attention, t.ffn, kept):
        shrink_layer(att, ffn, heads, neurons)
    model.prunebench_structure = shapes
    return model


_COMMON = dict(norms=("l1", "l2", "random"), default_norm="l1", allocations=("uniform", "global"), scoped=False,
               structured=True, bake=bake, importances=("magnitude", "activation", "fisher"), data_aware=("activation", "fisher"))


register_method("heads", Structured, pattern="heads", **_COMMON,
                help="whole attention heads by importance (weight norm of q/k/v rows + output columns, activation or Fisher); removed on bake")
register_method("ffn", Structured, pattern="ffn", **_COMMON,
                help="whole FFN neurons by importance (weight norm of input row + output column, activation or Fisher); removed on bake; multiple_of N keeps a multiple of N per layer")
register_method("heads+ffn", Structured, pattern="heads+ffn", **_COMMON,
                help="attention heads and FFN neurons together (the same fraction of each); removed on bake; multiple_of N keeps a multiple of N FFN neurons per layer")


# -- save and reload ---------------------------------------------------------------------------
def save_pruned(model: nn.Module, out: Path | str, tokenizer=None, weights: str | None = None) -> Path:
    """Write ``model`` (shrunk or not) as model.safetensors + config.json with a ``prunebench`` block
    (recipe, ``weights``: pretrained | random-init, and for structured recipes the per-layer shapes)."""
    out = Path(out)
    recipe = getattr(model, "prunebench_recipe", None)
    block: dict = {"format": FORMAT, "recipe": recipe.to_dict() if recipe is not None else None, "weights": weights}
    if recipe is not None and recipe.spec.structured:
        block["layers"] = layer_shapes(model)
    model.config.prunebench = block
    try:
        model.save_pretrained(str(out))
    finally:
        del model.config.prunebench
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
    return out


def load_pruned(path: Path | str, config) -> nn.Module | None:
    """Rebuild a structured checkpoint written by ``save_pruned``: the config's architecture with each
    layer cut to its recorded head count and FFN size, then its weights. None if ``path`` is not one."""
    block = getattr(config, "prunebench", None)
    if not isinstance(block, dict) or not block.get("layers"):
        return None
    from safetensors.torch import load_file
    from transformers import AutoModel

    if block.get("format") != FORMAT:
        raise ValueError(f"{path}: prunebench block format {block.get('format')!r} is not {FORMAT}; re-save with this prunebench")
    layers = block["layers"]
    model = AutoModel.from_config(config)
    t = discover(model)
    if len(layers) != len(t.attention):
        raise ValueError(f"{path}: config.json records {len(layers)} pruned layers but the architecture has {len(t.attention)}")
    for att, ffn, s in zip(t.attention, t.ffn, layers):
        shrink_layer(att, ffn, list(range(int(s["num_heads"]))), list(range(int(s["ffn_size"]))))
    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        raise OSError(f"{path} has no *.safetensors weights")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    model.load_state_dict(state, strict=True)
    model.prunebench_structure = [dict(s) for s in layers]
    if block.get("recipe"):
        log.info("loaded %s pruned with %s", path, block["recipe"])
    return model.eval()

