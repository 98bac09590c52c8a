"""How a serving scenario's figures read in the report (``bench.measure.scenarios``): the section title of a
shape, and the cells beside the latency ratio (query: per-request p50 / p90 / p99 in ms; offline: texts/s),
variant / baseline."""

from __future__ import annotations

from .cells import fmt

__all__ = ["scenario_cells", "shape_title"]


def shape_title(scenario: str | None, batch: int, seq_len: int) -> str:
    """The words for a table's shape: the fixed batch, or the scenario served."""
    if scenario == "query":
        return f"query scenario (batch 1, real titles at their own lengths, at most {seq_len} tokens)"
    if scenario == "offline":
        return f"offline scenario (a corpus in length-sorted batches of {batch}, padded to each batch's longest, at most {seq_len} tokens)"
    return f"batch {batch}, seq {seq_len}"


def scenario_cells(r: dict) -> dict[str, str]:
    """The record's scenario figures as table cells (none for the fixed batch)."""
    f = r.get("scenario_figures")
    f = f if isinstance(f, dict) else {}  # a skipped or failed case has none: its cells read "–"
    if r.get("scenario") == "query":
        def pair(q: int) -> str:
            return f"{fmt(f.get(f'p{q}_ms'), '.2f')} / {fmt(f.get(f'baseline_p{q}_ms'), '.2f')}"

        return {"p50 ms (variant / base)": pair(50), "p90 ms": pair(90), "p99 ms": pair(99)}
    if r.get("scenario") == "offline":
        return {"texts/s (variant / base)": f"{fmt(f.get('texts_per_s'), '.1f')} / {fmt(f.get('baseline_texts_per_s'), '.1f')}"}
    return {}
