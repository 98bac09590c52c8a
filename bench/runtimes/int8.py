"""What the int8 runtimes (torch-int8, onnxruntime-int8) share: quantization changes the numbers, so the
equality gate is a quality floor (the pooled cosine to the fp32 torch-masked outputs on the case's fixed
batch at least ``QUALITY_FLOOR``; below it the case fails with the number), not an elementwise tolerance;
they quantize a float32 model (int8 is the runtime, not the dtype); their baseline is dense torch."""

from __future__ import annotations

import logging

from .base import Runtime

__all__ = ["QUALITY_FLOOR", "Int8Runtime"]

log = logging.getLogger("bench.runtimes.int8")

QUALITY_FLOOR = 0.90  # pooled cosine to fp32 on the fixed batch; see the README for what int8 of MiniLM measures


class Int8Runtime(Runtime):
    """An int8 runtime: quality-floor gate, float32 input only, dense torch baseline."""

    baseline_runtime = "torch-dense"
    quality_floor = QUALITY_FLOOR
    compute_dtype = "int8"
    quantizes = "model"  # what it quantizes, for the dtype message

    def incompatible(self, case) -> str | None:
        if case.dtype != "float32":
            return f"{self.name} quantizes the float32 {self.quantizes}; use dtype float32 (int8 is the runtime, not the dtype)"
        return None
