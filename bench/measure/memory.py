"""Peak memory of a variant serving inference, measured in a fresh process that loads what the runtime holds.

The parent writes what the runtime serves (``Runner.serving_files``: the runtime's module with its
tensors — masked ``weight_orig`` + ``weight_mask`` + hooks, baked dense tensors, sparse CSR/BSR
tensors — pickled with ``torch.save``; or the ONNX file ORT loads) and a clean child, forked from a
fork server that has imported torch and transformers (its modeling_utils too) but never run a kernel, loads it. The child first
imports the code that artifact needs (the model's classes, ONNX Runtime) and reads the floor RSS, then
loads the artifact, runs one warm-up inference (lazy initialisation, compilation), resets the kernel's
peak-RSS counter (``/proc/self/clear_refs`` = 5), runs inference twice and reads ``VmHWM``: the peak resident memory while serving, variant included. ``model_mb`` =
peak - floor. Nothing of how the variant was built (the dense source model, pruning's scratch tensors,
allocator state) reaches the child, so two artifacts holding identical tensors measure the same
(A/A within a few percent, tested). On CUDA it is ``torch.cuda.max_memory_allocated`` over the same span.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing as mp
import os
import traceback
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Memory", "MemoryMeter", "measure_memory", "prestart", "settle"]

log = logging.getLogger("bench.measure.memory")
# transformers imports its model code lazily; modeling_utils (every model class's base, seconds to import) is
# preloaded once here rather than in every child; the child's floor RSS is read after its imports either way
_PRELOAD = ["torch", "transformers", "transformers.modeling_utils", "safetensors", "bench.measure.memory"]
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


def _steady_malloc() -> None:
    """One malloc arena and a fixed mmap threshold in the child: with per-thread arenas and glibc's
    sliding threshold, the same inference left 137 or 146 MB above the floor from run to run; with
    these, identical tensors measure the same (the A/A test in tests/test_measure.py)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, 1)  # M_ARENA_MAX
        libc.mallopt(-3, 1 << 17)  # M_MMAP_THRESHOLD: 128 KiB, fixed
    except (OSError, AttributeError):
        pass


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


def _loader(spec: dict):
    """Import what the artifact needs (counted in the floor), and return a function that loads it and
    returns a callable running one inference."""
    import importlib

    import torch

    for name in spec.get("imports", ()):
        importlib.import_module(name)
    if spec["kind"] == "onnx":
        from bench.runtimes.onnx_runtime import OrtRunner

        def load():
            return OrtRunner(Path(spec["path"]), torch.load(spec["inputs"]), spec["device"], spec["threads"])
        return load
    if spec["kind"] == "openvino":
        import openvino as ov

        def load():
            core = ov.Core()
            compiled = core.compile_model(core.read_model(spec["path"]), "CPU", spec["config"])
            request, feed = compiled.create_infer_request(), {k: v.numpy() for k, v in torch.load(spec["inputs"]).items()}
            return lambda: request.infer(feed)
        return load
    if spec["kind"] != "torch":
        raise ValueError(f"unknown serving artifact kind {spec['kind']!r}")

    def load():
        obj = torch.load(spec["path"], weights_only=False)
        net, inputs = obj["net"].eval(), obj["inputs"]
        if spec.get("compile"):
            net = torch.compile(net, backend="inductor", dynamic=False)

        def run() -> None:
            with torch.inference_mode():
                net(**inputs)
        return run
    return load


def _child(spec: dict, queue) -> None:
    try:
        _steady_malloc()
        import torch

        torch.set_num_threads(spec["threads"])
        load = _loader(spec)
        gc.collect()
        _trim()
        floor = _status_mb("VmRSS")
        run = load()
        run()  # warm-up: lazy initialisation (and compilation) is not serving
        gc.collect()
        _trim()
        if spec["device"] == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            run()
            run()
            torch.cuda.synchronize()
            queue.put(("ok", Memory(torch.cuda.max_memory_allocated() / 2**20, 0.0, True)))
            return
        reset = _reset_hwm()
        run()
        run()
        queue.put(("ok", Memory(_status_mb("VmHWM"), floor, reset)))
    except BaseException as exc:  # report everything to the parent, which records it
        queue.put(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"))


def _context():
    global _ctx
    if _ctx is None:
        _ctx = mp.get_context("forkserver")
        _ctx.set_forkserver_preload(_PRELOAD)
    return _ctx


def _noop() -> None:
    """A child that does nothing: forking it waits for the fork server to be ready."""


def prestart() -> None:
    """Start the fork server without waiting for it: its imports (torch, transformers: seconds of one core) then
    overlap the case's build instead of delaying its first memory child. A no-op where children are spawned."""
    if _context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def settle(timeout_s: float = 300.0) -> None:
    """Return once the fork server has finished its imports (it forks a child only then): called before a case is
    timed, so nothing the server does runs beside the timing."""
    ctx = _context()
    if ctx.get_start_method() == "forkserver":
        proc = ctx.Process(target=_noop, daemon=True)
        proc.start()
        proc.join(timeout_s)


def measure_memory(runner, workdir: Path, threads: int, timeout_s: float = 300.0) -> Memory:
    """Peak memory of serving ``runner``'s artifact (written to ``workdir``) in a fresh process; raises on
    failure, TimeoutError after ``timeout_s`` (``--case-timeout``)."""
    return _measure_spec({**runner.serving_files(Path(workdir)), "threads": threads}, timeout_s)


def spec_digest(spec: dict) -> str | None:
    """A hash of what a memory child would load and how (its pickled module and batch, the imports, device,
    threads, compile flag), or None for artifacts that are not one self-contained file (ONNX, OpenVINO IR: their
    weights may sit in files beside the one named): those are measured every time."""
    import hashlib
    import json

    if spec.get("kind") != "torch" or set(spec) - {"kind", "path", "imports", "device", "threads", "compile"}:
        return None
    h = hashlib.sha256(json.dumps({k: v for k, v in spec.items() if k != "path"}, sort_keys=True).encode())
    with open(spec["path"], "rb") as fh:
        h.update(hashlib.file_digest(fh, "sha256").digest())
    return h.hexdigest()


def _measure_spec(spec: dict, timeout_s: float = 300.0) -> Memory:
    ctx = _context()
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(spec, queue), daemon=True)
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



class MemoryMeter:
    """A run's memory measurements (each in a fresh process, limited to ``timeout_s``): each distinct artifact
    once (:func:`spec_digest`: a second case serving the same bytes reuses the first's figure), and each
    baseline twice, cached per baseline: the first is the reference, the second (always measured afresh) over
    the first the run's A/A figure (``mem_aa_ratio``), from which the report's noise band comes."""

    def __init__(self, timeout_s: float | None = None, measure=_measure_spec):
        self._limit = {} if timeout_s is None else {"timeout_s": timeout_s}
        self._measure = measure
        self._baselines: dict[str, tuple[Memory, float | None]] = {}
        self._by_artifact: dict[str, Memory] = {}
        self.measured = 0  # fresh processes started

    def prestart(self) -> None:
        """Start the fork server the children come from now, in the background (:func:`prestart`)."""
        prestart()

    def settle(self) -> None:
        """Wait until the fork server is idle (:func:`settle`), within the run's time limit."""
        settle(**self._limit)

    def _fresh(self, spec: dict) -> Memory:
        self.measured += 1
        return self._measure(spec, **self._limit)

    def measure(self, runner, workdir: Path, threads: int) -> Memory:
        """Peak memory of serving ``runner``'s artifact (see :func:`measure_memory`), once per distinct artifact."""
        return self._once({**runner.serving_files(Path(workdir)), "threads": threads})

    def _once(self, spec: dict) -> Memory:
        key = spec_digest(spec)
        if key is None:
            return self._fresh(spec)
        if key not in self._by_artifact:
            self._by_artifact[key] = self._fresh(spec)
        return self._by_artifact[key]

    def baseline(self, key: str, runner, workdir: Path, threads: int) -> tuple[Memory, float | None]:
        """The baseline ``key``'s memory (its first measurement) and the A/A ratio second / first."""
        if key not in self._baselines:
            spec = {**runner.serving_files(Path(workdir)), "threads": threads}  # written once: both children read it
            a, b = self._once(spec), self._fresh(spec)
            self._baselines[key] = (a, b.model_mb / a.model_mb if a.model_mb > 0 else None)
        return self._baselines[key]


if os.environ.get("PRUNEBENCH_NO_FORKSERVER"):
    _ctx = mp.get_context("spawn")
