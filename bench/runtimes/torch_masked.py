"""torch-masked: the variant exactly as ``torch.nn.utils.prune`` leaves it: ``weight_orig`` +
``weight_mask`` + a forward pre-hook that multiplies them on every call."""

from __future__ import annotations

from pathlib import Path

import torch

from .base import Runtime, TorchRunner, Variant

__all__ = ["RUNTIME", "TorchMasked"]


class TorchMasked(Runtime):
    name = "torch-masked"
    help = "dense PyTorch with prune masks and hooks on (what the tutorial timed)"
    fp32_tolerance = 0.0

    def prepare(self, variant: Variant, workdir: Path, device: str) -> TorchRunner:
        model = variant.masked()
        artifact = Path(workdir) / "masked_state_dict.pt"
        torch.save(model.state_dict(), artifact)  # what saving a masked model stores: weight_orig + weight_mask
        return TorchRunner(model, variant.inputs, device, artifact)


RUNTIME = TorchMasked()
