"""Run one case in its own subprocess with a wall-clock limit (``prunebench run --isolate``).

The child is a fresh interpreter (spawned, never forked from the runner) in its own session, so its
process group -- the child and anything it starts, such as the memory measurement's fork server --
can be killed as one when the limit expires. The child runs the case exactly as the in-process path
does (``Session.run``) and hands back its Record and raw latency samples as JSON; the parent writes
the Record. A child that dies without answering becomes a record of its own:

- ``timeout``: no answer within the limit; the process group was killed (SIGKILL).
- ``oom``: the child raised MemoryError / an OutOfMemoryError, or was killed by SIGKILL that the
  runner did not send *and* there is memory evidence: the cgroup's ``oom_kill`` counter rose while
  it ran, or its process group's sampled RSS had reached 80% of the memory available at its start.
- ``crashed``: any other death: the signal or exit code, and the last lines of its stderr.

The whole output of a child that timed out, crashed or ran out of memory is kept in
``RUN_DIR/logs/<case id>.log``.

The child times with the same paired protocol as the in-process path (``bench.measure.paired``:
balanced blocks, identical GC state on both sides, the same stopping rule) and ``run_isolated``
returns its raw rounds; the plugin (``bench.plugin``) adds them to ``benchmark.json`` as it does for
an in-process case, so its figures are the same samples the Record was computed from.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path

__all__ = ["DEFAULT_TIMEOUT_S", "IsolatedCaseError", "Outcome", "classify_exception", "classify_exit", "run_child",
           "run_isolated"]

log = logging.getLogger("bench.launch.isolate")

DEFAULT_TIMEOUT_S = 900.0  # per isolated case, when --case-timeout is not given
OOM_RSS_FRACTION = 0.8  # sampled RSS / memory available at start that counts as memory evidence
_POLL_S = 0.1
_TAIL_LINES = 6


class IsolatedCaseError(Exception):
    """An isolated case that did not succeed; ``status`` is failed, oom, crashed or timeout."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Outcome:
    """What came back from one child: its status and error, and the Record and samples if it answered."""

    status: str
    error: str | None
    record: dict | None
    samples: tuple[float, ...]
    duration_s: float
    log_path: Path | None = None


def _one_line(text: str, limit: int = 500) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[0][:limit] if lines else ""


def classify_exception(exc: BaseException) -> tuple[str, str]:
    """Status and one-line error for an exception a case raised (in process or in the child)."""
    name = type(exc).__name__
    status = getattr(exc, "status", None)
    if isinstance(exc, IsolatedCaseError) and status:
        return status, str(exc)
    msg = getattr(exc, "msg", None) if type(exc).__module__.startswith("_pytest") else None
    msg = _one_line(exc if msg is None else msg)
    if isinstance(exc, MemoryError) or "OutOfMemory" in name:
        return "oom", f"{name}: {msg}"
    if isinstance(exc, TimeoutError) or (name == "Failed" and msg.startswith("Timeout")):  # pytest-timeout's signal method
        return "timeout", f"{name}: {msg}"
    return "failed", f"{name}: {msg}"


def classify_exit(returncode: int | None, *, timed_out: bool, timeout_s: float, memory_evidence: str | None,
                  stderr_tail: str) -> tuple[str, str]:
    """Status and one-line error for a child that gave no answer (pure: the rule in the module doc)."""
    tail = f"; stderr: {stderr_tail}" if stderr_tail else ""
    if timed_out:
        return "timeout", f"no result within {timeout_s:g}s wall clock (--case-timeout); its process group was killed"
    if returncode is not None and returncode < 0:
        try:
            sig = signal.Signals(-returncode).name
        except ValueError:
            sig = f"signal {-returncode}"
        if -returncode == signal.SIGKILL and memory_evidence:
            return "oom", f"killed by SIGKILL with memory evidence ({memory_evidence}){tail}"
        return "crashed", f"killed by {sig}{tail}"
    if returncode:
        return "crashed", f"exited with code {returncode}{tail}"
    return "crashed", f"exited without a result{tail}"


def _stderr_tail(path: Path, lines: int = _TAIL_LINES, limit: int = 600) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(kept)[-limit:]


def _oom_kills() -> int | None:
    """The cgroup v2 ``oom_kill`` counter of this process's cgroup (None where it cannot be read)."""
    try:
        rel = next(ln[3:] for ln in Path("/proc/self/cgroup").read_text().splitlines() if ln.startswith("0::"))
        for line in Path("/sys/fs/cgroup" + rel.rstrip("/"), "memory.events").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except (OSError, StopIteration, ValueError):
        pass
    return None


def _group_rss(pid: int) -> int:
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_child(job: dict, timeout_s: float, workdir: Path) -> Outcome:
    """Run ``job`` (see ``_child_main``) in a fresh interpreter in its own process group, within ``timeout_s``."""
    import psutil

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    job_path, result_path, log_path = workdir / "job.json", workdir / "result.json", workdir / "child.log"
    result_path.unlink(missing_ok=True)
    job_path.write_text(json.dumps({**job, "result": str(result_path)}))
    env = {**os.environ, "TMPDIR": str(workdir)}  # the child's temp files die with the case's workdir
    cmd = [sys.executable, "-c", "import sys; from bench.launch.isolate import _child_main; sys.exit(_child_main(sys.argv[1]))",
           str(job_path)]
    available = psutil.virtual_memory().available
    kills_before = _oom_kills()
    t0 = time.monotonic()
    peak = 0
    timed_out = False
    with open(log_path, "wb") as log_fh:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_fh, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            while True:
                try:
                    proc.wait(timeout=_POLL_S)
                    break
                except subprocess.TimeoutExpired:
                    peak = max(peak, _group_rss(proc.pid))
                    if time.monotonic() - t0 > timeout_s:
                        timed_out = True
                        _killpg(proc.pid)
                        proc.wait()
                        break
        finally:
            _killpg(proc.pid)  # leftovers (e.g. a fork server) go with it; on Ctrl-C the child goes too
            if proc.poll() is None:
                proc.wait()
    duration = round(time.monotonic() - t0, 2)
    if not timed_out and result_path.is_file():
        try:
            res = json.loads(result_path.read_text())
            return Outcome(res["status"], res.get("error"), res["record"], tuple(res.get("samples", ())), duration, log_path)
        except (ValueError, KeyError) as exc:
            log.warning("unreadable result from the child of %s: %s", job.get("case_id"), exc)
    evidence = None
    kills_after = _oom_kills()
    if kills_before is not None and kills_after is not None and kills_after > kills_before:
        evidence = f"cgroup oom_kill {kills_before} -> {kills_after}"
    elif available and peak >= OOM_RSS_FRACTION * available:
        evidence = f"RSS reached {peak / 2**20:.0f} MiB of {available / 2**20:.0f} MiB available"
    status, error = classify_exit(proc.returncode, timed_out=timed_out, timeout_s=timeout_s, memory_evidence=evidence,
                                  stderr_tail=_stderr_tail(log_path))
    return Outcome(status, error, None, (), duration, log_path)


def run_isolated(session, case, rec) -> tuple[float, ...]:
    """Run ``case`` in a child process and fill ``rec`` from it; return the child's latency rounds
    (seconds, the samples behind ``rec``'s latency figures); raise IsolatedCaseError unless it succeeded."""
    from ..records import Record

    job = {"plan": replace(session.plan, cases=(case,)).to_dict(), "case_id": case.case_id, "run_id": session.run_id,
           "out_dir": str(session.out_dir), "case_timeout_s": session.case_timeout_s}
    timeout = session.case_timeout_s or DEFAULT_TIMEOUT_S
    workdir = session.workdir(case)
    try:
        out = run_child(job, timeout, workdir)
        if out.record:
            known = set(asdict(Record()))
            for k, v in out.record.items():
                if k in known:
                    setattr(rec, k, v)
        if out.status == "ok":
            return out.samples
        if out.record is None:
            rec.duration_s = out.duration_s
        rec.status, rec.error = out.status, out.error
        if out.log_path is not None and out.status in ("crashed", "timeout", "oom"):
            logs = Path(session.out_dir) / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out.log_path, logs / (case.case_id.replace("/", "__") + ".log"))
        raise IsolatedCaseError(out.status, out.error or out.status)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _child_main(job_path: str) -> int:
    """The child: run one case in process and write ``{"status", "error", "record", "samples"}`` as JSON."""
    logging.basicConfig(level=os.environ.get("PRUNEBENCH_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    job = json.loads(Path(job_path).read_text())
    from ..engine import Session
    from ..plan import Plan
    from ..records import Record

    plan = Plan.from_dict(job["plan"])
    case = next(c for c in plan.cases if c.case_id == job["case_id"])
    session = Session(plan, Path(job["out_dir"]), job["run_id"], case_timeout_s=job.get("case_timeout_s"))
    rec = Record()
    t0 = time.perf_counter()
    try:
        session.describe(case, rec)
        session.run(case, rec)
        rec.status = "ok"
    except Exception as exc:  # the parent records it; the traceback goes to the child's log
        traceback.print_exc()
        rec.status, rec.error = classify_exception(exc)
        rec.duration_s = round(time.perf_counter() - t0, 2)
    finally:
        session.close()
    result = {"status": rec.status, "error": rec.error, "record": asdict(rec), "samples": list(session.last_samples)}
    tmp = Path(job["result"] + ".tmp")
    tmp.write_text(json.dumps(result, default=str))
    os.replace(tmp, job["result"])
    return 0
