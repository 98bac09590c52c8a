"""What torch-csr and torch-bsr share: encoder Linears whose weights are torch sparse tensors.

The baked variant's encoder Linears (``pruning.discover(model).linears()``) are replaced by
:class:`SparseLinear`, which computes ``x W^T + b`` as ``addmm(b, W, x^T)^T`` with ``W`` a sparse
CSR or BSR tensor (torch's sparse matmul: MKL on CPU; cuSPARSE on CUDA). Embeddings, LayerNorms and
biases stay dense. Indices are stored as int32 (every weight here has far fewer than 2^31 nonzeros),
which halves their bytes on disk and in memory against torch's int64 default.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from pruning import discover

from .base import Runtime, TorchRunner, Variant

__all__ = ["SparseLinear", "SparseRunner", "SparseRuntime", "block_for", "prepare_sparse", "sparsify", "to_bsr", "to_csr"]

log = logging.getLogger("bench.runtimes.sparse")


def to_csr(weight: torch.Tensor) -> torch.Tensor:
    """A dense 2-D weight as a CSR tensor with int32 indices."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")  # torch's 'sparse support is in beta' notice
        t = weight.detach().to_sparse_csr()
        return torch.sparse_csr_tensor(t.crow_indices().to(torch.int32), t.col_indices().to(torch.int32), t.values(),
                                       t.shape, check_invariants=False)


def block_for(shape: tuple[int, int], block: int) -> int:
    """The BSR block edge used for a weight: ``block`` if it divides both dims, else the largest common
    divisor of ``block`` and both dims (gcd; 1 degenerates to CSR-like 1x1 blocks)."""
    return math.gcd(block, *shape)


def to_bsr(weight: torch.Tensor, block: int) -> torch.Tensor:
    """A dense 2-D weight as a BSR tensor of ``block x block`` blocks with int32 indices."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        t = weight.detach().to_sparse_bsr((block, block))
        return torch.sparse_bsr_tensor(t.crow_indices().to(torch.int32), t.col_indices().to(torch.int32), t.values(),
                                       t.shape, check_invariants=False)


class SparseLinear(nn.Module):
    """``nn.Linear`` with a sparse (CSR/BSR) weight: ``y = (b + W @ x^T)^T`` on the 2-D-flattened input."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", weight)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if self.bias is None:
            y = torch.sparse.mm(self.weight, flat.t())
        else:
            y = torch.addmm(self.bias.unsqueeze(1), self.weight, flat.t())
        return y.t().contiguous().reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        w = self.weight
        return f"in_features={self.in_features}, out_features={self.out_features}, layout={w.layout}, nnz={w.values().count_nonzero()}"


def sparsify(model: nn.Module, convert: Callable[[torch.Tensor], torch.Tensor]) -> int:
    """Replace every encoder Linear of ``model`` in place by a SparseLinear; returns how many."""
    targets = discover(model).linears()
    ids = {id(lin) for lin in targets}
    n = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if id(child) in ids:
                setattr(parent, name, SparseLinear(convert(child.weight), child.bias))
                n += 1
    return n


class SparseRunner(TorchRunner):
    """Runs an encoder with SparseLinear layers under ``torch.inference_mode``.

    The module is kept as ``net``, not ``model``: the engine reads ``runner.model`` as a plain encoder for
    parameter, sparsity and FLOP accounting, which sparse layers do not support; without it the engine
    uses the masked variant, which holds the same weights.
    """

    def __init__(self, net: nn.Module, inputs: dict[str, torch.Tensor], device: str, artifact: Path, info: str):
        self._setup(net, inputs, device, artifact)  # already on ``device``: 2:4 tensor subclasses cannot move
        self.info = info


class SparseRuntime(Runtime):
    """torch-csr / torch-bsr: fp32 only, timed against dense torch."""

    baseline_runtime = "torch-dense"
    fp32_tolerance = 1e-4

    def incompatible(self, case) -> str | None:
        """torch's sparse matmul on CPU (MKL) has no half-precision kernels: fp32 only."""
        if case.dtype != "float32":
            return f"{case.runtime} runs float32 only (torch's CPU sparse matmul has no {case.dtype} kernel); use dtype float32"
        return None


def prepare_sparse(variant: Variant, workdir: Path, device: str, convert: Callable[[torch.Tensor], torch.Tensor],
                   fmt: str, detail: Callable[[], str] = str) -> SparseRunner:
    """Bake the variant, convert its encoder Linears with ``convert``, save the result with torch.save.
    ``detail()`` (called after conversion) adds to the runner's ``info``, e.g. the block size used."""
    model = variant.baked()
    n = sparsify(model, convert)
    artifact = Path(workdir) / f"model.{fmt}.pt"
    torch.save(model.state_dict(), artifact)  # sparse weights as torch stores them, plus the dense rest
    extra = detail()
    info = f"format={fmt}{'; ' + extra if extra else ''}; {n} encoder Linears sparse; int32 indices"
    log.debug("%s", info)
    return SparseRunner(model.to(device), variant.inputs, device, artifact, info)
