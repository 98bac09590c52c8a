"""What a budgeted run (the quick plan's smoke budget) left out, said in the report so its figures are not read
as a full run's: quality scored on a capped split (``quality_items``: ``capped=N`` in ``quality_split``) and
memory measured on the plan's first cases only (``memory_cases``: the others carry ``memory_skipped``). Pure
functions of records."""

from __future__ import annotations

import re

__all__ = ["budget_lines"]


def budget_lines(records: list[dict]) -> list[str]:
    """One line per thing the run's budget capped (none for a run that measured everything)."""
    lines = []
    caps = sorted({int(m.group(1)) for r in records if (m := re.search(r"\bcapped=(\d+)\b", r.get("quality_split") or ""))})
    if caps:
        lines.append(f"Quality capped: scored on at most {', '.join(map(str, caps))} articles per split (the plan's "
                     "quality_items, a smoke budget), not the full split: its figures are not comparable with an uncapped "
                     "run's (compare calls a different quality_split a regression).")
    skipped = [r for r in records if r.get("memory_skipped")]
    if skipped:
        lines.append(f"Memory measured on {len(records) - len(skipped)} of {len(records)} cases (the plan's memory_cases, "
                     "a smoke budget); the others have no memory figures.")
    uncompressed = [r for r in records if r.get("compress_skipped")]
    if uncompressed:
        lines.append(f"Compressed size measured on {len(records) - len(uncompressed)} of {len(records)} cases (the plan's "
                     "compress_cases, a smoke budget); the others have raw sizes only.")
    return lines
