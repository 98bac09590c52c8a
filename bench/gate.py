"""``prunebench gate``: the CI regression gate, on any runner.

Two halves (DESIGN.md, "Regression tracking in CI"):

- **Machine-independent figures** (achieved sparsity, parameters, sizes, FLOP ratio, quality on fixed
  data, case status) of *every* candidate round are compared with the committed baseline, wherever it
  was recorded (the rules of ``bench.compare``): a case lost, newly failed or newly skipped in any round,
  or a quality split that differs from the baseline's (re-record the baseline), is a regression.
- **Timing ratios** are compared only with figures measured on this machine in this job: the gate
  measures the baseline itself, as asv continuous does. A matching CPU name is not the same machine:
  with the committed baseline's environment equal to this one ("AMD EPYC", same torch), its committed
  torch-masked ratio of 1.146 [1.141, 1.156] met 1.265 [1.216, 1.287] here, on code whose ratio
  measured in the same job was unchanged. The baseline's recorded commit is exported and installed into
  its own virtual environment (``bench.gate_sides``), runs the baseline's own command, and the two runs
  alternate (baseline, candidate, baseline, candidate, ...) so that a drift of the machine during the
  job lands on both sides. A latency or memory ratio regression counts only when every round's pair
  shows it (each pair under the rules of ``bench.compare``); a latency ratio that cannot be judged (no
  CI, or none in the candidate) in any round is a regression.
- **Crashes**: a candidate run that crashed (``bench.gate_sides``: an exit other than 0, or 1 with a
  failed case; killed; stopped at the timeout) is a regression, named with its exit code and last error
  line; a baseline run that crashed here means the gate cannot measure timing (exit 2).

Exit 0: no regression; 1: a regression; 2: the gate cannot run (one line saying why and the fix).
"""

from __future__ import annotations

import logging
import shlex
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .compare import Comparison, compare_records
from .env import env_difference, environment
from .gate_sides import GateError, Side, baseline_side, candidate_side
from .records import read_records
from .rundir import RunDir

__all__ = ["GateError", "GateResult", "Side", "baseline_side", "candidate_side", "run_gate"]

log = logging.getLogger("bench.gate")

SLOWER = ("latency_ratio", "mem_ratio")  # a regression of these counts only when every round shows it
UNJUDGED = ("latency_ci",)  # a latency ratio that cannot be judged: a regression in any round


@dataclass
class GateResult:
    """What the gate compared and what it found."""

    path: str  # "committed baseline" | "same-machine baseline"
    why: str
    figures: Comparison  # machine-independent figures of candidate round 1 vs the committed baseline
    timing: list[Comparison] = field(default_factory=list)  # one per round (baseline_i vs candidate_i)
    timing_regressions: list[str] = field(default_factory=list)  # case ids slower (latency or memory) in every round
    seconds: dict[str, float] = field(default_factory=dict)
    later_figures: list[Comparison] = field(default_factory=list)  # candidate rounds 2.. vs the committed baseline
    crashes: list[str] = field(default_factory=list)  # one line per crashed candidate run
    unjudged: list[str] = field(default_factory=list)  # case ids whose latency ratio could not be judged in a round

    @property
    def exit_code(self) -> int:
        figures = any(c.regressions for c in (self.figures, *self.later_figures))
        return 1 if figures or self.timing_regressions or self.crashes or self.unjudged else 0

    def to_markdown(self) -> str:
        lines = [f"# prunebench gate: {'**REGRESSION**' if self.exit_code else 'no regression'}", "",
                 f"Timing compared against the **{self.path}**: {self.why}", ""]
        lines += [f"Crashed: {c}" for c in self.crashes] + ([""] if self.crashes else [])
        if self.timing_regressions:
            lines += ["Slower in every round: " + ", ".join(f"`{c}`" for c in self.timing_regressions), ""]
        if self.unjudged:
            lines += ["Latency not judgeable (no CI) in a round: " + ", ".join(f"`{c}`" for c in self.unjudged), ""]
        lines += ["## Machine-independent figures vs the committed baseline", "", self.figures.to_markdown(), ""]
        for i, comp in enumerate(self.later_figures, 2):
            found = [f"- **regression**: `{c.case_id}` {f.figure}: {f.detail}" for c in comp.regressions
                     for f in c.findings if f.kind == "regression"]
            lines += [f"Candidate round {i} vs the committed baseline: "
                      + (f"{len(comp.regressions)} regressions" if found else "no regression"), "", *found, ""]
        for i, comp in enumerate(self.timing, 1):
            title = "Timing" if len(self.timing) == 1 else f"Timing, round {i} of {len(self.timing)}"
            lines += [f"## {title}", "", comp.to_markdown(), ""]
        if self.seconds:
            lines += ["Time spent: " + ", ".join(f"{k} {v:.0f}s" for k, v in self.seconds.items()) + ".", ""]
        return "\n".join(lines)


def _baseline_files(baseline_dir: Path) -> tuple[list[dict], dict, list[str]]:
    """The committed baseline's records, environment and the `prunebench run` arguments it was made with."""
    base = RunDir(baseline_dir)
    if not base.records.is_file():
        raise GateError(f"{baseline_dir} holds no {RunDir.RECORDS}; pass --baseline with a directory written by `prunebench run`")
    records = read_records(base.records)
    env = base.load_env() if base.env.is_file() else next((r["env"] for r in records if r.get("env")), {})
    cmd_path = base.command
    if not cmd_path.is_file():
        raise GateError(f"{baseline_dir} has no {RunDir.COMMAND}, so the gate cannot rerun it; re-record the baseline with "
                        "`prunebench run --plan PLAN --out DIR`")
    words = shlex.split(cmd_path.read_text().strip())
    if words[:2] != ["prunebench", "run"]:
        raise GateError(f"{cmd_path} is not a `prunebench run` command ({' '.join(words[:3])} ...); re-record the "
                        "baseline with `prunebench run --plan PLAN --out DIR`")
    args, skip = [], False
    for w in words[1:]:  # drop --out DIR: each gate run writes its own directory
        if skip:
            skip = False
        elif w == "--out":
            skip = True
        elif not w.startswith("--out="):
            args.append(w)
    return records, env, args


def _flagged(rounds: list[Comparison], figures: tuple[str, ...], every: bool) -> list[str]:
    """Case ids with a regression of one of ``figures`` in every round (``every``; a drift during one round
    flags one pair only) or in any round."""
    found = None
    for comp in rounds:
        ids = {c.case_id for c in comp.cases if any(f.figure in figures and f.kind == "regression" for f in c.findings)}
        found = ids if found is None else (found & ids if every else found | ids)
    return sorted(found or ())


def run_gate(baseline_dir: Path | str = "results/baseline", *, repo: Path | str = ".", threshold: float = 0.10,
             rounds: int = 2, committed_timing: bool = False, work: Path | str | None = None,
             baseline_python: str | None = None, candidate_prefix: tuple[str, ...] | None = None,
             current_env: dict | None = None, run_timeout_s: float = 1800.0) -> GateResult:
    """Run the gate (see the module docstring). ``committed_timing=True`` compares timing with the committed
    baseline's ratios when its environment matches this machine's (no baseline runs: quicker, and only
    sound on the very machine that recorded it); ``current_env`` overrides this machine's environment (tests)."""
    baseline_dir, repo = Path(baseline_dir), Path(repo).resolve()
    if rounds < 1:
        raise GateError(f"--rounds {rounds} must be at least 1")
    base_records, base_env, args = _baseline_files(baseline_dir)
    if current_env is None:
        current_env = environment()
    diff = env_difference(base_env, current_env)
    work = Path(work) if work else Path(tempfile.mkdtemp(prefix="prunebench-gate-"))
    work.mkdir(parents=True, exist_ok=True)
    cand = candidate_side(repo, candidate_prefix)
    seconds: dict[str, float] = {}
    crashes: list[str] = []
    figures: list[Comparison] = []

    def timed_run(side: Side, name: str) -> list[dict]:
        t0 = time.perf_counter()
        done = side.run(args, work / name, run_timeout_s)
        seconds[name] = time.perf_counter() - t0
        crash = done.crash()
        if crash and side.name == "baseline":
            raise GateError(f"{crash}; the gate cannot measure the baseline's commit here: run "
                            f"`prunebench {shlex.join(args)}` on that commit by hand to see why")
        if crash:
            crashes.append(f"{name}: {crash}")
        records = done.records()
        if side.name == "candidate":  # every candidate round's cases and figures vs the committed baseline
            figures.append(compare_records(base_records, records, threshold, baseline_dir=str(baseline_dir),
                                           run_dir=name, check_env=False, timing=False))
        return records

    def result(path: str, why: str, timing: list[Comparison]) -> GateResult:
        return GateResult(path, why, figures[0], timing, _flagged(timing, SLOWER, every=True), seconds, figures[1:],
                          crashes, _flagged(timing, UNJUDGED, every=False))

    if diff is None and committed_timing:
        why = (f"it was recorded in this environment ({current_env.get('cpu')}, torch {current_env.get('torch')}), "
               "so its ratios are compared as they are.")
        run = timed_run(cand, "candidate")
        return result("committed baseline", why, [compare_records(
            base_records, run, threshold, baseline_dir=str(baseline_dir), run_dir="candidate", figures=False)])

    key, a, b = diff if diff else ("nothing", None, None)
    why = (f"the committed baseline's {key} differs (baseline {a!r}, here {b!r}), so its commit "
           f"{base_env.get('git_sha')} was measured here, alternating with this checkout, {rounds} rounds each."
           if diff else f"its commit {base_env.get('git_sha')} was measured here, alternating with this checkout, "
           f"{rounds} rounds each (timing is compared only within one job: a matching CPU name is not the same machine).")
    sha = base_env.get("git_sha")
    if not sha:
        raise GateError(f"{baseline_dir}/env.json records no git_sha, so the gate cannot measure the baseline's code "
                        "here; re-record the baseline from a committed tree")
    t0 = time.perf_counter()
    extras = "onnx" if base_env.get("onnxruntime") else ""
    base_side = baseline_side(repo, sha, extras, baseline_python)
    seconds["baseline install"] = time.perf_counter() - t0
    timing = []
    for i in range(1, rounds + 1):
        a_run = timed_run(base_side, f"baseline-{i}")
        b_run = timed_run(cand, f"candidate-{i}")
        timing.append(compare_records(a_run, b_run, threshold, baseline_dir=f"baseline-{i} (commit {sha}, here)",
                                      run_dir=f"candidate-{i}", check_env=False, figures=False))
    return result("same-machine baseline", why, timing)
