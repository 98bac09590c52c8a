"""The paired latency protocol: balanced blocks, identical GC state on both sides, and a stopping rule
whose 95% CI keeps its coverage.

- Warm-up pairs, alternating which side runs first; their duration sizes the blocks.
- A block is an even number of pairs, baseline first in one and variant first in the next (ABAB of
  pairs = A B B A A B ...), so a side that is slower when it runs first is not favoured. Before each
  block the garbage collector runs, and it stays disabled for the whole block: both sides see the
  same GC state. Every path (in process, isolated child) times through this one function.
- Stopping: the CI is looked at only at pre-planned times (``LOOK_FRACTIONS`` of the time cap), and
  each look spends a fixed share of alpha = 0.05 (``LOOK_SHARES``, Bonferroni over looks); the last
  analysis (time cap, once ``MIN_BLOCKS`` blocks are in, or max rounds) spends what is left. By the union bound, the interval a case ends
  with covers the true ratio with probability >= 95% whatever look it stopped at
  (tests/test_latency_protocol.py checks this by simulation). A look stops timing when the verdict
  is decided (no precision target) or when the CI half-width is within the target (``ci_target``:
  the CI plan's gate needs a precise figure).
"""

from __future__ import annotations

import gc
import logging
import math
import time
from typing import Callable

from .latency import BAND, Latency

__all__ = ["LOOK_FRACTIONS", "LOOK_SHARES", "MIN_BLOCKS", "block_pairs_for", "measure_paired"]

log = logging.getLogger("bench.measure.paired")

LOOK_FRACTIONS = (0.25, 0.5, 0.75)  # interim looks, as fractions of the time cap (the last analysis is at the cap)
LOOK_SHARES = (0.1, 0.2, 0.3)  # share of alpha each interim look spends; the last analysis spends the rest (>= 0.4)
MIN_BLOCKS = 3  # a look needs this many blocks (a t interval on 2 is nearly unbounded); the cap waits for them
BLOCK_S = 0.25  # a block lasts about this long (seconds), so its ratio averages out per-call jitter
BLOCKS_PER_CAP = 12
MAX_BLOCK_PAIRS = 16


def block_pairs_for(pair_s: float | None, time_cap_s: float) -> int:
    """Pairs per block: the smallest even count lasting about ``BLOCK_S``, or a ``BLOCKS_PER_CAP``-th of the
    time cap if that is shorter (so a short cap still gives blocks to compute a CI over); 2 to ``MAX_BLOCK_PAIRS``."""
    if not pair_s or pair_s <= 0:
        return 2
    block_s = min(BLOCK_S, time_cap_s / BLOCKS_PER_CAP)
    return int(min(MAX_BLOCK_PAIRS, max(2, 2 * math.ceil(block_s / (2 * pair_s)))))


def _block(variant: Callable[[], float], baseline: Callable[[], float], pairs: int, v: list[float], b: list[float],
           collect: Callable[[], object]) -> None:
    """Time ``pairs`` pairs, alternating which side runs first, with GC collected before and off throughout."""
    enabled = gc.isenabled()
    collect()
    gc.disable()
    try:
        for i in range(pairs):
            if i % 2:
                v.append(variant())
                b.append(baseline())
            else:
                b.append(baseline())
                v.append(variant())
    finally:
        if enabled:
            gc.enable()


def measure_paired(
    variant: Callable[[], float],
    baseline: Callable[[], float],
    *,
    target: float | None = None,
    time_cap_s: float = 20.0,
    warmup: int = 2,
    min_rounds: int = 8,
    max_rounds: int = 400,
    band: float = BAND,
    alpha: float = 0.05,
    clock: Callable[[], float] = time.perf_counter,
    collect: Callable[[], object] = gc.collect,
) -> Latency:
    """Time ``variant`` against ``baseline`` (each returns the seconds of one call) in balanced blocks until
    a look decides the case (see the module doc) or the time cap / ``max_rounds`` ends it. ``clock`` and
    ``collect`` are the time source and the garbage collection run before each block (tests replace them)."""
    start = clock()
    for i in range(warmup):
        _ = (baseline(), variant()) if i % 2 == 0 else (variant(), baseline())
    pairs = block_pairs_for((clock() - start) / warmup if warmup else None, time_cap_s)
    v: list[float] = []
    b: list[float] = []
    spent, look = 0.0, 0
    while True:
        t0 = clock()
        _block(variant, baseline, pairs, v, b, collect)
        now, block_s = clock(), clock() - t0
        final = ("max rounds" if len(v) + pairs > max_rounds
                 else "time cap" if now - start + block_s > time_cap_s and len(v) // pairs >= MIN_BLOCKS else None)
        if final:
            lat = Latency(tuple(v), tuple(b), target, pairs, alpha - spent, band, final)
            log.debug("stopped at the %s: %d blocks of %d pairs, ratio %.3f", final, lat.blocks, pairs, lat.ratio)
            return lat
        if look < len(LOOK_FRACTIONS) and now - start >= LOOK_FRACTIONS[look] * time_cap_s:
            while look < len(LOOK_FRACTIONS) and now - start >= LOOK_FRACTIONS[look] * time_cap_s:
                look += 1  # looks passed while this block ran are skipped; their alpha is left for later
            if len(v) // pairs < MIN_BLOCKS or len(v) < min_rounds:
                continue
            share = alpha * LOOK_SHARES[look - 1]
            spent += share
            lat = Latency(tuple(v), tuple(b), target, pairs, share, band)
            done = lat.half_width <= target if target is not None else lat.decided
            if done:
                return Latency(tuple(v), tuple(b), target, pairs, share, band,
                               "precise" if target is not None else "decided")
