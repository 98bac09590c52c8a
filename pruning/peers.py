"""Peer methods: other libraries' structured pruning, run through the same pipeline for a side-by-side row.

``torch-pruning`` uses Torch-Pruning's ``MetaPruner`` (optional package ``torch-pruning``, extra
``prunebench[peers]``) to remove whole attention heads and FFN neurons, never the hidden size, so the
output width stays comparable. Each layer is given exactly the head and neuron counts that our
``heads+ffn`` (uniform) keeps at the same sparsity, so both rows have the same parameter count and
differ only in which heads/neurons each library picks. Torch-Pruning removes weights itself: the
method's bake is the identity.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass

import torch
from torch import nn

from .registry import MethodConfig, register_method, register_transform
from .structured import layer_shapes, removal_counts, set_head_count
from .targets import discover

__all__ = ["TorchPruning"]

log = logging.getLogger("pruning.peers")


@dataclass(frozen=True)
class TorchPruning(MethodConfig):
    """Torch-Pruning's MetaPruner at our heads+ffn counts, its group importance by ``norm`` (l1 | l2 | random)."""

    norm: str | None = None


def _identity(model: nn.Module) -> nn.Module:
    return model


def _example_inputs(model: nn.Module, seq_len: int = 8) -> dict[str, torch.Tensor]:
    """A small keyword batch to trace the model with (token_type_ids explicit where accepted)."""
    vocab = discover(model).word_embeddings.num_embeddings
    ids = (torch.arange(seq_len).unsqueeze(0) * 7 + 3) % vocab
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if "token_type_ids" in inspect.signature(model.forward).parameters:
        inputs["token_type_ids"] = torch.zeros_like(ids)
    return inputs


def _normal_tensors(model: nn.Module) -> None:
    """Replace inference tensors (a model copied under ``torch.inference_mode``) by normal ones, which autograd can trace."""
    for mod in model.modules():
        for name, p in mod._parameters.items():
            if p is not None and p.is_inference():
                mod._parameters[name] = nn.Parameter(p.detach().clone(), requires_grad=True)
        for name, b in mod._buffers.items():
            if b is not None and b.is_inference():
                mod._buffers[name] = b.clone()


def _pruner(tp, model, importance, config, ffn_ratio, num_heads, head_ratio, ignored):
    """Torch-Pruning's MetaPruner set to remove whole heads (not head dims) and the given FFN fractions."""
    return tp.pruner.MetaPruner(
        model,
        _example_inputs(model),
        importance=importance,
        pruning_ratio=config.sparsity,  # only gates the attention groups; heads use head_pruning_ratio_dict
        pruning_ratio_dict=ffn_ratio,
        num_heads=num_heads,
        prune_num_heads=True,
        prune_head_dims=False,
        head_pruning_ratio=config.sparsity,
        head_pruning_ratio_dict=head_ratio,
        ignored_layers=ignored,
        output_transform=lambda out: out.last_hidden_state,
    )


@register_transform(TorchPruning)
def _torch_pruning(model: nn.Module, config: TorchPruning, calibration=None) -> nn.Module:
    import torch_pruning as tp

    t = discover(model)
    before = layer_shapes(model)
    keep = removal_counts(t, config.sparsity, ("heads", "ffn"))
    if config.sparsity > 0:
        if config.norm == "random":
            torch.manual_seed(config.seed)
            importance = tp.importance.RandomImportance()
        else:
            importance = tp.importance.GroupMagnitudeImportance(p=1 if config.norm == "l1" else 2)
        num_heads, head_ratio, ffn_ratio = {}, {}, {}
        for att, ffn, (h, f) in zip(t.attention, t.ffn, keep):
            # ratios half a unit below the target so Torch-Pruning's ceil()/int() land on exactly our counts
            hr = max(att.num_heads - h - 0.5, 0.0) / att.num_heads
            for lin in (att.query, att.key, att.value):
                num_heads[lin] = att.num_heads
                head_ratio[lin] = hr
            ffn_ratio[ffn.inp] = max(ffn.neurons - f - 0.5, 0.0) / ffn.neurons
        # ignoring the embeddings freezes the hidden-size group (it runs through every residual)
        ignored = list(t.embeddings) + [m for n, m in model.named_children() if n == "pooler" and m is not None]
        # Torch-Pruning traces autograd: leave any inference_mode/no_grad the caller runs under
        with torch.inference_mode(False), torch.enable_grad():
            _normal_tensors(model)
            pruner = _pruner(tp, model, importance, config, ffn_ratio, num_heads, head_ratio, ignored)
            pruner.step()
        for att in discover(model).attention:
            set_head_count(att.module, att.query.out_features // att.head_size, att.head_size)
    after = discover(model)
    model.prunebench_structure = [
        dict(num_heads=a.num_heads, head_indices=None, ffn_size=f.neurons,
             dense_num_heads=b["num_heads"], dense_ffn_size=b["ffn_size"])
        for a, f, b in zip(after.attention, after.ffn, before)
    ]
    got = [(a.num_heads, f.neurons) for a, f in zip(after.attention, after.ffn)]
    if got != keep:
        log.warning("torch-pruning kept (heads, neurons) %s per layer, heads+ffn keeps %s", got, keep)
    return model.eval()


register_method("torch-pruning", TorchPruning, pattern="heads+ffn", norms=("l1", "l2", "random"), default_norm="l1",
                scoped=False, structured=True, requires="torch_pruning", bake=_identity,
                help="peer: Torch-Pruning MetaPruner removes heads + FFN neurons to the parameter count of heads+ffn")
