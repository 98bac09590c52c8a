"""torch-masked: the variant exactly as ``torch.nn.utils.prune`` leaves it: ``weight_orig`` +
``weight_mask`` + a forward pre-hook that multiplies them on every call."""

from __future__ import annotations

from pathlib import Path

import torch

from .base import TorchRunner, Variant, cuda_unavailable

NAME = "torch-masked"
HELP = "dense PyTorch with prune masks and hooks on (what the tutorial timed)"
BASELINE = None
TOLERANCE = 0.0
unavailable = cuda_unavailable


def prepare(variant: Variant, workdir: Path, device: str) -> TorchRunner:
    model = variant.masked()
    artifact = Path(workdir) / "masked_state_dict.pt"
    torch.save(model.state_dict(), artifact)  # what saving a masked model stores: weight_orig + weight_mask
    return TorchRunner(model, variant.inputs, device, artifact)
