"""onnxruntime-int8: the baked variant exported to ONNX exactly as the ``onnxruntime`` runtime does
(checked), then ``onnxruntime.quantization.quantize_dynamic``: MatMul weights int8 per output channel
(``per_channel=True``), activations quantized at run time. The int8 ``.onnx`` file is the artifact; the
session is the ``onnxruntime`` runtime's (all graph optimisations, the case's threads, no spinning).
Baseline: dense torch (fp32 unless the case names another).

The equality gate is a quality floor: pooled cosine to the fp32 torch-masked outputs on the fixed batch at
least ``QUALITY_FLOOR`` (below it the case fails with the number).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from .base import Variant, quiet_ort_quantization
from .int8 import QUALITY_FLOOR, Int8Runtime
from .onnx_runtime import OrtRunner, export, ort_unavailable, ort_versions

__all__ = ["QUALITY_FLOOR", "RUNTIME", "OnnxInt8", "quantize_file"]

log = logging.getLogger("bench.runtimes.onnx_int8")


def quantize_file(src: Path, dst: Path) -> Path:
    """Dynamic int8 quantization of the ONNX file ``src`` into ``dst`` (MatMul weights, per channel)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_ort_quantization():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"])
    return Path(dst)


class OnnxInt8(Int8Runtime):
    name = "onnxruntime-int8"
    help = "ONNX export + ORT quantize_dynamic (int8 MatMul weights, per channel), quality-floor gate, vs dense torch"
    quantizes = "export"

    def unavailable(self, device: str) -> str | None:
        if device != "cpu":
            return f"onnxruntime-int8 (dynamic quantization: MatMulInteger / DynamicQuantizeLinear) runs on cpu here, not {device}"
        return ort_unavailable(device)

    def versions(self) -> dict[str, str | None]:
        return ort_versions()

    def prepare(self, variant: Variant, workdir: Path, device: str) -> OrtRunner:
        workdir = Path(workdir)
        fp32 = export(variant.baked(), variant.inputs, workdir / "model.fp32.onnx")
        path = quantize_file(fp32, workdir / "model.int8.onnx")
        fp32.unlink()  # the int8 file is the artifact
        runner = OrtRunner(path, variant.inputs, device, torch.get_num_threads())
        runner.info = f"quantize_dynamic QInt8 per_channel MatMul; {runner.info}"
        return runner


RUNTIME = OnnxInt8()
