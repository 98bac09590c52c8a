"""Theoretical compute: multiply-accumulates of the encoder per forward, dense vs nonzero.

Counts every encoder Linear (nonzero weights only, so masks and zeros count as removed work) and the
attention score and context matmuls (seq x heads x head_size each, per token). Widths are read off
the modules, so a shrunk model (heads or FFN neurons removed) is counted as it is; with ``nonzero``,
a head whose q/k/v rows and output columns are all zero (masked away) does no attention work either,
so masked and shrunk variants of one structured recipe count the same. Embedding lookups, LayerNorm
and softmax are left out: they are small and pruning does not touch them.
"""

from __future__ import annotations

import torch
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
        heads = _live_heads(att) if nonzero else att.num_heads
        per_token += 2 * seq_len * heads * att.head_size
    return per_token * batch * seq_len


def _live_heads(att) -> int:
    """Heads with any nonzero weight in their q/k/v rows or output-projection columns."""
    n = att.num_heads
    live = torch.zeros(n, dtype=torch.bool)
    for lin in (att.query, att.key, att.value):
        live |= (lin.weight.detach() != 0).reshape(n, -1).any(dim=1)
    live |= (att.output.weight.detach() != 0).reshape(att.output.out_features, n, -1).any(dim=2).any(dim=0)
    return int(live.sum())
