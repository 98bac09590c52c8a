"""How ``prunebench gate`` runs each side: the candidate (this checkout) and the baseline's commit (exported
with ``git archive`` and installed into its own cached virtual environment), and what a finished run means.

A run of either side is *complete* when ``prunebench run`` exited 0, or exited 1 because a case failed (it
wrote a record whose status is failed/oom/crashed/timeout: those cases are then compared as failed). Any
other ending is a *crash*: another exit code or signal, exit 1 with no failed case (an uncaught exception,
or planned cases without a record), or the run stopped at ``--run-timeout``. A crashed candidate is a
regression (exit 1) whose line names the exit code and the run's last error line, and the records it did
write are compared (the cases it never reached are lost); a crashed baseline run means the gate cannot
measure timing here (exit 2).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .compare import CompareError
from .records import FAILED, read_records
from .rundir import RunDir

__all__ = ["GateError", "Side", "SideRun", "baseline_side", "candidate_side"]

log = logging.getLogger("bench.gate")


class GateError(CompareError):
    """The gate cannot run (exit 2); the message says why and what to do."""


@dataclass(frozen=True)
class SideRun:
    """One finished ``prunebench run`` of a side: its directory, exit code (None: stopped at the timeout) and
    the last line it printed (its error, when it crashed)."""

    side: str  # baseline | candidate
    out: Path
    returncode: int | None
    last_line: str = ""

    def records(self) -> list[dict]:
        """The records it wrote (none when it died before its first case)."""
        path = RunDir(self.out).records
        return read_records(path) if path.is_file() else []

    def crash(self) -> str | None:
        """None when the run is complete (module docstring); else one line: the exit code and the last error line."""
        records = self.records()
        if self.returncode == 0 or (self.returncode == 1 and any(r["status"] in FAILED for r in records)):
            return None
        if self.returncode is None:
            how = "did not finish"
        elif self.returncode < 0:
            how = f"was killed by {signal.Signals(-self.returncode).name}" if -self.returncode in signal.valid_signals() \
                else f"was killed by signal {-self.returncode}"
        else:
            how = f"exited {self.returncode}" + (" with no failed case" if self.returncode == 1 else "")
        return (f"the {self.side} run {how} after {len(records)} case record{'s' if len(records) != 1 else ''}: "
                f"{self.last_line or 'no output'}")


@dataclass(frozen=True)
class Side:
    """How to run one side of the gate: a command prefix (``... run``) and the directory it runs in."""

    name: str  # baseline | candidate
    prefix: tuple[str, ...]  # e.g. (python, -m, bench.cli)
    cwd: Path
    env: dict[str, str] | None = None

    def run(self, args: list[str], out: Path, timeout_s: float) -> SideRun:
        """Run ``prunebench <args> --out out``; whether it completed or crashed is ``SideRun.crash()``."""
        cmd = [*self.prefix, *args, "--out", str(out)]
        log.warning("gate: %s run: %s", self.name, shlex.join(cmd))
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return SideRun(self.name, out, None, f"stopped after {timeout_s:.0f}s; raise --run-timeout or shrink the CI plan")
        log.warning("gate: %s run ended (exit %s) in %.0fs", self.name, proc.returncode, time.perf_counter() - t0)
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or [""]
        return SideRun(self.name, out, proc.returncode, last[0].strip()[:200])


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
