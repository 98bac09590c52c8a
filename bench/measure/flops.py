"""Theoretical compute: multiply-accumulates of the encoder per forward, dense vs nonzero.

Counts every encoder Linear (nonzero weights only, so masks and zeros count as removed work) and the
attention score and context matmuls (seq x heads x head_size each, per token). Embedding lookups,
LayerNorm and softmax are left out: they are small and pruning does not touch them.
"""

from __future__ import annotations

from torch import nn

from pruning import discover

__all__ = ["macs"]


def macs(model: nn.Module, batch: int, seq_len: int, nonzero: bool = True) -> int:
    """MACs of one forward on a ``batch x seq_len`` input; ``nonzero`` counts only nonzero weights."""
    t = discover(model)
    per_token = 0
    for lin in t.linears():
        w = lin.weight
        per_token += int((w != 0).sum()) if nonzero else w.numel()
    for att in t.attention:
        per_token += 2 * seq_len * att.query.out_features
    return per_token * batch * seq_len
