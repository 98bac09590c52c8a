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
import os
from pathlib import Path

import numpy as np
import torch

from .. import env
from .base import Runtime, Variant, package_versions, quiet_ort_quantization
from .onnx_runtime import export
from .openvino_fp32 import INSTALL_HINT, OvRunner, compile_ir, ov_unavailable

__all__ = ["AMX_FLAGS", "QUALITY_FLOOR", "RATE", "RUNTIME", "OpenVinoSparseInt8", "rate", "quantize_qdq"]

log = logging.getLogger("bench.runtimes.openvino_sparse_int8")

AMX_FLAGS = ("amx_int8", "amx_tile")
QUALITY_FLOOR = 0.90
RATE = 0.5
RATE_ENV = "PRUNEBENCH_OV_SPARSE_RATE"


def rate() -> float:
    """The configured decompression rate: ``$PRUNEBENCH_OV_SPARSE_RATE`` or ``RATE``."""
    raw = os.environ.get(RATE_ENV, "").strip()
    if not raw:
        return RATE
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise ValueError(f"{RATE_ENV}={raw!r} is not a fraction in (0, 1]; set it to e.g. 0.5")
    return value


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


class OpenVinoSparseInt8(Runtime):
    name = "openvino-sparse-int8"
    help = f"int8 (QDQ) OpenVINO CPU with CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE (AMX only; {INSTALL_HINT}), vs dense torch"
    baseline_runtime = "torch-dense"
    quality_floor = QUALITY_FLOOR

    def unavailable(self, device: str) -> str | None:
        reason = ov_unavailable(self.name, device)
        if reason:
            return reason
        flags = env.cpu_flags()
        if not all(f in flags for f in AMX_FLAGS):
            return (f"{self.name} needs AMX ({' and '.join(AMX_FLAGS)}): OpenVINO uses sparse int8 weights only in its AMX "
                    f"kernels, and this CPU has none (its vector flags: {', '.join(flags) or 'none recorded'})")
        return None

    def incompatible(self, case) -> str | None:
        if case.dtype != "float32":
            return f"{self.name} quantizes the float32 export; use dtype float32"
        return None

    def versions(self) -> dict[str, str | None]:
        return package_versions("openvino")

    def prepare(self, variant: Variant, workdir: Path, device: str) -> OvRunner:
        workdir = Path(workdir) / "openvino"
        workdir.mkdir(parents=True, exist_ok=True)
        fp32 = export(variant.baked(), variant.inputs, workdir.parent / "model.fp32.onnx")
        qdq = quantize_qdq(fp32, workdir.parent / "model.qdq.onnx", variant.inputs)
        r = rate()
        compiled, config = compile_ir(qdq, workdir / "model.xml", torch.get_num_threads(),
                                      {"CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE": str(r)})
        fp32.unlink()
        qdq.unlink()
        info = "openvino CPU int8 QDQ (ORT quantize_static, per channel); " + "; ".join(f"{k}={v}" for k, v in config.items())
        return OvRunner(compiled, variant.inputs, workdir, info, config)


RUNTIME = OpenVinoSparseInt8()
