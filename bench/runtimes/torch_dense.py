"""torch-dense: the variant baked (``prune.remove``): plain dense tensors that happen to hold zeros."""

from __future__ import annotations

from pathlib import Path

from ..measure.size import save_safetensors
from .base import Runtime, TorchRunner, Variant

__all__ = ["RUNTIME", "TorchDense"]


class TorchDense(Runtime):
    name = "torch-dense"
    help = "dense PyTorch after prune.remove (zeros baked in, no hooks)"
    fp32_tolerance = 1e-5

    def prepare(self, variant: Variant, workdir: Path, device: str) -> TorchRunner:
        model = variant.baked()
        artifact = save_safetensors(model, Path(workdir) / "model.safetensors")
        return TorchRunner(model, variant.inputs, device, artifact)


RUNTIME = TorchDense()
