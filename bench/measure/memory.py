"""Peak memory of a variant serving inference, measured in a fresh process.

Each measurement forks a clean child from a fork server that has imported torch and transformers
but never run a kernel (so forking is safe and cheap). The child first loads the dense model once and frees it
(so the code, tokenizer and allocator state any loaded model brings are counted in the floor), reads
the floor RSS, builds the variant and prepares the runtime, drops the dense source model, resets the
kernel's peak-RSS counter (``/proc/self/clear_refs`` = 5), runs inference twice and reads ``VmHWM``:
the peak resident memory while serving, variant included. ``model_mb`` = peak - floor. On CUDA it is
``torch.cuda.max_memory_allocated`` over the same span.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing as mp
import os
import traceback
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Memory", "measure_memory"]

log = logging.getLogger("bench.measure.memory")
_PRELOAD = ["torch", "transformers", "safetensors", "bench.measure.memory"]
_ctx = None


@dataclass(frozen=True)
class Memory:
    peak_mb: float  # peak RSS (CPU) or peak allocated (CUDA) while serving, model resident
    floor_mb: float  # RSS of the same process before loading anything (CPU), 0 on CUDA
    hwm_reset: bool  # whether the kernel's peak counter could be reset after loading

    @property
    def model_mb(self) -> float:
        """Peak above the floor: what the model and its inference add."""
        return self.peak_mb - self.floor_mb


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise OSError(f"{field} not in /proc/self/status")


def _trim() -> None:
    """Give freed heap pages back to the OS, so garbage from building the variant is not counted."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _child(case: dict, workdir: str, queue) -> None:
    try:
        import torch

        from bench import engine

        torch.set_num_threads(case["threads"])
        # The floor: load the dense model once and free it, so the code, tokenizer and allocator state that
        # any loaded model brings are in the floor and the rest is what the variant itself needs.
        engine.get_model(case["model"])
        engine.forget_models()
        gc.collect()
        _trim()
        floor = _status_mb("VmRSS")
        runner = engine.build_runner(case, Path(workdir))
        engine.forget_models()  # the dense source model is not part of what the variant needs to serve
        gc.collect()
        _trim()
        if case["device"] == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            runner()
            runner()
            queue.put(("ok", Memory(torch.cuda.max_memory_allocated() / 2**20, 0.0, True)))
            return
        reset = _reset_hwm()
        runner()
        runner()
        queue.put(("ok", Memory(_status_mb("VmHWM"), floor, reset)))
    except BaseException as exc:  # report everything to the parent, which records it
        queue.put(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"))


def _context():
    global _ctx
    if _ctx is None:
        _ctx = mp.get_context("forkserver")
        _ctx.set_forkserver_preload(_PRELOAD)
    return _ctx


def measure_memory(case: dict, workdir: Path, timeout_s: float = 300.0) -> Memory:
    """Peak memory of ``case`` (a Case as a dict) in a fresh process; raises on failure, TimeoutError
    after ``timeout_s`` (``--case-timeout``)."""
    ctx = _context()
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(case, str(workdir), queue), daemon=True)
    proc.start()
    try:
        status, payload = queue.get(timeout=timeout_s)
    except Exception as exc:
        proc.kill()
        proc.join()
        if proc.exitcode not in (None, -9):  # the child died by itself
            raise RuntimeError(f"memory measurement child died (exit code {proc.exitcode}) without an answer") from exc
        raise TimeoutError(f"memory measurement got no answer in {timeout_s:g}s and was killed; raise --case-timeout") from exc
    proc.join(timeout=30)
    if status != "ok":
        raise RuntimeError(f"memory measurement failed in the child process: {payload.strip().splitlines()[0]}")
    return payload


if os.environ.get("PRUNEBENCH_NO_FORKSERVER"):
    _ctx = mp.get_context("spawn")
