"""Kernel-friendly FFN widths: each layer keeps a multiple of ``multiple_of`` FFN neurons.

AMX tiles (16 x 32 bf16 / 16 x 64 int8) and OpenVINO's sparse-weight decompression work on channel blocks
of 16 to 64, so a width of 768 may run faster than one of 769 at the same sparsity. Structured pruning
(``heads+ffn``, ``ffn``) with ``multiple_of = m`` first allocates as usual, then rounds each layer's kept
neuron count to a multiple of m, choosing the rounding that keeps the achieved sparsity closest to the target:

- ``uniform``: each layer keeps the multiple of m nearest to ``size * (1 - sparsity)`` (a tie keeps more), so
  its FFN sparsity is within m / 2 neurons of the target;
- ``global``: each layer's count is floored to a multiple of m, then the multiples the floors lost go back,
  one per layer, to the layers that lost most (largest remainder), so the model's total is within m / 2
  neurons of the target and each layer within m of its global share.

Every layer keeps at least m (and at most the largest multiple of m it has); heads are whole already.
Which neurons go is unchanged: the lowest-scored, as without rounding.
"""

from __future__ import annotations

import logging

import torch

from .registry import RecipeError

__all__ = ["check_multiple", "keep_top", "rounded_counts"]

log = logging.getLogger("pruning.widths")


def check_multiple(value) -> None:
    """Refuse a ``multiple_of`` that is not a positive integer, with the fix."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RecipeError(f"multiple_of {value!r} must be a positive integer (each layer keeps a multiple of it of "
                          "FFN neurons), e.g. 16 or 64; use 1 for no rounding")


def _nearest(x: float, m: int, cap: int) -> int:
    """The multiple of ``m`` nearest to ``x`` (a tie takes the larger), within [m, cap]."""
    lo = int(x // m) * m
    pick = lo + m if x - lo >= lo + m - x else lo
    return min(max(pick, m), cap)


def rounded_counts(sizes: list[int], counts: list[int], sparsity: float, multiple: int, allocation: str) -> list[int]:
    """Per layer, how many FFN neurons to keep: a multiple of ``multiple`` close to ``counts`` (what the
    allocation kept) such that the achieved sparsity stays as close as possible to ``sparsity``."""
    m = multiple
    if min(sizes) < m:
        small = sizes.index(min(sizes))
        raise RecipeError(f"layer {small} has {sizes[small]} FFN neurons, fewer than multiple_of {m}; "
                          f"use a multiple_of of at most {sizes[small]}")
    caps = [n // m * m for n in sizes]
    if allocation == "uniform":
        return [_nearest(n * (1 - sparsity), m, cap) for n, cap in zip(sizes, caps)]
    out = [min(max(c // m * m, m), cap) for c, cap in zip(counts, caps)]
    extra = round((sum(sizes) * (1 - sparsity) - sum(out)) / m)
    by_loss = sorted(range(len(out)), key=lambda i: (-(counts[i] - out[i]), i))
    for i in by_loss if extra > 0 else reversed(by_loss):
        if extra > 0 and out[i] + m <= caps[i]:
            out[i], extra = out[i] + m, extra - 1
        elif extra < 0 and out[i] - m >= m:
            out[i], extra = out[i] - m, extra + 1
    if extra:
        log.warning("multiple_of %d: %d multiples off the target total (every layer keeps between %d and its size)",
                    m, extra, m)
    return out


def keep_top(scores: list[torch.Tensor], counts: list[int]) -> list[list[int]]:
    """Per layer, the indices of its ``counts[i]`` highest-scored neurons (the lowest-scored go first, ties by
    index, as the allocation removes them), in index order."""
    out = []
    for s, k in zip(scores, counts):
        gone = set(torch.argsort(s, stable=True)[: len(s) - k].tolist())
        out.append([j for j in range(len(s)) if j not in gone])
    return out
