"""Serving scenarios: the shapes users serve, beside the fixed ``batch x seq_len`` batch every case is gated on.

- ``fixed`` (the default): one batch of ``batch`` rows of exactly ``seq_len`` tokens of real text, the same batch
  every call (``bench.models.LoadedModel.batch``).
- ``query``: a fixed, seeded sequence of ``QUERY_REQUESTS`` requests, each one real short text (a BBC News title)
  alone, batch 1, at its own token length (truncated to ``seq_len``, never padded). A timed unit is the whole
  sequence; each request's seconds are kept, so the report gives per-request p50 / p90 / p99.
- ``offline``: a fixed corpus of ``OFFLINE_TEXTS`` real texts (article bodies, truncated to ``seq_len``) embedded
  in batches of ``batch`` after sorting by token length, each batch padded only to its own longest text
  (dynamic padding, as sentence-transformers' ``encode`` does); throughput in texts/s.

A scenario's unit runs through the case's ordinary runner (``Runner.run(inputs)``), timed by the same paired
protocol as the fixed batch (``bench.measure.paired``): the ratio is the sequence's seconds against the
baseline's on the same sequence.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

__all__ = ["OFFLINE_TEXTS", "QUERY_REQUESTS", "SCENARIOS", "ScenarioTimer", "Workload", "figures",
           "offline_workload", "percentile", "query_workload", "scenario_texts", "workload"]

SCENARIOS = ("fixed", "query", "offline")
QUERY_REQUESTS = 32  # requests per timed query unit (MiniLM fp32 on two cores: a few ms each)
OFFLINE_TEXTS = 128  # texts per timed offline unit


Encoder = Callable[[list[str], int], dict[str, torch.Tensor]]  # LoadedModel.encode: texts, max tokens -> padded batch


@dataclass(frozen=True)
class Workload:
    """What one timed unit of a scenario runs: its model inputs in order (single requests or padded batches)
    and how many texts they hold."""

    scenario: str
    units: tuple[dict[str, torch.Tensor], ...]
    texts: int

    def lengths(self) -> list[tuple[int, int]]:
        """(rows, padded tokens) of each unit, in order."""
        return [tuple(u["input_ids"].shape) for u in self.units]  # type: ignore[misc]


def scenario_texts(kind: str, n: int, seed: int = 0) -> list[str]:
    """``n`` real texts of the BBC News corpus (deduplicated), a seeded sample: ``titles`` (short queries) or
    ``bodies`` (documents)."""
    from ..data.corpus import unique_articles

    arts = sorted(unique_articles(), key=lambda a: a.id)
    picked = random.Random(seed).sample(arts, min(n, len(arts)))
    return [a.title if kind == "titles" else a.body for a in picked]


def query_workload(encode: Encoder, texts: Sequence[str], seq_len: int) -> Workload:
    """One request per text, in the given order: batch 1 at the text's own token length (at most ``seq_len``)."""
    return Workload("query", tuple(encode([t], seq_len) for t in texts), len(texts))


def offline_workload(encode: Encoder, texts: Sequence[str], batch: int, seq_len: int) -> Workload:
    """The texts sorted by token length (truncated to ``seq_len``; ties keep their order), cut into batches of
    ``batch``, each padded only to its own longest text."""
    lengths = [int(encode([t], seq_len)["attention_mask"].sum()) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    chunks = [order[i:i + batch] for i in range(0, len(order), batch)]
    return Workload("offline", tuple(encode([texts[i] for i in c], seq_len) for c in chunks), len(texts))


def workload(scenario: str, encode: Encoder, batch: int, seq_len: int, seed: int = 0) -> Workload:
    """The case's workload for a non-fixed scenario, from the corpus (seeded: every case and its baseline the same)."""
    if scenario == "query":
        return query_workload(encode, scenario_texts("titles", QUERY_REQUESTS, seed), seq_len)
    if scenario == "offline":
        return offline_workload(encode, scenario_texts("bodies", OFFLINE_TEXTS, seed), batch, seq_len)
    raise ValueError(f"scenario {scenario!r} has no workload; use one of {', '.join(SCENARIOS[1:])}")


@dataclass
class ScenarioTimer:
    """A runner's timed unit for the paired protocol: ``__call__`` runs every unit of the workload once through
    ``run`` (``Runner.run``) and returns the seconds of the whole sequence; each call's per-unit seconds are
    kept in ``calls`` (warm-up calls included: :func:`figures` takes the last ones)."""

    run: Callable[[dict[str, torch.Tensor]], Any]
    work: Workload
    clock: Callable[[], float] = time.perf_counter
    calls: list[list[float]] = field(default_factory=list)

    def __call__(self) -> float:
        per: list[float] = []
        for unit in self.work.units:
            t0 = self.clock()
            self.run(unit)
            per.append(self.clock() - t0)
        self.calls.append(per)
        return sum(per)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def figures(scenario: str, variant: ScenarioTimer, baseline: ScenarioTimer, rounds: int) -> dict[str, float | int]:
    """The scenario's figures over the last ``rounds`` timed calls of each side (the paired rounds, not the
    warm-up): query: per-request p50 / p90 / p99 in ms; offline: texts/s from the median sequence time."""
    out: dict[str, float | int] = {"texts": variant.work.texts}
    for side, timer in (("", variant), ("baseline_", baseline)):
        calls = timer.calls[-rounds:] if rounds > 0 else []
        if not calls:
            continue
        if scenario == "query":
            per = [t for c in calls for t in c]
            for q in (50, 90, 99):
                out[f"{side}p{q}_ms"] = round(percentile(per, q) * 1e3, 4)
        else:
            out[f"{side}texts_per_s"] = round(timer.work.texts / statistics.median(sum(c) for c in calls), 3)
    if scenario == "offline":
        out["batches"] = len(variant.work.units)
        out["padded_tokens"] = sum(r * s for r, s in variant.work.lengths())
    return out

