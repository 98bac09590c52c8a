"""A run against a baseline run: which tracked figures got worse, for CI.

The rules and the matching are here; what they find (``Finding``, ``CaseResult``, ``Comparison`` and how it
reads) is in ``bench/findings.py``. Cases are matched by ``case_id``; their fingerprints (case definition + environment) must agree, or
the comparison is refused (``CompareError``). Timing ratios need two locks before they count as a
regression (as asv does): the ratio is worse by more than the threshold AND the two 95% CIs do not
overlap. Deterministic figures (achieved sparsity, parameters, sizes, FLOP ratio) must match exactly;
a case that newly fails is a regression; a case missing from the run is reported, not failed.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from .env import env_difference
from .findings import CaseResult, Comparison, Finding
from .records import FAILED, RecordError, latest_by_case, read_records

__all__ = [
    "CASE_KEYS",
    "DETERMINISTIC",
    "CaseResult",
    "CompareError",
    "Comparison",
    "Finding",
    "compare_latency",
    "compare_records",
    "compare_runs",
]

log = logging.getLogger("bench.compare")

DEFAULT_THRESHOLD = 0.10
# Figures that the same code on the same machine reproduces bit for bit: any change is reported.
DETERMINISTIC = ("sparsity_actual", "params", "size_bytes", "size_compressed_bytes", "flops_ratio")
# Quality is deterministic up to float summation order: an absolute drop beyond this is a regression.
QUALITY_TOL = 1e-4
QUALITY = ("quality_cosine", "quality_knn_agreement", "quality_probe_acc", "quality_knn_acc", "quality_r1",
           "quality_mrr10", "quality_spearman")
# The fields of the case definition a record carries (the fingerprint hashes them and the environment).
CASE_KEYS = ("model", "method", "scope", "norm", "allocation", "sparsity_target", "runtime", "device", "dtype",
             "threads", "batch", "seq_len", "baseline")


class CompareError(RecordError):
    """Two runs that cannot be compared; the message names the differing field and the fix (exit 2)."""


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def compare_latency(base: tuple[float, float, float], run: tuple[float, float, float],
                    threshold: float) -> tuple[float, str, str]:
    """Two-lock rule on (ratio, lo, hi) triples: returns (relative change, kind, detail).

    ``kind`` is ``regression`` only when the run's ratio is worse by more than ``threshold`` AND its CI
    lies entirely above the baseline's; ``improvement`` mirrors it; otherwise ``note`` (within noise).
    """
    (b, blo, bhi), (r, rlo, rhi) = base, run
    change = r / b - 1
    has_ci = all(_num(v) for v in (blo, bhi, rlo, rhi))
    if change > threshold and has_ci and rlo > bhi:
        return change, "regression", f"{b:.3f} → {r:.3f} ({change:+.1%}, CIs disjoint)"
    if change < -threshold and has_ci and rhi < blo:
        return change, "improvement", f"{b:.3f} → {r:.3f} ({change:+.1%}, CIs disjoint)"
    why = ("no CI" if not has_ci else "CIs overlap" if not (rlo > bhi or rhi < blo)
           else f"within the {threshold:.0%} threshold")
    return change, "note", f"{b:.3f} → {r:.3f} ({change:+.1%}, {why})"


def _same(a, b, figure: str) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if figure == "flops_ratio":
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _compare_ok(base: dict, run: dict, threshold: float, res: CaseResult, timing: bool = True,
                figures: bool = True) -> None:
    """Both cases succeeded: latency (two locks), deterministic figures (exact), quality, memory.
    ``timing=False`` compares only what does not depend on the machine (deterministic figures, quality);
    ``figures=False`` only the timing ratios."""
    trip = [base.get(k) for k in ("latency_ratio", "latency_ratio_lo", "latency_ratio_hi")]
    trip_r = [run.get(k) for k in ("latency_ratio", "latency_ratio_lo", "latency_ratio_hi")]
    if timing and _num(trip[0]) and _num(trip_r[0]):
        res.latency_baseline, res.latency_run = tuple(trip), tuple(trip_r)
        change, kind, detail = compare_latency(tuple(trip), tuple(trip_r), threshold)
        res.latency_change = change
        if kind != "note" or abs(change) > threshold:
            res.findings.append(Finding("latency_ratio", kind, trip[0], trip_r[0], detail))
    for k in DETERMINISTIC if figures else ():
        a, b = base.get(k), run.get(k)
        if not _same(a, b, k):
            res.findings.append(Finding(k, "regression", a, b,
                                        f"{a} → {b} (deterministic: must match exactly; if the change is intended, "
                                        "re-record the baseline)"))
    same_data = base.get("quality_split") == run.get("quality_split")
    if figures and not same_data:
        res.findings.append(Finding("quality_split", "note", base.get("quality_split"), run.get("quality_split"),
                                    "quality was scored on different data: not compared (re-record the baseline "
                                    "to track it)"))
    for k in QUALITY if figures and same_data else ():
        a, b = base.get(k), run.get(k)
        if _num(a) and _num(b) and abs(a - b) > QUALITY_TOL:
            kind = "regression" if b < a else "improvement"
            res.findings.append(Finding(k, kind, a, b, f"{a:.6f} → {b:.6f} ({b - a:+.2g})"))
    a, b = base.get("mem_ratio"), run.get("mem_ratio")
    if timing and _num(a) and _num(b) and a > 0:
        change = b / a - 1
        if abs(change) > threshold:
            kind = "regression" if change > 0 else "improvement"
            res.findings.append(Finding("mem_ratio", kind, a, b, f"{a:.3f} → {b:.3f} ({change:+.1%}, single measurement)"))


def _compare_case(case_id: str, base: dict | None, run: dict | None, threshold: float, timing: bool = True,
                  figures: bool = True) -> CaseResult:
    if run is None:
        return CaseResult(case_id, "missing", status_baseline=base.get("status"),
                          findings=[Finding("case", "note", base.get("status"), None, "in the baseline, not in the run")])
    if base is None:
        return CaseResult(case_id, "new", status_run=run.get("status"))
    sb, sr = base.get("status"), run.get("status")
    res = CaseResult(case_id, "unchanged", status_baseline=sb, status_run=sr)
    if sb == "ok" and sr in FAILED:
        res.findings.append(Finding("status", "regression", sb, sr, f"newly {sr}: {run.get('error') or '?'}"))
    elif sb in FAILED and sr == "ok":
        res.findings.append(Finding("status", "improvement", sb, sr, "failed in the baseline, succeeds now"))
    elif sb in FAILED and sr in FAILED:
        res.verdict = "failing"
        res.findings.append(Finding("status", "note", sb, sr, f"still {sr}: {run.get('error') or '?'}"))
    elif sr == "skipped":
        res.verdict = "skipped" if sb == "skipped" else "missing"
        if sb != "skipped":
            res.findings.append(Finding("status", "note", sb, sr, f"skipped in the run: {run.get('reason') or '?'}"))
    elif sb == "skipped":
        res.verdict = "new"
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
    if not env and run_dir is not None and (run_dir / "env.json").is_file():
        env = json.loads((run_dir / "env.json").read_text())
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
    if not shared:
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
    return Comparison(str(baseline_dir), str(run_dir), threshold, cases, b_env.get("git_sha"), r_env.get("git_sha"))


def compare_runs(baseline_dir: Path | str, run_dir: Path | str, threshold: float = DEFAULT_THRESHOLD) -> Comparison:
    """Compare two run directories (each holding records.jsonl)."""
    base_dir, run_dir = Path(baseline_dir), Path(run_dir)
    for d, what in ((base_dir, "baseline"), (run_dir, "run")):
        if not d.is_dir():
            raise CompareError(f"{what} directory {d} does not exist; pass a directory written by `prunebench run`")
    cmd = base_dir / "command.txt"
    fix = ("to gate in CI on any machine use `prunebench gate --baseline DIR`, which measures the baseline's "
           "commit here; to compare by hand, measure both runs on one machine"
           + (f" (the baseline's command: {cmd.read_text().strip()})" if cmd.is_file() else ""))
    base, run = read_records(base_dir), read_records(run_dir)
    return compare_records(base, run, threshold, baseline_dir=str(base_dir), run_dir=str(run_dir), fix=fix,
                           baseline_env=_env(base, base_dir), run_env=_env(run, run_dir))

