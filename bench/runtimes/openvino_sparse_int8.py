"""openvino-sparse-int8: OpenVINO's CPU plugin on an int8 model with sparse weight decompression on
(``CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE``): at compile time the plugin packs the non-zero values of int8
MatMul weights whose fraction of zeros is at least that rate, and unpacks them in the AMX kernel, the one
maintained CPU engine that claims to use unstructured zeros (int8, AMX, MatMul only).

The int8 model: the baked variant's ONNX export, statically quantized by ONNX Runtime's
``quantize_static`` in QDQ format (int8 weights per channel, int8 activations calibrated on the case's
fixed batch), which OpenVINO reads as quantized MatMuls. Compiled with f32 for the rest, latency hint,
one stream, the case's threads. Decompression rate: ``RATE`` (0.5), or ``$PRUNEBENCH_OV_SPARSE_RATE``.

Runs only where the CPU has AMX (``amx_int8``/``amx_tile`` in /proc/cpuinfo): elsewhere the plugin never
uses the packed weights and the case is skipped with that reason. The gate is a quality floor (pooled
cosine to the fp32 torch-masked outputs >= ``QUALITY_FLOOR``). Baseline: dense torch.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from .. import env
from .base import Variant, quiet_ort_quantization
from .openvino_fp32 import INSTALL_HINT, OpenVinoRuntime

__all__ = ["AMX_FLAGS", "QUALITY_FLOOR", "RATE", "RUNTIME", "OpenVinoSparseInt8", "rate", "quantize_qdq"]

log = logging.getLogger("bench.runtimes.openvino_sparse_int8")

AMX_FLAGS = ("amx_int8", "amx_tile")
QUALITY_FLOOR = 0.90
RATE = 0.5
RATE_ENV = "PRUNEBENCH_OV_SPARSE_RATE"


def _fraction(raw: str) -> float | None:
    """``raw`` as a number in (0, 1], or None."""
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if 0 < value <= 1 else None


def rate() -> float:
    """The configured decompression rate: ``$PRUNEBENCH_OV_SPARSE_RATE`` or ``RATE``."""
    return env.setting(RATE_ENV, RATE, _fraction, "a fraction in (0, 1]", "e.g. 0.5")


def quantize_qdq(src: Path, dst: Path, inputs: dict[str, torch.Tensor]) -> Path:
    """Static int8 QDQ quantization of the ONNX file ``src`` into ``dst``, calibrated on ``inputs``."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    names = [i.name for i in onnx.load(str(src), load_external_data=False).graph.input]

    class _Batch(CalibrationDataReader):
        def __init__(self) -> None:
            self.rows = iter([{n: inputs[n].detach().cpu().numpy().astype(np.int64) for n in names}])

        def get_next(self):
            return next(self.rows, None)

    with quiet_ort_quantization():
        quantize_static(str(src), str(dst), _Batch(), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    return Path(dst)


class OpenVinoSparseInt8(OpenVinoRuntime):
    name = "openvino-sparse-int8"
    help = f"int8 (QDQ) OpenVINO CPU with CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE (AMX only; {INSTALL_HINT}), vs dense torch"
    quality_floor = QUALITY_FLOOR
    compute_dtype = "int8"
    uses_export = "quantizes"
    info_prefix = "openvino CPU int8 QDQ (ORT quantize_static, per channel)"

    def unavailable(self, device: str) -> str | None:
        reason = super().unavailable(device)
        if reason:
            return reason
        flags = env.cpu_flags()
        if not all(f in flags for f in AMX_FLAGS):
            return (f"{self.name} needs AMX ({' and '.join(AMX_FLAGS)}): OpenVINO uses sparse int8 weights only in its AMX "
                    f"kernels, and this CPU has none (its vector flags: {', '.join(flags) or 'none recorded'})")
        return None

    def graph(self, fp32: Path, variant: Variant) -> Path:
        """The export quantized to int8 QDQ, calibrated on the case's fixed batch."""
        return quantize_qdq(fp32, fp32.parent / "model.qdq.onnx", variant.inputs)

    def properties(self) -> dict[str, str]:
        """Sparse weight decompression at the configured rate."""
        return {"CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE": str(rate())}


RUNTIME = OpenVinoSparseInt8()
