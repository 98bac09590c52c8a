"""torch-dense: the variant baked (``prune.remove``): plain dense tensors that happen to hold zeros."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file

from .base import TorchRunner, Variant, cuda_unavailable

NAME = "torch-dense"
HELP = "dense PyTorch after prune.remove (zeros baked in, no hooks)"
BASELINE = None
TOLERANCE = 1e-5
unavailable = cuda_unavailable


def prepare(variant: Variant, workdir: Path, device: str) -> TorchRunner:
    model = variant.baked()
    artifact = Path(workdir) / "model.safetensors"
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(artifact))
    return TorchRunner(model, variant.inputs, device, artifact)
