"""torch-bsr: the baked variant's encoder Linear weights as block-sparse BSR tensors (square blocks),
forward through torch's sparse matmul. Only blocks that are entirely zero are skipped, so unstructured
pruning pays here only at sparsities that empty whole blocks.

Block edge: ``BLOCK`` (32), or the environment variable ``PRUNEBENCH_BSR_BLOCK``. A weight whose
dimensions are not multiples of it uses gcd(block, rows, cols) instead (logged, and recorded in the
record's ``runtime_info``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..env import setting
from .base import Variant
from .sparse import SparseRunner, SparseRuntime, block_for, prepare_sparse, to_bsr

__all__ = ["BLOCK", "RUNTIME", "TorchBsr", "block_size"]

log = logging.getLogger("bench.runtimes.torch_bsr")

BLOCK = 32
ENV = "PRUNEBENCH_BSR_BLOCK"


def block_size() -> int:
    """The configured block edge: ``$PRUNEBENCH_BSR_BLOCK`` or ``BLOCK``."""
    return setting(ENV, BLOCK, lambda raw: int(raw) if raw.isdigit() and int(raw) >= 1 else None, "a positive integer",
                   "a block edge such as 16 or 32")


class TorchBsr(SparseRuntime):
    name = "torch-bsr"
    help = "encoder Linear weights as torch block-sparse BSR (block 32, PRUNEBENCH_BSR_BLOCK), vs dense torch"

    def prepare(self, variant: Variant, workdir: Path, device: str) -> SparseRunner:
        block = block_size()
        used: set[int] = set()

        def convert(weight: torch.Tensor) -> torch.Tensor:
            b = block_for(tuple(weight.shape), block)
            if b != block:
                log.warning("weight %s is not divisible by BSR block %d; using %dx%d blocks", tuple(weight.shape), block, b, b)
            used.add(b)
            return to_bsr(weight, b)

        return prepare_sparse(variant, workdir, device, convert, "bsr", lambda: "block=" + ",".join(map(str, sorted(used, reverse=True))))


RUNTIME = TorchBsr()
