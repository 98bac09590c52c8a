"""What every runtime shares: the Variant it runs and the Runner it returns."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from pruning import PruneRecipe, bake

__all__ = ["DTYPES", "HALF_TOLERANCE", "Runner", "RuntimeUnavailable", "TorchRunner", "Variant", "cuda_unavailable", "file_bytes",
           "tolerance"]

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# fp16/bf16 outputs are compared with the fp32 torch-masked reference: the allowed max abs diff is this
# fraction of the reference's largest |value|. Measured on this CPU, torch-dense in half precision
# differs from fp32 by ~0.16% (fp16) and ~1% (bf16) of that scale on MiniLM and the tiny configs.
HALF_TOLERANCE = {"float16": 1e-2, "bfloat16": 5e-2}


class RuntimeUnavailable(RuntimeError):
    """The runtime cannot run on this device; the message says why."""


@dataclass
class Variant:
    """A dense model plus one recipe. Each call builds from a fresh dense copy: a masked model
    cannot be deep-copied, so nothing pruned is ever copied."""

    loaded: "object"  # bench.models.LoadedModel
    recipe: PruneRecipe
    inputs: dict[str, torch.Tensor]  # the case's fixed batch
    dtype: str = "float32"  # pruned in fp32, then cast: the same masks in every dtype

    def masked(self) -> nn.Module:
        """The variant as torch.nn.utils.prune leaves it (masks and hooks on)."""
        return self.loaded.pruned(self.recipe).to(DTYPES[self.dtype]).eval()

    def baked(self) -> nn.Module:
        """The variant with masks made permanent (plain dense tensors with zeros)."""
        return bake(self.masked())


def cuda_unavailable(device: str) -> str | None:
    if device == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available on this machine (torch.cuda.is_available() is False)"
    return None


def tolerance(runtime: ModuleType, dtype: str, reference: torch.Tensor) -> float:
    """Max abs diff a runtime may show against the fp32 torch-masked reference: its ``TOLERANCE`` in fp32,
    ``HALF_TOLERANCE[dtype]`` x max |reference| in half precision."""
    if dtype == "float32":
        return float(runtime.TOLERANCE)
    return HALF_TOLERANCE[dtype] * float(reference.abs().max())


def file_bytes(path: Path) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


class Runner:
    """A callable that runs the variant on a fixed input batch.

    ``__call__`` runs once (synchronised on CUDA); ``outputs(inputs)`` returns the last hidden state
    as a CPU fp32 tensor; ``artifact`` is the file or directory the runtime keeps on disk.
    """

    device: str = "cpu"
    artifact: Path | None = None

    def __call__(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def outputs(self, inputs: dict[str, torch.Tensor] | None = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def serving_files(self, directory: Path) -> dict:
        """Write what a fresh process loads to serve this variant (``bench.measure.memory``) into
        ``directory``; returns the spec the memory child reads: ``kind``, ``path``, ``imports``, ``device``."""
        raise NotImplementedError(f"{type(self).__name__} cannot be loaded in a fresh process")

    def artifact_bytes(self) -> int:
        return file_bytes(self.artifact) if self.artifact else 0

    def timed(self) -> float:
        """Seconds for one call (CUDA: events after synchronize)."""
        if self.device == "cuda":
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            self()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1e3
        t0 = time.perf_counter()
        self()
        return time.perf_counter() - t0


class TorchRunner(Runner):
    """Runs an ``nn.Module`` encoder under ``torch.inference_mode``, keyword arguments only.

    ``model`` is the plain encoder the engine counts parameters, sparsity and FLOPs on; subclasses whose
    module is not such an encoder (sparse layers) call ``_setup`` and leave ``model`` unset."""

    def __init__(self, model: nn.Module, inputs: dict[str, torch.Tensor], device: str, artifact: Path | None = None):
        self._setup(model.to(device), inputs, device, artifact)
        self.model = self.net

    def _setup(self, net: nn.Module, inputs: dict[str, torch.Tensor], device: str, artifact: Path | None) -> None:
        self.device = device
        self.net = net.eval()
        self.inputs = {k: v.to(device) for k, v in inputs.items()}
        self.artifact = artifact

    def serving_files(self, directory: Path) -> dict:
        """The module as the runtime holds it (its tensors, masks and hooks) and the fixed batch, pickled."""
        path = Path(directory) / "serve.pt"
        torch.save({"net": self.net, "inputs": self.inputs}, path)
        mods = {type(m).__module__ for m in self.net.modules()}
        mods |= {type(h).__module__ for m in self.net.modules() for h in m._forward_pre_hooks.values()}
        return {"kind": "torch", "path": str(path), "imports": sorted(mods), "device": self.device}

    def _forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.inference_mode():
            return self.net(**inputs).last_hidden_state

    def __call__(self) -> None:
        self._forward(self.inputs)
        if self.device == "cuda":
            torch.cuda.synchronize()

    def outputs(self, inputs: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        inputs = self.inputs if inputs is None else {k: v.to(self.device) for k, v in inputs.items()}
        return self._forward(inputs).float().cpu()
