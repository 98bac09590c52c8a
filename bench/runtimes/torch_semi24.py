"""torch-semi24: 2:4 semi-structured sparsity on NVIDIA sparse tensor cores (CUDA, compute capability
>= 8.0, fp16/bf16), through ``torch.sparse``'s semi-structured tensors: each encoder Linear weight of the
baked 2:4 variant becomes a ``SparseSemiStructuredTensor`` parameter and ``F.linear`` dispatches to the
sparse kernel (cuSPARSELt where torch has it, else CUTLASS), as ``to_sparse_semi_structured`` does.

Baseline: dense torch on the same GPU and dtype. Equality: fp16/bf16 against the fp32 torch-masked
reference with ``base.HALF_TOLERANCE`` (1e-2 / 5e-2 of the reference's max |value|). Runs method 2:4
only (any other pattern is skipped with the reason). A weight whose shape misses the kernel's minimum
tile (e.g. the tiny test configs on CUTLASS) stays dense; ``runtime_info`` says how many were converted.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from pruning import discover
from pruning.semi_structured import nm_violations

from .base import Runtime, RuntimeUnavailable, Variant, cuda_unavailable
from .sparse import SparseRunner

__all__ = ["DTYPES", "RUNTIME", "TorchSemi24", "backend"]

log = logging.getLogger("bench.runtimes.torch_semi24")

DTYPES = ("float16", "bfloat16")
MIN_CAPABILITY = (8, 0)


def backend() -> type:
    """The semi-structured tensor class torch would pick: cuSPARSELt when available, else CUTLASS."""
    from torch.sparse import SparseSemiStructuredTensorCUSPARSELT, SparseSemiStructuredTensorCUTLASS

    return SparseSemiStructuredTensorCUSPARSELT if torch.backends.cusparselt.is_available() else SparseSemiStructuredTensorCUTLASS


def _fits(cls: type, weight: torch.Tensor) -> bool:
    c = cls._DTYPE_SHAPE_CONSTRAINTS.get(weight.dtype)
    rows, cols = weight.shape
    return c is not None and rows % c.sparse_min_rows == 0 and cols % c.sparse_min_cols == 0


class TorchSemi24(Runtime):
    name = "torch-semi24"
    help = "2:4 sparse tensor cores (torch.sparse semi-structured; CUDA cc >= 8.0, fp16/bf16), vs dense torch"
    baseline_runtime = "torch-dense"
    fp32_tolerance = 1e-4  # the fp32 bound; this runtime runs half precision only, judged by base.HALF_TOLERANCE

    def unavailable(self, device: str) -> str | None:
        """Why 2:4 kernels cannot run on ``device`` here, or None."""
        if device != "cuda":
            return f"torch-semi24 needs a CUDA GPU with 2:4 sparse tensor cores (compute capability >= 8.0), not {device}; use device cuda"
        reason = cuda_unavailable(device)
        if reason:
            return reason
        cap = torch.cuda.get_device_capability(0)
        if cap < MIN_CAPABILITY:
            return f"torch-semi24 needs compute capability >= 8.0; {torch.cuda.get_device_name(0)} has {cap[0]}.{cap[1]}"
        return None

    def incompatible(self, case) -> str | None:
        """2:4 kernels need 2:4 weights in fp16/bf16."""
        if case.dtype not in DTYPES:
            return f"torch-semi24 runs float16 or bfloat16, not {case.dtype}; set dtype = 'float16' for this recipe"
        if case.recipe.method != "2:4":
            return f"torch-semi24 runs 2:4 weights only; method {case.recipe.method!r} gives pattern {case.recipe.spec.pattern!r} (prune with method '2:4')"
        return None

    def prepare(self, variant: Variant, workdir: Path, device: str) -> SparseRunner:
        reason = self.unavailable(device)
        if reason:
            raise RuntimeUnavailable(reason)
        cls = backend()
        model = variant.baked().to(device)
        state = dict(model.state_dict())
        targets = {id(lin) for lin in discover(model).linears()}
        converted = kept = 0
        for name, module in model.named_modules():
            if id(module) not in targets:
                continue
            weight = module.weight.detach().contiguous()
            bad = nm_violations(weight, 2, 4)
            if bad:
                raise ValueError(f"{name}.weight has {bad} groups of 4 with more than 2 nonzeros; torch-semi24 needs 2:4 weights")
            if not _fits(cls, weight):
                kept += 1
                log.warning("%s.weight %s misses %s's minimum tile; it stays dense", name, tuple(weight.shape), cls.__name__)
                continue
            sparse = cls.from_dense(weight)  # what to_sparse_semi_structured does, with the backend chosen explicitly
            module.weight = nn.Parameter(sparse, requires_grad=False)
            state[f"{name}.weight"] = {"packed": sparse.packed, "meta": sparse.meta}  # the compressed form on disk
            converted += 1
        if not converted:
            raise RuntimeUnavailable(f"no encoder Linear of this model fits {cls.__name__}'s minimum tile; 2:4 kernels cannot run it")
        artifact = Path(workdir) / "model.semi24.pt"
        torch.save(state, artifact)
        info = f"format=2:4 {cls.__name__.removeprefix('SparseSemiStructuredTensor')}; {converted} encoder Linears sparse, {kept} dense"
        return SparseRunner(model, variant.inputs, device, artifact, info)


RUNTIME = TorchSemi24()
