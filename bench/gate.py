"""``prunebench gate``: the CI regression gate, on any runner.

Two halves (DESIGN.md, "Regression tracking in CI"):

- **Machine-independent figures** (achieved sparsity, parameters, sizes, FLOP ratio, quality on fixed
  data, case status) are compared with the committed baseline, wherever it was recorded.
- **Timing ratios** are compared only with figures measured on this machine in this job: the gate
  measures the baseline itself, as asv continuous does. A matching CPU name is not the same machine:
  with the committed baseline's environment equal to this one ("AMD EPYC", same torch), its committed
  torch-masked ratio of 1.146 [1.141, 1.156] met 1.265 [1.216, 1.287] here, on code whose ratio
  measured in the same job was unchanged. The baseline's
  recorded commit is exported from git (``git archive``) and installed into its own virtual
  environment (cached by commit and constraints), runs the baseline's own command, and the two runs
  alternate (baseline, candidate, baseline, candidate, ...) so that a drift of the machine during the
  job lands on both sides. A latency regression counts only when every round's pair shows it (each
  pair under the two-lock rule of ``bench.compare``).

Exit 0: no regression; 1: a regression; 2: the gate cannot run (one line saying why and the fix).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .compare import CompareError, Comparison, compare_records
from .env import env_difference, environment
from .records import read_records

__all__ = ["GateError", "GateResult", "Side", "baseline_side", "candidate_side", "run_gate"]

log = logging.getLogger("bench.gate")


class GateError(CompareError):
    """The gate cannot run (exit 2); the message says why and what to do."""


@dataclass(frozen=True)
class Side:
    """How to run one side of the gate: a command prefix (``... run``) and the directory it runs in."""

    name: str  # baseline | candidate
    prefix: tuple[str, ...]  # e.g. (python, -m, bench.cli)
    cwd: Path
    env: dict[str, str] | None = None

    def run(self, args: list[str], out: Path, timeout_s: float) -> Path:
        """Run ``prunebench <args> --out out``; a run whose cases failed still returns its directory."""
        cmd = [*self.prefix, *args, "--out", str(out)]
        log.warning("gate: %s run: %s", self.name, shlex.join(cmd))
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise GateError(f"the {self.name} run took longer than {timeout_s:.0f}s and was stopped; "
                            "raise --run-timeout or shrink the CI plan") from None
        log.warning("gate: %s run ended (exit %s) in %.0fs", self.name, proc.returncode, time.perf_counter() - t0)
        if not (out / "records.jsonl").is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise GateError(f"the {self.name} run wrote no records (exit {proc.returncode}: {tail[0][:200]}); "
                            f"run `{shlex.join(cmd)}` by hand to see why")
        return out


@dataclass
class GateResult:
    """What the gate compared and what it found."""

    path: str  # "committed baseline" | "same-machine baseline"
    why: str
    figures: Comparison  # machine-independent figures vs the committed baseline
    timing: list[Comparison] = field(default_factory=list)  # one per round (baseline_i vs candidate_i)
    timing_regressions: list[str] = field(default_factory=list)  # case ids slower in every round
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 1 if self.figures.regressions or self.timing_regressions else 0

    def to_markdown(self) -> str:
        lines = [f"# prunebench gate: {'**REGRESSION**' if self.exit_code else 'no regression'}", "",
                 f"Timing compared against the **{self.path}**: {self.why}", ""]
        if self.timing_regressions:
            lines += ["Slower in every round: " + ", ".join(f"`{c}`" for c in self.timing_regressions), ""]
        lines += ["## Machine-independent figures vs the committed baseline", "", self.figures.to_markdown(), ""]
        for i, comp in enumerate(self.timing, 1):
            title = "Timing" if len(self.timing) == 1 else f"Timing, round {i} of {len(self.timing)}"
            lines += [f"## {title}", "", comp.to_markdown(), ""]
        if self.seconds:
            lines += ["Time spent: " + ", ".join(f"{k} {v:.0f}s" for k, v in self.seconds.items()) + ".", ""]
        return "\n".join(lines)


def _baseline_files(baseline_dir: Path) -> tuple[list[dict], dict, list[str]]:
    """The committed baseline's records, environment and the `prunebench run` arguments it was made with."""
    if not (baseline_dir / "records.jsonl").is_file():
        raise GateError(f"{baseline_dir} holds no records.jsonl; pass --baseline with a directory written by `prunebench run`")
    records = read_records(baseline_dir / "records.jsonl")
    env_path = baseline_dir / "env.json"
    env = json.loads(env_path.read_text()) if env_path.is_file() else next((r["env"] for r in records if r.get("env")), {})
    cmd_path = baseline_dir / "command.txt"
    if not cmd_path.is_file():
        raise GateError(f"{baseline_dir} has no command.txt, so the gate cannot rerun it; re-record the baseline with "
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


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise GateError(f"git {' '.join(args)} failed in {repo}: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return proc.stdout.strip()


def _cache_dir() -> Path:
    root = os.environ.get("PRUNEBENCH_GATE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "prunebench" / "gate"
    return Path(root)


def _clean_env() -> dict[str, str]:
    """This process's environment less what would steer the baseline's install or imports to this checkout."""
    drop = ("PYTHONPATH", "PIP_CONSTRAINT", "VIRTUAL_ENV", "PYTHONHOME", "TOX_ENV_DIR", "TOX_ENV_NAME")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def _export(repo: Path, sha: str, dest: Path) -> None:
    """The files of commit ``sha`` in ``dest`` (a plain export: it outlives the clone it came from)."""
    tmp = Path(tempfile.mkdtemp(prefix="src-", dir=dest.parent))
    archive = tmp / "src.tar"
    with open(archive, "wb") as fh:
        proc = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", sha], stdout=fh, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise GateError(f"git archive {sha} failed: {proc.stderr.decode(errors='replace').strip()[-200:]}")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp / "src", filter="data")
    archive.unlink()
    (tmp / "src").rename(dest)
    shutil.rmtree(tmp, ignore_errors=True)


def baseline_side(repo: Path, sha: str, extras: str, python: str | None = None) -> Side:
    """The baseline's commit, exported and installed into its own cached virtual environment.

    ``python`` skips the install: the export runs on that interpreter with PYTHONPATH set to it (for a
    machine that already has the baseline's dependencies, and for the tests)."""
    try:
        full = _git(repo, "rev-parse", "--verify", f"{sha}^{{commit}}")
    except GateError:
        raise GateError(f"the baseline's commit {sha} (results/baseline/env.json git_sha) is not in this clone; "
                        "fetch the full history (git fetch --unshallow) so the gate can measure it") from None
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    src = cache / f"src-{full[:12]}"
    if not (src / "pyproject.toml").is_file():
        shutil.rmtree(src, ignore_errors=True)
        _export(repo, full, src)
    env = _clean_env()
    if python is not None:
        env["PYTHONPATH"] = str(src)
        return Side("baseline", (python, "-m", "bench.cli"), src, env)
    constraints = src / "constraints.txt"
    key = hashlib.sha256((constraints.read_bytes() if constraints.is_file() else b"") + extras.encode()).hexdigest()[:8]
    venv = cache / f"venv-{full[:12]}-{key}"
    py = venv / "bin" / "python"
    if not (venv / ".installed").is_file():
        shutil.rmtree(venv, ignore_errors=True)
        log.warning("gate: installing the baseline's commit %s into %s (once; cached)", full[:12], venv)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        target = f"{src}[{extras}]" if extras else str(src)
        pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", target]
        pip += ["-c", str(constraints)] if constraints.is_file() else []
        proc = subprocess.run(pip, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise GateError(f"installing the baseline's commit {full[:12]} failed "
                            f"({(proc.stderr.strip().splitlines() or ['?'])[-1][:200]}); fix its constraints or "
                            "re-record the baseline on a commit that installs")
        (venv / ".installed").write_text(f"{full}\n{time.perf_counter() - t0:.0f}s\n")
    return Side("baseline", (str(py), "-m", "bench.cli"), src, env)


def candidate_side(repo: Path, prefix: tuple[str, ...] | None = None) -> Side:
    """This checkout, on this interpreter."""
    env = {**os.environ, "PYTHONPATH": str(repo)}
    env.setdefault("HF_HUB_OFFLINE", "1")
    return Side("candidate", prefix or (sys.executable, "-m", "bench.cli"), repo, env)


def _always_slower(rounds: list[Comparison]) -> list[str]:
    """Case ids whose latency ratio regressed in every round (a drift during one round flags one pair only)."""
    slow = None
    for comp in rounds:
        ids = {c.case_id for c in comp.cases if any(f.figure == "latency_ratio" and f.kind == "regression" for f in c.findings)}
        slow = ids if slow is None else slow & ids
    return sorted(slow or ())


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

    def timed_run(side: Side, name: str) -> list[dict]:
        t0 = time.perf_counter()
        out = side.run(args, work / name, run_timeout_s)
        seconds[name] = time.perf_counter() - t0
        return read_records(out / "records.jsonl")

    if diff is None and committed_timing:
        why = (f"it was recorded in this environment ({current_env.get('cpu')}, torch {current_env.get('torch')}), "
               "so its ratios are compared as they are.")
        run = timed_run(cand, "candidate")
        figures = compare_records(base_records, run, threshold, baseline_dir=str(baseline_dir), run_dir="candidate",
                                  check_env=False, timing=False)
        timing = compare_records(base_records, run, threshold, baseline_dir=str(baseline_dir), run_dir="candidate",
                                 figures=False)
        return GateResult("committed baseline", why, figures, [timing], _always_slower([timing]), seconds)

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
    timing, figures = [], None
    for i in range(1, rounds + 1):
        a_run = timed_run(base_side, f"baseline-{i}")
        b_run = timed_run(cand, f"candidate-{i}")
        if figures is None:
            figures = compare_records(base_records, b_run, threshold, baseline_dir=str(baseline_dir),
                                      run_dir="candidate-1", check_env=False, timing=False)
        timing.append(compare_records(a_run, b_run, threshold, baseline_dir=f"baseline-{i} (commit {sha}, here)",
                                      run_dir=f"candidate-{i}", check_env=False, figures=False))
    return GateResult("same-machine baseline", why, figures, timing, _always_slower(timing), seconds)
