"""Warnings about where a run's figures came from: uncommitted code, or a machine busy with other jobs.

Committed figures come from a clean tree on a quiet machine (docs: DESIGN "The instrument must not be
foolable"). A record's ``env`` carries ``git_sha``, ``git_dirty`` and ``git_diff_sha`` (bench/env.py);
a run's env.json carries the load average at its start and end. ``provenance_warnings`` turns those into
report lines, so a reader sees a figure from a dirty tree or a busy machine before trusting it. Records
made before the fields existed carry none and draw no warning (unknown, not dirty).
"""

from __future__ import annotations

__all__ = ["FOREIGN_SHARE_MAX", "LOAD_SLACK", "provenance_warnings"]

_SHOWN = 3  # case ids named in a warning before "and N more"


def _some(ids: list[str]) -> str:
    named = ", ".join(f"`{i}`" for i in ids[:_SHOWN])
    return named + (f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else "")


def _dirty_lines(records: list[dict]) -> list[str]:
    dirty = [r for r in records if (r.get("env") or {}).get("git_dirty") is True]
    states = {((r.get("env") or {}).get("git_sha"), (r.get("env") or {}).get("git_diff_sha"))
              for r in records if (r.get("env") or {}).get("git_dirty") is not None}
    lines = []
    if dirty:
        diffs = sorted({str((r.get("env") or {}).get("git_diff_sha")) for r in dirty})
        lines.append(f"- ⚠ {len(dirty)} of {len(records)} records were measured from a dirty tree (uncommitted changes "
                     f"on top of git {(dirty[0].get('env') or {}).get('git_sha')}, diff {', '.join(diffs)}): "
                     f"{_some([str(r.get('case_id')) for r in dirty])}. Their code is in no commit; committed "
                     "figures come from a clean tree.")
    if len(states) > 1:
        shown = ", ".join(f"{sha}{'+' + diff if diff else ''}" for sha, diff in sorted(states, key=str))
        lines.append(f"- ⚠ the records come from {len(states)} different source states ({shown}): figures of "
                     "different code are mixed in one run; rerun it from one clean commit.")
    return lines


# The rule for "a busy machine". The load average counts the run's own threads (up to one per core), so a
# quiet machine running a benchmark shows a load of about its core count: the report warns when the 1-minute
# load exceeds the cores by LOAD_SLACK (another thread busy at least half the time). Where the run measured it,
# the share of the machine's CPU that other processes used during the run (env.json ``foreign_cpu_share``,
# bench/env.py; it excludes the run's own threads and children) is the sharper test: above FOREIGN_SHARE_MAX.
LOAD_SLACK = 0.5
FOREIGN_SHARE_MAX = 0.10


def _load_lines(run_env: dict) -> list[str]:
    cores = run_env.get("cpu_count")
    loads = {when: (run_env.get(f"load_avg_{when}") or [None])[0] for when in ("start", "end")}
    busy = {w: v for w, v in loads.items()
            if isinstance(v, (int, float)) and isinstance(cores, int) and v > cores + LOAD_SLACK}
    lines = []
    if busy:
        said = " and ".join(f"{v:.2f} at the {w}" for w, v in busy.items())
        lines.append(f"- ⚠ the 1-minute load average was {said} of the run, above its {cores} cores + {LOAD_SLACK} "
                     "(the run's own threads count up to the cores): other jobs ran beside the timing, so ratios may "
                     "scatter; record committed figures on a quiet machine.")
    share = run_env.get("foreign_cpu_share")
    if isinstance(share, (int, float)) and share > FOREIGN_SHARE_MAX:
        lines.append(f"- ⚠ other processes used {share:.0%} of this machine's CPU during the run (above "
                     f"{FOREIGN_SHARE_MAX:.0%}): the timing shared the cores; record committed figures on a quiet machine.")
    return lines


def provenance_warnings(records: list[dict], run_env: dict | None = None) -> list[str]:
    """Report lines (markdown bullets, empty when nothing is wrong) for records from a dirty tree or of mixed
    source states, and for a run on a busy machine (``run_env``: its env.json; the rule is stated above)."""
    return _dirty_lines(records) + _load_lines(run_env or {})
