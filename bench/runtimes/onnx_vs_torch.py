"""onnxruntime-vs-torch: the same ONNX Runtime runner as ``onnxruntime``, with dense *torch* as its
baseline, so dense-ORT vs dense-torch (and pruned-ORT vs dense-torch) is timed paired and interleaved
in one process like every other ratio. Its size ratio is the ONNX file over the dense safetensors."""

from __future__ import annotations

from .onnx_runtime import TOLERANCE, incompatible, prepare, unavailable

__all__ = ["BASELINE", "HELP", "NAME", "TOLERANCE", "incompatible", "prepare", "unavailable"]

NAME = "onnxruntime-vs-torch"
HELP = "ONNX Runtime as in `onnxruntime`, timed against dense torch (runtime vs runtime)"
BASELINE = "torch-dense"
