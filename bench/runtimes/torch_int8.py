"""torch-int8: dynamic int8 quantization of the baked variant's ``nn.Linear`` layers (weights int8 per
output channel, activations quantized per batch at run time), through PyTorch's own
``torch.ao.quantization.quantize_dynamic`` with ``per_channel_dynamic_qconfig`` (fbgemm on x86).

Chosen by measurement over torchao's ``Int8DynamicActivationInt8WeightConfig`` (torchao 0.18): in eager
mode torchao's int8 tensors ran about an order of magnitude slower than dense fp32 on MiniLM here (two
interleaved runs), while torch.ao's fbgemm kernels ran faster than fp32; torchao's int8 is built for
torch.compile (see the README). torch.ao's eager quantization is deprecated upstream but is what a user runs today
without a compiler. Baseline: dense torch (fp32 unless the case names another).

The equality gate is a quality floor, not an elementwise tolerance: the pooled cosine to the fp32
torch-masked outputs on the case's fixed batch must be at least ``QUALITY_FLOOR``. The artifact is the
quantized model's state dict (packed int8 weights).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from .base import TorchRunner, Variant
from .int8 import QUALITY_FLOOR, Int8Runtime

__all__ = ["QUALITY_FLOOR", "RUNTIME", "TorchInt8", "quantize"]

log = logging.getLogger("bench.runtimes.torch_int8")


def quantize(model: nn.Module) -> nn.Module:
    """``model`` (fp32, CPU) with every nn.Linear replaced by a dynamically quantized int8 Linear."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        return quantize_dynamic(model.float().cpu().eval(), {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


class TorchInt8(Int8Runtime):
    name = "torch-int8"
    help = "dynamic int8 Linear (torch.ao quantize_dynamic, per-channel, fbgemm), quality-floor gate, vs dense torch"

    def unavailable(self, device: str) -> str | None:
        if device != "cpu":
            return f"torch-int8 (fbgemm dynamic quantization) runs on cpu only, not {device}; use device cpu"
        if "fbgemm" not in torch.backends.quantized.supported_engines and "x86" not in torch.backends.quantized.supported_engines:
            return f"this torch build has no x86/fbgemm quantized engine (engines: {torch.backends.quantized.supported_engines})"
        return None

    def prepare(self, variant: Variant, workdir: Path, device: str) -> TorchRunner:
        model = quantize(variant.baked())
        artifact = Path(workdir) / "model.int8.pt"
        torch.save(model.state_dict(), artifact)
        runner = TorchRunner(model, variant.inputs, device, artifact)
        runner.model = None  # packed int8 Linears: counts come from the masked variant (the same zeros)
        n = sum(1 for m in model.modules() if type(m).__name__ == "Linear" and "quantized" in type(m).__module__)
        runner.info = f"torch.ao quantize_dynamic qint8 per-channel; engine={torch.backends.quantized.engine}; {n} Linears int8"
        return runner


RUNTIME = TorchInt8()
