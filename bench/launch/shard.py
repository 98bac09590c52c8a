"""Sharding a plan over machines: ``--shard i/n`` picks the cases whose id hashes to shard i.

Light on purpose (no torch import), so a bad ``--shard`` is refused in a fraction of a second.
"""

from __future__ import annotations

import hashlib

__all__ = ["ShardError", "format_shard", "in_shard", "parse_shard"]


class ShardError(ValueError):
    """A shard spec that is not ``i/n`` with ``1 <= i <= n``."""


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with shards numbered 1..n; raises ShardError naming the fix."""
    parts = str(text).strip().split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ShardError(f"--shard {text!r} is not i/n; pass e.g. --shard 2/8 for the second of eight shards")
    i, n = int(parts[0]), int(parts[1])
    if n < 1 or not 1 <= i <= n:
        raise ShardError(f"--shard {text}: shards are numbered 1..{max(n, 1)}; pass --shard i/n with 1 <= i <= n")
    return i, n


def format_shard(shard: tuple[int, int]) -> str:
    return f"{shard[0]}/{shard[1]}"


def in_shard(case_id: str, i: int, n: int) -> bool:
    """Whether ``case_id`` belongs to shard ``i`` of ``n`` (1-based).

    A hash of the case id alone decides, so a case keeps its shard when other cases are added to or
    removed from the plan, and every machine computes the same split without talking to the others.
    The price: shard sizes are balanced only on average (a small grid can leave a shard empty).
    """
    h = int(hashlib.sha256(case_id.encode("utf-8")).hexdigest()[:16], 16)
    return h % n == i - 1
