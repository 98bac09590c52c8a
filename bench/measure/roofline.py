"""Roofline: how far a row's achieved compute rate is from what this CPU's matmuls reach.

At a run's start ``measure_peaks`` times a short matrix-multiply probe per dtype with the run's thread count
(``PROBE_SHAPE``, about ``PROBE_S`` seconds each; the fastest call counts, the least disturbed by other jobs):
float32 always; each half dtype the CPU runs natively (``bench.dtypes.DTYPE_FLAGS``: bf16 on avx512_bf16 /
AMX, fp16 on avx512_fp16 / AMX-FP16), skipped with the reason otherwise, as the cases are; int8 where torch
offers an int8 GEMM on the CPU (``torch._int_mm``), else skipped with the reason. The peaks and the probe's
shape go into the run's env.json (``bench.plugin``'s ``peaks`` fixture). Pure: the CPU flags and the runtime's
compute dtype are the caller's arguments.

A row's achieved rate is its variant's FLOPs per forward (2 x the MACs ``bench.measure.flops.macs`` counts:
nonzero weights only, so a dense kernel multiplying zeros shows a lower rate, the useful work) over its median
latency; the peak that applies (``peak_dtype``) is the row's dtype where that is not float32 (bf16 rows: the
bf16 peak), else what its runtime computes in (``Runtime.compute_dtype``: int8 for the int8 runtimes), else
float32; a dtype without a measured peak falls back to float32 (what an emulation runs in).
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import torch

__all__ = ["PROBE_S", "PROBE_SHAPE", "applicable_peak", "int8_gemm_unavailable", "matmul_gflops", "measure_peaks",
           "peak_dtype", "probe_dtypes", "roofline_fields"]

log = logging.getLogger("bench.measure.roofline")

PROBE_SHAPE = (1024, 1024, 1024)  # (m, k, n): A is m x k, B is k x n; 2.1 GFLOP a call, big enough to saturate
PROBE_S = 0.3  # seconds of calls per dtype (after two warm-up calls)
_TORCH = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def int8_gemm_unavailable() -> str | None:
    """Why torch has no int8 GEMM on this CPU (``torch._int_mm`` missing or refusing a CPU tensor), or None."""
    fn = getattr(torch, "_int_mm", None)
    if fn is None:
        return f"torch {torch.__version__} has no torch._int_mm (int8 GEMM); int8 rows get no peak"
    try:
        a = torch.ones(32, 32, dtype=torch.int8)
        fn(a, a)
    except (RuntimeError, NotImplementedError) as exc:
        return f"torch._int_mm does not run on this CPU ({str(exc).splitlines()[0]}); int8 rows get no peak"
    return None


def probe_dtypes(flags: tuple[str, ...], dtype_flags: dict[str, tuple[str, ...]]) -> tuple[list[str], dict[str, str]]:
    """The dtypes to probe on a CPU with ``flags`` and, for each left out, why: float32; each dtype of
    ``dtype_flags`` (``bench.dtypes.DTYPE_FLAGS``: dtype -> flags of which one makes it native) the CPU has a flag
    for; int8 where torch has an int8 GEMM here."""
    probe, skipped = ["float32"], {}
    for dtype, need in dtype_flags.items():
        if any(f in flags for f in need):
            probe.append(dtype)
        else:
            skipped[dtype] = f"this CPU has none of {', '.join(need)}: {dtype} would be emulated"
    why = int8_gemm_unavailable()
    if why:
        skipped["int8"] = why
    else:
        probe.append("int8")
    return probe, skipped


def _operands(dtype: str, shape: tuple[int, int, int]) -> Callable[[], torch.Tensor]:
    m, k, n = shape
    g = torch.Generator().manual_seed(0)
    if dtype == "int8":
        a = torch.randint(-64, 64, (m, k), dtype=torch.int8, generator=g)
        b = torch.randint(-64, 64, (k, n), dtype=torch.int8, generator=g)
        return lambda: torch._int_mm(a, b)
    a = torch.randn(m, k, generator=g).to(_TORCH[dtype])
    b = torch.randn(k, n, generator=g).to(_TORCH[dtype])
    return lambda: a @ b


def matmul_gflops(dtype: str, threads: int, shape: tuple[int, int, int] = PROBE_SHAPE, seconds: float = PROBE_S,
                  timer: Callable[[], float] = time.perf_counter) -> float:
    """GFLOP/s of the fastest ``shape`` matmul in ``dtype`` on ``threads`` threads within ``seconds`` (at least
    three timed calls): 2 m k n FLOPs over the call's time. The thread count is restored afterwards."""
    m, k, n = shape
    call = _operands(dtype, shape)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            call(), call()  # warm-up: oneDNN's kernel selection, page faults
            best, calls, end = float("inf"), 0, timer() + seconds
            while calls < 3 or timer() < end:
                t0 = timer()
                call()
                best = min(best, timer() - t0)
                calls += 1
    finally:
        torch.set_num_threads(before)
    return 2 * m * k * n / max(best, 1e-12) / 1e9


def measure_peaks(threads: int, flags: tuple[str, ...], dtype_flags: dict[str, tuple[str, ...]], shape: tuple[int, int, int] = PROBE_SHAPE,
                  seconds: float = PROBE_S, gflops: Callable[..., float] = matmul_gflops) -> dict:
    """The env.json fields of the probe: ``peak_gflops`` ({dtype: GFLOP/s}) and ``peak_probe`` (shape, threads,
    seconds per dtype, and the dtypes skipped with why; ``flags`` and ``dtype_flags`` as ``probe_dtypes`` takes them).
    A dtype whose probe raises is skipped with its error."""
    dtypes, skipped = probe_dtypes(flags, dtype_flags)
    peaks: dict[str, float] = {}
    for dtype in dtypes:
        try:
            peaks[dtype] = round(gflops(dtype, threads, shape, seconds), 1)
        except (RuntimeError, NotImplementedError) as exc:
            skipped[dtype] = f"the {dtype} matmul probe failed: {str(exc).splitlines()[0]}"
    for dtype, why in skipped.items():
        log.info("peak probe: %s skipped (%s)", dtype, why)
    return {"peak_gflops": peaks,
            "peak_probe": {"shape": list(shape), "threads": threads, "seconds": seconds, "best_of": "fastest call",
                           "skipped": skipped}}


def peak_dtype(dtype: str, compute_dtype: str | None = None) -> str:
    """Which dtype's peak bounds a row: its own ``dtype`` where not float32, else what its runtime computes in
    (``compute_dtype``: int8 for the int8 runtimes), else float32."""
    return dtype if dtype != "float32" else compute_dtype or "float32"


def applicable_peak(peaks: dict[str, float] | None, dtype: str, compute_dtype: str | None = None
                    ) -> tuple[str, float] | None:
    """(dtype, GFLOP/s) of the peak that bounds a row (``peak_dtype``), falling back to float32 where that dtype
    has none measured; None where nothing was measured."""
    if not peaks:
        return None
    for d in (peak_dtype(dtype, compute_dtype), "float32"):
        if peaks.get(d):
            return d, float(peaks[d])
    return None


def roofline_fields(macs: int | None, latency_ms: float | None, peak: tuple[str, float] | None) -> dict:
    """The Record fields of a row: ``achieved_gflops`` (2 x ``macs`` per forward over ``latency_ms``), and where a
    peak applies ``peak_dtype``, ``peak_gflops`` and ``peak_fraction`` (achieved / peak); None where unknown."""
    out: dict = {"achieved_gflops": None, "peak_dtype": None, "peak_gflops": None, "peak_fraction": None}
    if not macs or not latency_ms or latency_ms <= 0:
        return out
    achieved = 2 * macs / (latency_ms / 1e3) / 1e9
    out["achieved_gflops"] = achieved
    if peak is not None:
        out.update(peak_dtype=peak[0], peak_gflops=peak[1], peak_fraction=achieved / peak[1])
    return out
