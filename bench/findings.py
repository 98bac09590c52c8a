"""What a comparison of two runs found, per case, and how it reads: markdown for a CI job summary, strict
JSON for tooling. The rules that produce the findings are in ``bench/compare.py``."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field

import pandas as pd

__all__ = ["CaseResult", "Comparison", "Finding"]

log = logging.getLogger("bench.findings")


@dataclass(frozen=True)
class Finding:
    """One figure of one case that moved: its kind is ``regression``, ``improvement`` or ``note``."""

    figure: str
    kind: str
    baseline: object
    run: object
    detail: str


@dataclass
class CaseResult:
    """The comparison of one case_id: its verdict and the findings behind it."""

    case_id: str
    verdict: str  # regression | improved | unchanged | new | failing | skipped (a lost case is a regression)
    status_baseline: str | None = None
    status_run: str | None = None
    latency_baseline: tuple[float, float, float] | None = None
    latency_run: tuple[float, float, float] | None = None
    latency_change: float | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def regression(self) -> bool:
        return self.verdict == "regression"


@dataclass
class Comparison:
    """All cases of a baseline and a run, compared."""

    baseline_dir: str
    run_dir: str
    threshold: float
    cases: list[CaseResult]
    baseline_sha: str | None = None
    run_sha: str | None = None
    legend: str = ""  # the rules the findings follow (bench.compare.LEGEND), printed under the counts

    @property
    def regressions(self) -> list[CaseResult]:
        return [c for c in self.cases if c.regression]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.cases:
            out[c.verdict] = out.get(c.verdict, 0) + 1
        return out

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0

    def to_dict(self) -> dict:
        return {
            "baseline": self.baseline_dir,
            "run": self.run_dir,
            "baseline_git_sha": self.baseline_sha,
            "run_git_sha": self.run_sha,
            "threshold": self.threshold,
            "regression": bool(self.regressions),
            "counts": self.counts(),
            "cases": [_finite(asdict(c)) for c in self.cases],
        }

    def to_json(self) -> str:
        """Strict JSON (NaN becomes null), for CI tooling."""
        return json.dumps(self.to_dict(), indent=1, default=str, allow_nan=False)

    def to_markdown(self) -> str:
        """A table fit for a CI job summary, then one line per finding."""
        n = len(self.regressions)
        head = f"**{n} regression{'s' if n != 1 else ''}**" if n else "**no regression**"
        counts = ", ".join(f"{v} {k}" for k, v in self.counts().items())
        lines = [
            f"## prunebench compare: {head}",
            "",
            f"Baseline `{self.baseline_dir}` (git {self.baseline_sha or '?'}) vs run `{self.run_dir}` (git "
            f"{self.run_sha or '?'}): {counts or 'no cases'}. {self.legend}".rstrip(),
            "",
        ]
        rows = []
        for c in self.cases:
            rows.append({
                "case": c.case_id,
                "status (base → run)": f"{c.status_baseline or '–'} → {c.status_run or '–'}",
                "latency ratio: baseline [95% CI]": _ci(c.latency_baseline),
                "run [95% CI]": _ci(c.latency_run),
                "change": f"{c.latency_change:+.1%}" if c.latency_change is not None else "–",
                "verdict": f"**{c.verdict.upper()}**" if c.regression else c.verdict,
            })
        if rows:
            lines += [pd.DataFrame(rows).to_markdown(index=False), ""]
        notes = [(c.case_id, f) for c in self.cases for f in c.findings]
        if notes:
            lines += ["Findings:", ""]
            lines += [f"- {'**regression**' if f.kind == 'regression' else f.kind}: `{cid}` {f.figure}: {f.detail}"
                      for cid, f in notes]
            lines.append("")
        return "\n".join(lines)


def _finite(x):
    """Replace NaN/inf (no CI) by None, recursively, so the JSON is strict."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _ci(t) -> str:
    if t is None:
        return "–"
    r, lo, hi = t
    return f"{r:.3f} [{lo:.3f}, {hi:.3f}]" if all(_num(v) for v in t) else f"{r:.3f} [no CI]"
