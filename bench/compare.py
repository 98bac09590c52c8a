"""A run against a baseline run: which tracked figures got worse, for CI.

The rules and the matching are here; what they find (``Finding``, ``CaseResult``, ``Comparison`` and how it
reads) is in ``bench/findings.py``. Cases are matched by ``case_id``; their fingerprints (case definition +
environment) must agree, or the comparison is refused (``CompareError``, exit 2). The rules (``LEGEND``,
printed under every comparison):

- **Cases.** A case of the baseline that the run lacks is a *lost case*: a regression. A case that newly
  fails or is newly skipped is a regression. A case only the run has is reported, not judged. An intended
  change of the plan is made by re-recording the baseline (every such message says so).
- **Timing** (two locks, as asv does): a latency ratio regresses only when it is worse by at least the
  threshold AND the two 95% CIs are disjoint. A ratio the baseline has and the run has not, or either
  side without a CI, cannot be judged: a regression (``latency_ci``), never a pass. ``mem_ratio`` (one
  measurement each) regresses when it is worse by more than the threshold.
- **Deterministic figures** (achieved sparsity, parameters, sizes, FLOP ratio) must match exactly.
- **Quality** is compared only on the same data: a ``quality_split`` that differs is a regression whose
  message says to re-record the baseline. Task metrics (probe and kNN accuracy, R@1, MRR@10, Spearman) are
  judged in evaluation items: one moves by 1/n per item (n read from ``quality_split``), and a drop of more
  than ``QUALITY_ITEMS`` items' worth is a regression, so a near-tie or two flipping on another CPU is not.
  Fidelity (cosine, neighbour agreement) is judged on the absolute ``FIDELITY_TOL``. A figure the baseline
  scored and the run did not is a regression.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

from .env import env_difference
from .findings import CaseResult, Comparison, Finding
from .records import FAILED, RecordError, latest_by_case, read_records
from .rundir import RunDir

__all__ = [
    "CASE_KEYS",
    "DETERMINISTIC",
    "FIDELITY",
    "FIDELITY_TOL",
    "LEGEND",
    "QUALITY",
    "QUALITY_ITEMS",
    "CaseResult",
    "CompareError",
    "Comparison",
    "Finding",
    "compare_latency",
    "compare_records",
    "compare_runs",
    "eval_items",
]

log = logging.getLogger("bench.compare")

DEFAULT_THRESHOLD = 0.10
# Figures that the same code on the same machine reproduces bit for bit: any change is reported.
DETERMINISTIC = ("sparsity_actual", "params", "size_bytes", "size_compressed_bytes", "flops_ratio")
# Task metrics: means of per-item scores over n evaluation items, so one item moves them by 1/n (0.004 at n = 250).
QUALITY = ("quality_probe_acc", "quality_knn_acc", "quality_r1", "quality_mrr10", "quality_spearman")
QUALITY_ITEMS = 2  # a task metric regresses when it drops by more than this many items' worth (2/n)
# Fidelity to dense: cosine is float-rounding deterministic (~1e-6 across kernels); neighbour agreement moves by
# 1/(k n) = 4e-4 per swapped neighbour (k = 10, n = 250): the tolerance lets two swaps through, not a real loss.
FIDELITY = ("quality_cosine", "quality_knn_agreement")
FIDELITY_TOL = 1e-3
# The fields of the case definition a record carries (the fingerprint hashes them and the environment).
CASE_KEYS = ("model", "method", "scope", "norm", "allocation", "sparsity_target", "runtime", "device", "dtype",
             "threads", "batch", "seq_len", "baseline")
RERECORD = "if the change is intended, re-record the baseline (the command in its command.txt)"
LEGEND = (
    "Rules: a lost case (in the baseline, not in the run), a newly failed or newly skipped case, and a crashed "
    "run are regressions; an intended plan change re-records the baseline. A latency ratio regresses when it is "
    "worse by at least {threshold:.0%} AND its 95% CI does not overlap the baseline's; a ratio without a CI "
    "cannot be judged and is a regression. mem_ratio regresses when worse by more than {threshold:.0%}. "
    "Sparsity, parameters, sizes and FLOP ratio must match exactly. Quality is compared on the same data only "
    "(a different quality_split is a regression: re-record the baseline); a task metric regresses when it drops "
    f"by more than {QUALITY_ITEMS} evaluation items' worth ({QUALITY_ITEMS}/n), fidelity (cosine, neighbour "
    f"agreement) when it drops by more than {FIDELITY_TOL:g}.")


class CompareError(RecordError):
    """Two runs that cannot be compared; the message names the differing field and the fix (exit 2)."""


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def eval_items(split: str | None) -> int | None:
    """The number of evaluation items a ``quality_split`` line names, else None: the size of the split it says
    it scored (``scored=report`` with ``report=N``), or ``eval=N`` / ``pairs=N`` (eval files, older records)."""
    text = split or ""
    scored = re.search(r"\bscored=(\w+)\b", text)
    m = re.search(rf"\b{scored.group(1)}=(\d+)\b", text) if scored else None
    m = m or re.search(r"\b(?:eval|pairs)=(\d+)\b", text)
    return int(m.group(1)) if m and int(m.group(1)) > 0 else None


def compare_latency(base: tuple[float, float, float], run: tuple[float, float, float],
                    threshold: float) -> tuple[float, str, str]:
    """Two-lock rule on (ratio, lo, hi) triples: returns (relative change, kind, detail).

    ``kind`` is ``regression`` only when the run's ratio is worse by at least ``threshold`` AND its CI
    lies entirely above the baseline's; ``improvement`` mirrors it; ``unjudgeable`` when either side has no
    CI (the caller fails it: a figure the gate cannot judge never passes); otherwise ``note`` (within noise).
    """
    (b, blo, bhi), (r, rlo, rhi) = base, run
    change = r / b - 1
    if not all(_num(v) for v in (blo, bhi, rlo, rhi)):
        side = "the baseline" if not (_num(blo) and _num(bhi)) else "the run"
        return change, "unjudgeable", f"{b:.3f} → {r:.3f} ({change:+.1%}): {side} has no 95% CI, so it cannot be judged"
    if change >= threshold - 1e-9 and rlo > bhi:
        return change, "regression", f"{b:.3f} → {r:.3f} ({change:+.1%}, CIs disjoint)"
    if change <= -threshold + 1e-9 and rhi < blo:
        return change, "improvement", f"{b:.3f} → {r:.3f} ({change:+.1%}, CIs disjoint)"
    why = "CIs overlap" if not (rlo > bhi or rhi < blo) else f"within the {threshold:.0%} threshold"
    return change, "note", f"{b:.3f} → {r:.3f} ({change:+.1%}, {why})"


def _same(a, b, figure: str) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if figure == "flops_ratio":
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _compare_timing(base: dict, run: dict, threshold: float, res: CaseResult) -> None:
    """Latency ratio (two locks; unjudgeable is a regression) and memory ratio of one case."""
    keys = ("latency_ratio", "latency_ratio_lo", "latency_ratio_hi")
    trip, trip_r = tuple(base.get(k) for k in keys), tuple(run.get(k) for k in keys)
    if _num(trip[0]) and not _num(trip_r[0]):
        res.findings.append(Finding("latency_ci", "regression", trip[0], trip_r[0],
                                    "the baseline has a latency ratio, the run none: it cannot be judged"))
    elif _num(trip[0]):
        res.latency_baseline, res.latency_run = trip, trip_r
        change, kind, detail = compare_latency(trip, trip_r, threshold)
        res.latency_change = change
        if kind == "unjudgeable":
            res.findings.append(Finding("latency_ci", "regression", trip[0], trip_r[0], detail))
        elif kind != "note" or abs(change) > threshold:
            res.findings.append(Finding("latency_ratio", kind, trip[0], trip_r[0], detail))
    a, b = base.get("mem_ratio"), run.get("mem_ratio")
    if _num(a) and _num(b) and a > 0:
        change = b / a - 1
        if abs(change) > threshold:
            kind = "regression" if change > 0 else "improvement"
            res.findings.append(Finding("mem_ratio", kind, a, b, f"{a:.3f} → {b:.3f} ({change:+.1%}, single measurement)"))


def _compare_quality(base: dict, run: dict, res: CaseResult) -> None:
    """Quality on the same data only: task metrics in items, fidelity on an absolute tolerance (module docstring)."""
    scored = [k for k in (*QUALITY, *FIDELITY) if _num(base.get(k))]
    if not scored:
        return
    split_b, split_r = base.get("quality_split"), run.get("quality_split")
    if split_b != split_r:
        res.findings.append(Finding("quality_split", "regression", split_b, split_r,
                                    f"quality was scored on different data (baseline {split_b!r}, run {split_r!r}), "
                                    "so it cannot be compared: re-record the baseline with today's code"))
        return
    n = eval_items(split_r)
    for k in scored:
        a, b = base[k], run.get(k)
        if not _num(b):
            res.findings.append(Finding(k, "regression", a, b, f"scored in the baseline ({a:.4f}), not in the run"))
        elif k in FIDELITY:
            if abs(a - b) > FIDELITY_TOL:
                res.findings.append(Finding(k, "regression" if b < a else "improvement", a, b,
                                            f"{a:.6f} → {b:.6f} ({b - a:+.2g}; tolerance {FIDELITY_TOL:g})"))
        elif n is None:
            res.findings.append(Finding(k, "regression", a, b, f"quality_split {split_r!r} names no number of "
                                        "evaluation items, so a drop cannot be judged in items: re-record the baseline"))
        elif abs(a - b) * n > QUALITY_ITEMS + 1e-6:
            res.findings.append(Finding(k, "regression" if b < a else "improvement", a, b,
                                        f"{a:.4f} → {b:.4f} ({(b - a) * n:+.1f} of {n} items; tolerance {QUALITY_ITEMS})"))


def _compare_ok(base: dict, run: dict, threshold: float, res: CaseResult, timing: bool = True,
                figures: bool = True) -> None:
    """Both cases succeeded: latency (two locks), memory, deterministic figures (exact), quality.
    ``timing=False`` compares only what does not depend on the machine (deterministic figures, quality);
    ``figures=False`` only the timing ratios."""
    if timing:
        _compare_timing(base, run, threshold, res)
    if not figures:
        return
    for k in DETERMINISTIC:
        a, b = base.get(k), run.get(k)
        if not _same(a, b, k):
            res.findings.append(Finding(k, "regression", a, b, f"{a} → {b} (deterministic: must match exactly; {RERECORD})"))
    _compare_quality(base, run, res)


def _compare_case(case_id: str, base: dict | None, run: dict | None, threshold: float, timing: bool = True,
                  figures: bool = True) -> CaseResult:
    if run is None:
        return CaseResult(case_id, "regression", status_baseline=base.get("status"), findings=[Finding(
            "case", "regression", base.get("status"), None, f"lost: in the baseline, not in the run; {RERECORD}")])
    if base is None:
        return CaseResult(case_id, "new", status_run=run.get("status"), findings=[Finding(
            "case", "note", None, run.get("status"), "new: not in the baseline, not judged (re-record the baseline to track it)")])
    sb, sr = base.get("status"), run.get("status")
    res = CaseResult(case_id, "unchanged", status_baseline=sb, status_run=sr)
    if sr in FAILED and sb not in FAILED:
        res.findings.append(Finding("status", "regression", sb, sr, f"newly {sr}: {run.get('error') or '?'}"))
    elif sb in FAILED and sr in FAILED:
        res.verdict = "failing"
        res.findings.append(Finding("status", "note", sb, sr, f"still {sr}: {run.get('error') or '?'}"))
    elif sb in FAILED and sr == "ok":
        res.findings.append(Finding("status", "improvement", sb, sr, "failed in the baseline, succeeds now"))
    elif sr == "skipped" and sb != "skipped":
        res.findings.append(Finding("status", "regression", sb, sr,
                                    f"newly skipped ({run.get('reason') or '?'}); {RERECORD}"))
    elif sb == "skipped":
        res.verdict = "skipped" if sr == "skipped" else "new"
    elif sb == "ok" and sr == "ok":
        _compare_ok(base, run, threshold, res, timing, figures)
    kinds = {f.kind for f in res.findings}
    if "regression" in kinds:
        res.verdict = "regression"
    elif "improvement" in kinds and res.verdict == "unchanged":
        res.verdict = "improved"
    return res


def _env(records: list[dict], run_dir: Path | None = None) -> dict:
    """The run's environment: from its records, else its env.json (every case failed early)."""
    env = next((r["env"] for r in records if r.get("env")), {})
    if not env and run_dir is not None and RunDir(run_dir).env.is_file():
        env = RunDir(run_dir).load_env()
    return env


def _by_case(records: list[dict]) -> dict[str, dict]:
    """case_id -> its latest record (``records.latest_by_case``: a resumed run may repeat a case)."""
    return {r["case_id"]: r for r in latest_by_case([r for r in records if r.get("case_id")])}


def _check_comparable(base: dict[str, dict], run: dict[str, dict], base_env: dict, run_env: dict, fix: str,
                      check_env: bool = True) -> None:
    """Refuse when the environment or a shared case's definition differs (figures would mean different things).
    ``check_env=False`` checks the case definitions only (the fingerprint hashes the environment too)."""
    diff = env_difference(base_env, run_env) if check_env and base_env and run_env else None
    if diff:
        key, a, b = diff
        raise CompareError(f"cannot compare: {key} differs (baseline {a!r}, run {b!r}), so timing ratios are not "
                           f"comparable; {fix}")
    shared = [c for c in base if c in run]
    if run and not shared:  # an empty run (crashed before its first case) is compared: every case is lost
        raise CompareError(f"no case of the run matches the baseline by case_id ({len(base)} baseline cases, "
                           f"{len(run)} run cases); run the same plan as the baseline")
    for cid in shared:
        fb, fr = base[cid].get("fingerprint"), run[cid].get("fingerprint")
        if (fb and fr and fb != fr) or not check_env:
            for k in CASE_KEYS:
                if base[cid].get(k) != run[cid].get(k):
                    raise CompareError(f"cannot compare case {cid}: {k} differs (baseline {base[cid].get(k)!r}, "
                                       f"run {run[cid].get(k)!r}); {fix}")
            if not check_env:
                continue
            raise CompareError(f"cannot compare case {cid}: its definition changed (fingerprint {fb} vs {fr}); {fix}")


def compare_records(baseline: list[dict], run: list[dict], threshold: float = DEFAULT_THRESHOLD, *,
                    baseline_dir: str = "baseline", run_dir: str = "run", fix: str | None = None,
                    baseline_env: dict | None = None, run_env: dict | None = None, check_env: bool = True,
                    timing: bool = True, figures: bool = True) -> Comparison:
    """Compare two runs' records case by case (pure: no file access). Raises CompareError when the
    runs are not comparable; the environments default to those stored in the records.

    ``check_env=False, timing=False`` is the gate's machine-independent half: deterministic figures and
    quality against a baseline recorded anywhere (timing ratios are then not compared at all);
    ``figures=False`` is its timing half (latency and memory ratios only)."""
    if not (_num(threshold) and 0 < threshold < 1):
        raise CompareError(f"threshold {threshold!r} must be a fraction between 0 and 1, e.g. 0.10 for 10%")
    b, r = _by_case(baseline), _by_case(run)
    b_env, r_env = baseline_env or _env(baseline), run_env or _env(run)
    fix = fix or "measure both runs on one machine, or gate with `prunebench gate`, which measures the baseline's commit here"
    _check_comparable(b, r, b_env, r_env, fix, check_env)
    ids = list(b) + [c for c in r if c not in b]
    cases = [_compare_case(cid, b.get(cid), r.get(cid), threshold, timing, figures) for cid in ids]
    return Comparison(str(baseline_dir), str(run_dir), threshold, cases, b_env.get("git_sha"), r_env.get("git_sha"),
                      LEGEND.format(threshold=threshold))


def compare_runs(baseline_dir: Path | str, run_dir: Path | str, threshold: float = DEFAULT_THRESHOLD) -> Comparison:
    """Compare two run directories (each holding records.jsonl)."""
    base_dir, run_dir = Path(baseline_dir), Path(run_dir)
    for d, what in ((base_dir, "baseline"), (run_dir, "run")):
        if not d.is_dir():
            raise CompareError(f"{what} directory {d} does not exist; pass a directory written by `prunebench run`")
    cmd = RunDir(base_dir).read_command()
    fix = ("to gate in CI on any machine use `prunebench gate --baseline DIR`, which measures the baseline's "
           "commit here; to compare by hand, measure both runs on one machine"
           + (f" (the baseline's command: {cmd})" if cmd is not None else ""))
    base, run = read_records(base_dir), read_records(run_dir)
    return compare_records(base, run, threshold, baseline_dir=str(base_dir), run_dir=str(run_dir), fix=fix,
                           baseline_env=_env(base, base_dir), run_env=_env(run, run_dir))

