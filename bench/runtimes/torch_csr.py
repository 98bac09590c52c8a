"""torch-csr: the baked variant's encoder Linear weights as sparse CSR tensors, forward through torch's
sparse matmul. Does converting to a sparse format pay against dense torch on the same device?"""

from __future__ import annotations

from pathlib import Path

from .base import Variant
from .sparse import SparseRunner, incompatible, prepare_sparse, to_csr, unavailable

__all__ = ["BASELINE", "HELP", "NAME", "TOLERANCE", "incompatible", "prepare", "unavailable"]

NAME = "torch-csr"
HELP = "encoder Linear weights as torch sparse CSR (torch.addmm), vs dense torch"
BASELINE = "torch-dense"
TOLERANCE = 1e-4


def prepare(variant: Variant, workdir: Path, device: str) -> SparseRunner:
    return prepare_sparse(variant, workdir, device, to_csr, "csr")
