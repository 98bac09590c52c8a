"""Whether a run's latency figures reproduce: the protocol's summary (median CI half-width, share of decided
verdicts) and, against another run of the same plan on the same machine (``prunebench report RUN_DIR
--against OTHER_RUN``), the ok cases whose 95% CIs do not overlap. Two honest intervals for one case on one
machine overlap nearly always; the design's acceptance is >= 95% of ok cases. Pure functions of records."""

from __future__ import annotations

import statistics

from .cells import is_num

__all__ = ["non_overlapping", "protocol_summary", "reproduce_section"]


def _timed(records: list[dict]) -> dict[str, dict]:
    """The ok cases with a latency CI, by case id (the last record of a case wins)."""
    return {r["case_id"]: r for r in records
            if r.get("status") == "ok" and is_num(r.get("latency_ratio_lo")) and is_num(r.get("latency_ratio_hi"))}


def protocol_summary(records: list[dict]) -> str | None:
    """``Latency: median CI half-width ±4.1%; 20 of 27 verdicts decided (74%).``, or None without timed cases
    recorded by the balanced-block protocol (older records carry no ``latency_decided``)."""
    timed = [r for r in _timed(records).values() if r.get("latency_decided") is not None]
    if not timed:
        return None
    hw = [r["latency_half_width"] for r in timed if is_num(r.get("latency_half_width"))]
    decided = sum(bool(r["latency_decided"]) for r in timed)
    median = f"median CI half-width ±{statistics.median(hw):.1%}; " if hw else ""
    return f"Latency: {median}{decided} of {len(timed)} verdicts decided ({decided / len(timed):.0%})."


def non_overlapping(records: list[dict], other: list[dict]) -> tuple[list[tuple[dict, dict]], int]:
    """The (this run's, the other run's) records of the ok cases both runs timed whose CIs are disjoint, and
    how many cases both runs timed."""
    mine, theirs = _timed(records), _timed(other)
    both = [c for c in mine if c in theirs]
    apart = [(mine[c], theirs[c]) for c in both
             if mine[c]["latency_ratio_hi"] < theirs[c]["latency_ratio_lo"]
             or theirs[c]["latency_ratio_hi"] < mine[c]["latency_ratio_lo"]]
    return apart, len(both)


def _ci(r: dict) -> str:
    return f"{r['latency_ratio']:.3f} [{r['latency_ratio_lo']:.3f}, {r['latency_ratio_hi']:.3f}]"


def reproduce_section(records: list[dict], other: list[dict], other_name: str) -> list[str]:
    """The report's section comparing this run's latency CIs with run ``other_name``'s, case by case."""
    apart, both = non_overlapping(records, other)
    lines = [f"## Reproducibility against `{other_name}`", ""]
    if not both:
        return lines + [f"No ok case of this run was timed in `{other_name}`.", ""]
    share = 1 - len(apart) / both
    lines += [f"{both - len(apart)} of {both} ok cases timed in both runs have overlapping 95% CIs ({share:.0%}; "
              "the protocol's acceptance is ≥ 95%)" + (":" if apart else "."), ""]
    if apart:
        lines += ["| case | this run | other run |", "| --- | --- | --- |"]
        lines += [f"| `{a['case_id']}` | {_ci(a)} | {_ci(b)} |" for a, b in apart]
        lines.append("")
    return lines
