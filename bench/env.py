"""The environment a figure depends on besides its case, and the fingerprint that says when two
measurements are comparable.

``environment()`` records versions (Python, torch, transformers, numpy, and every registered runtime's
``versions()``, so a new runtime's library is recorded without editing this module), the CPU model and
its instruction-set flags that decide which dtypes and kernels make sense (``cpu_flags``), the GPU, the
git sha and whether the source tree differed from it (``git_dirty``, ``git_diff_sha``: two states of
uncommitted code under one sha are told apart). ``fingerprint(case, env)`` hashes the case definition with the ``ENV_KEYS`` fields plus the
versions of the libraries the case's own runtime and baseline run on: a new runtime's version changes its
cases' fingerprints only, so records made before it existed stay comparable. ``setting(name, ...)`` reads
the environment-variable knobs runtimes take (``PRUNEBENCH_BSR_BLOCK``, ``PRUNEBENCH_OV_SPARSE_RATE``).
``record_load`` adds the machine's load average at a run's start and end to its env.json, so a report can
say the figures were measured beside other jobs. Neither provenance nor load is an environment
difference: ``env_difference`` and the fingerprint read ``ENV_KEYS`` only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Callable, TypeVar

__all__ = ["CPU_FLAGS", "ENV_KEYS", "cpu_flags", "env_difference", "environment", "fingerprint", "git_state",
           "cpu_clock", "foreign_cpu_share", "load_average", "record_load", "runtime_versions", "setting"]

log = logging.getLogger("bench.env")
T = TypeVar("T")

# Environment fields that change what a figure means (a new CPU or torch makes ratios incomparable).
ENV_KEYS = ("torch", "transformers", "onnxruntime", "cpu", "gpu", "machine")
# The /proc/cpuinfo flags that decide which dtypes and int8 kernels a CPU runs natively.
CPU_FLAGS = ("avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
             "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16")


@lru_cache(maxsize=1)
def cpu_flags() -> tuple[str, ...]:
    """The ``CPU_FLAGS`` this CPU has, from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return tuple(f for f in CPU_FLAGS if f in have)
    except OSError:
        pass
    return ()


def setting(name: str, default: T, parse: Callable[[str], T | None], what: str, example: str) -> T:
    """The environment variable ``name`` as ``parse`` reads it, or ``default`` where it is unset or blank: a
    knob read when a runtime prepares a case (e.g. ``PRUNEBENCH_BSR_BLOCK``). ``parse`` returns None for a
    bad value, which raises ValueError naming the variable, ``what`` it must be and an ``example`` fix."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value = parse(raw)
    if value is None:
        raise ValueError(f"{name}={raw!r} is not {what}; set it to {example}")
    return value


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def runtime_versions(names: list[str] | None = None) -> dict[str, str | None]:
    """The union of the ``versions()`` of the named runtimes (default: every registered runtime)."""
    from .runtimes import get_runtime, runtime_names

    out: dict[str, str | None] = {}
    for name in names if names is not None else runtime_names():
        try:
            out.update(get_runtime(name).versions())
        except Exception as exc:  # a broken plugin runtime must not stop the run; its cases say why
            log.warning("runtime %s: versions() failed (%s)", name, exc)
    return out


@lru_cache(maxsize=1)
def environment() -> dict:
    """Versions, CPU (model and flags), GPU and git state (sha, dirty, diff hash): what a figure depends on
    besides the case."""
    import numpy
    import torch
    import transformers

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": list(cpu_flags()),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "onnxruntime": None,
    }
    env.update(runtime_versions())
    env.update(git_state())
    return env


def _git(*args: str) -> bytes | None:
    """``git ARGS`` run beside this module: its stdout, or None where git or the repository is missing."""
    try:
        proc = subprocess.run(["git", *args], capture_output=True, cwd=Path(__file__).parent, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


# Run directories are written under results/ while a run goes on; they change no figure, so they do not dirty the tree.
_NOT_SOURCE = ":(exclude)results"


def git_state() -> dict[str, str | bool | None]:
    """The git sha of this source tree, whether it differs from that commit (``git_dirty``: tracked changes or
    untracked files git does not ignore, outside results/) and a hash of the difference (``git_diff_sha``).

    Where this module is not in a git work tree of its own (the gate's ``git archive`` export, an installed
    wheel) ``git_dirty`` and ``git_diff_sha`` are None: unknown, not clean."""
    sha = _git("rev-parse", "--short", "HEAD")
    state: dict[str, str | bool | None] = {"git_sha": sha.decode().strip() or None if sha else None,
                                           "git_dirty": None, "git_diff_sha": None}
    top = _git("rev-parse", "--show-toplevel")
    here = Path(__file__).resolve()
    if top is None or Path(top.decode().strip()).resolve() / "bench" / here.name != here:
        return state  # not our repository (an export inside some other work tree), or none
    status = _git("status", "--porcelain", "-z", "--", ".", _NOT_SOURCE)
    diff = _git("diff", "HEAD", "--binary", "--", ".", _NOT_SOURCE)
    untracked = _git("ls-files", "--others", "--exclude-standard", "-z", "--", ".", _NOT_SOURCE)
    if status is None or diff is None or untracked is None:
        return state
    state["git_dirty"] = bool(status)
    if status:
        h = hashlib.sha256(diff)
        root = Path(top.decode().strip())
        for name in sorted(n for n in untracked.split(b"\0") if n):
            h.update(b"\0" + name + b"\0")
            try:
                h.update((root / name.decode()).read_bytes())
            except OSError:
                pass  # vanished since listed, or unreadable: its name still counts
        state["git_diff_sha"] = h.hexdigest()[:12]
    return state


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages, or None where the OS keeps none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def cpu_clock() -> dict[str, float] | None:
    """CPU seconds the whole machine has been busy (/proc/stat: all but idle and iowait; steal included, as time
    another guest took) and CPU seconds of this process and its descendants (``_own_cpu_s``), now, with a
    monotonic wall clock. None where /proc/stat is missing (not Linux)."""
    import time

    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    return {"machine_busy_s": (sum(ticks) - ticks[3] - ticks[4]) / hz, "own_s": _own_cpu_s(), "wall_s": time.monotonic()}


def _own_cpu_s() -> float:
    """CPU seconds of this process and all its descendants so far: ``os.times`` (this process and the children
    it has reaped) plus each live descendant's own and reaped-children time (torch.compile's worker pool, a
    peer child not yet closed), so a run's own subprocesses never count as another job's load."""
    t = os.times()
    own = t.user + t.system + t.children_user + t.children_system
    try:
        import psutil

        for child in psutil.Process().children(recursive=True):
            try:
                c = child.cpu_times()
                own += c.user + c.system + getattr(c, "children_user", 0.0) + getattr(c, "children_system", 0.0)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
    except ImportError:
        pass
    return own


def foreign_cpu_share(start: dict | None, end: dict | None, cores: int | None) -> float | None:
    """The share of the machine's CPU capacity (``cores`` x wall time between two ``cpu_clock()`` readings) that
    processes other than this run used: 0 on a quiet machine, 0.5 where another job kept one of two cores busy.
    Unlike the load average it does not count the run's own threads. None where either reading is missing."""
    if not start or not end or not cores:
        return None
    wall = end["wall_s"] - start["wall_s"]
    if wall <= 0:
        return None
    foreign = (end["machine_busy_s"] - start["machine_busy_s"]) - (end["own_s"] - start["own_s"])
    return round(min(1.0, max(0.0, foreign / (wall * cores))), 3)


def record_load(env_json: Path, start: list[float] | None, end: list[float] | None,
                foreign_share: float | None = None) -> None:
    """Add the load average at a run's start and end (``load_avg_start``, ``load_avg_end``) and, where measured,
    the share of the CPU other processes used during the run (``foreign_cpu_share``) to its env.json (written
    with ``environment()`` where the run left none): committed figures are measured on a quiet machine, and the
    report warns on a busy one (bench/report/provenance.py states the rule)."""
    from .rundir import update_json

    fields = {"load_avg_start": start, "load_avg_end": end}
    if foreign_share is not None:
        fields["foreign_cpu_share"] = foreign_share
    update_json(Path(env_json), fields, environment)


def _case_versions(case, env: dict) -> dict:
    """Versions of the libraries the case's runtime and baseline runtime run on, beyond ``ENV_KEYS``."""
    runtimes = sorted({case.runtime, case.baseline.runtime})
    keys = sorted(set(runtime_versions(runtimes)) - set(ENV_KEYS))
    return {k: env.get(k) for k in keys}


def fingerprint(case, env: dict) -> str:
    """A hash of the case definition and the environment fields that change what its figures mean."""
    payload = {"case": case.to_dict(), "env": {k: env.get(k) for k in ENV_KEYS}}
    extra = _case_versions(case, env)
    if extra:  # only cases whose runtime has its own library: older cases keep their fingerprints
        payload["versions"] = extra
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def env_difference(a: dict, b: dict) -> tuple[str, object, object] | None:
    """The first fingerprinted environment field that differs between two runs, or None."""
    for k in ENV_KEYS:
        if a.get(k) != b.get(k):
            return k, a.get(k), b.get(k)
    return None
