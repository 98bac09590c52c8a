"""openvino-auto: the ``openvino`` runtime's path (the baked variant's ONNX export converted to IR, the CPU
plugin, latency hint, one stream, the case's threads) compiled at OpenVINO's *default* precision, as
sentence-transformers' openvino backend ships it: no INFERENCE_PRECISION_HINT, so the plugin runs bf16 on
CPUs with AMX or avx512_bf16 and f32 elsewhere. The precision the plugin chose is read back from the compiled
model (``compiled.get_property("INFERENCE_PRECISION_HINT")``) and named in the runner's info, so reports show
which one a row measured. Baseline: dense fp32 torch.

The equality gate's rule follows the precision the plugin chose, not the case's dtype (which stays float32 in
the plan: the runtime, not the user, picks the precision). The runner's ``computes`` carries that choice to the
gate (``bench.steps.equality``):

- bf16 chosen: the rule of a bf16 row (torch-dense in bfloat16): max abs diff to the fp32 torch-masked reference
  at most ``HALF_TOLERANCE["bfloat16"]`` x max |reference|; for a reference whose own fp32 rounding exceeds
  ``ROUNDING_REF`` the tolerance is scaled by that ratio and the pooled cosine must also reach
  ``SCALED_HALF_COSINE`` (``bench.runtimes.base.equality_gate``).
- f32 chosen: the ``openvino`` row's rule, ``fp32_tolerance`` (1e-4), scaled the same way.

An optional extra: ``pip install 'prunebench[openvino]'``; without it the case is skipped with that hint.
"""

from __future__ import annotations

import logging

from .openvino_fp32 import INSTALL_HINT, OpenVinoRuntime

__all__ = ["OpenVinoAuto", "RUNTIME"]

log = logging.getLogger("bench.runtimes.openvino_auto")


class OpenVinoAuto(OpenVinoRuntime):
    name = "openvino-auto"
    help = (f"ONNX export -> OpenVINO IR, CPU plugin at its default precision (bf16 on AMX / avx512_bf16, else f32; "
            f"gated by the precision it chose; optional: {INSTALL_HINT}), vs dense torch")
    fp32_tolerance = 1e-4  # where the plugin chose f32: the openvino row's tolerance
    precision_hint = None
    chooses_precision = True  # bf16 on AMX: what it serves is scored, never the fp32 weights' embeddings

    @property
    def compute_dtype(self) -> str | None:  # type: ignore[override]
        """bf16 where the CPU runs it natively (the plugin's default there), else f32: the roofline's peak."""
        from bench.dtypes import missing_flags

        return "bfloat16" if missing_flags("bfloat16") is None else None
    info_prefix = "openvino CPU, the plugin's default precision"


RUNTIME = OpenVinoAuto()
