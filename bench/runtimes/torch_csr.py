"""torch-csr: the baked variant's encoder Linear weights as sparse CSR tensors, forward through torch's
sparse matmul. Does converting to a sparse format pay against dense torch on the same device?"""

from __future__ import annotations

from pathlib import Path

from .base import Variant
from .sparse import SparseRunner, SparseRuntime, prepare_sparse, to_csr

__all__ = ["RUNTIME", "TorchCsr"]


class TorchCsr(SparseRuntime):
    name = "torch-csr"
    help = "encoder Linear weights as torch sparse CSR (torch.addmm), vs dense torch"

    def prepare(self, variant: Variant, workdir: Path, device: str) -> SparseRunner:
        return prepare_sparse(variant, workdir, device, to_csr, "csr")


RUNTIME = TorchCsr()
