"""torch-compile: the baked variant through ``torch.compile`` (inductor, default mode, static shapes).

Compilation happens in ``prepare``: the first calls on the case's fixed batch compile and are timed
apart; the seconds go into the record's ``compile_s`` and are excluded from latency (the paired rounds
start after them). A model inductor cannot compile (no C++ compiler, an unsupported op) fails the case with
the compiler's first line. Baseline: dense torch eager in the case's dtype (does compiling pay, and does it
stack with pruning?). Outputs must match torch-masked within ``fp32_tolerance`` (inductor fuses and
reorders floating-point sums, so not bit for bit).
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import torch
from torch import nn

from .base import Runtime, TorchRunner, Variant, cuda_unavailable

__all__ = ["RUNTIME", "TorchCompile", "WARMUP_CALLS"]

log = logging.getLogger("bench.runtimes.torch_compile")

WARMUP_CALLS = 2  # the first compiles; the second checks that nothing recompiles on the same shapes


class TorchCompile(Runtime):
    name = "torch-compile"
    help = "torch.compile (inductor) of the baked variant; compile time recorded, excluded from latency; vs dense torch eager"
    baseline_runtime = "torch-dense"
    fp32_tolerance = 1e-4

    def unavailable(self, device: str) -> str | None:
        reason = cuda_unavailable(device)
        if reason:
            return reason
        if device == "cpu" and not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
            return "torch.compile's inductor needs a C++ compiler on CPU and none is on PATH (install g++)"
        return None

    def unserved(self, scenario: str) -> str | None:
        if scenario != "fixed":
            return (f"torch-compile compiles static shapes (dynamic=False): every {scenario} request or batch of "
                    "another length would recompile inside the timing; use scenario fixed")
        return None

    def prepare(self, variant: Variant, workdir: Path, device: str) -> TorchRunner:
        from ..measure.size import save_safetensors

        model = variant.baked().to(device).eval()
        artifact = save_safetensors(model, Path(workdir) / "model.safetensors")  # loaded before compiling: the dense weights
        compiled = torch.compile(model, backend="inductor", dynamic=False)
        runner = CompiledRunner(compiled, variant.inputs, device, artifact)
        runner.model = model  # the plain encoder for counting (the compiled wrapper shares its weights)
        t0 = time.perf_counter()
        try:
            for _ in range(WARMUP_CALLS):
                runner()
        except Exception as exc:  # inductor errors are many types; the case fails with the first line
            raise RuntimeError(f"torch.compile failed ({type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]})") from exc
        compile_s = time.perf_counter() - t0
        runner.record = {"compile_s": round(compile_s, 3)}
        runner.info = f"torch.compile backend=inductor dynamic=False; compile {compile_s:.1f} s ({WARMUP_CALLS} warm-up calls)"
        log.debug("%s", runner.info)
        return runner


class CompiledRunner(TorchRunner):
    """A compiled module; a fresh process loads the plain one and compiles it again (``compile`` in the spec)."""

    def serving_files(self, directory: Path, net: nn.Module | None = None) -> dict:
        return {**super().serving_files(directory, self.model), "compile": True}


RUNTIME = TorchCompile()
