"""N:M semi-structured pruning by magnitude: in every group of M consecutive weights of a row (along the
input dimension, the layout 2:4 sparse tensor cores expect), keep the N largest |w| and mask the rest.

Masks go on through ``prune.custom_from_mask``, so an N:M variant runs in torch-masked, torch-dense and
every other runtime like any mask method; ``bake`` is ``prune.remove``. Sparsity is exactly 1 - N/M.
Only Linear weights carry the pattern (embeddings and biases do not), so the only scope is ``linear``.
With ``importance = "wanda"`` the N kept per group are those with the largest ``|W_ij| * ||X_j||_2``
(input-feature norms on the calibration set) instead of the largest |w|.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import prune

from .registry import MethodConfig, RecipeError, register_method, register_transform
from .targets import scope_params

__all__ = ["NM", "NM_PATTERNS", "check_nm", "nm_mask", "nm_violations"]

# method name -> (N kept, M per group)
NM_PATTERNS: dict[str, tuple[int, int]] = {"2:4": (2, 4), "4:8": (4, 8)}


def _groups(tensor: torch.Tensor, m: int) -> torch.Tensor:
    if tensor.dim() != 2:
        raise ValueError(f"N:M patterns are defined on 2-D weights, got shape {tuple(tensor.shape)}")
    rows, cols = tensor.shape
    if cols % m:
        raise ValueError(f"a weight with {cols} input columns cannot be split into groups of {m}; N:M needs in_features divisible by M")
    return tensor.reshape(rows, cols // m, m)


def nm_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Boolean mask keeping the ``n`` largest |w| of every ``m`` consecutive weights of each row."""
    if not 0 < n < m:
        raise ValueError(f"N:M needs 0 < N < M, got {n}:{m}")
    groups = _groups(weight.detach().abs(), m)
    keep = groups.topk(n, dim=-1, sorted=False).indices
    mask = torch.zeros(groups.shape, dtype=torch.bool, device=weight.device).scatter_(-1, keep, True)
    return mask.reshape(weight.shape)


def nm_violations(tensor: torch.Tensor, n: int, m: int) -> int:
    """Number of M-groups (consecutive along each row) holding more than ``n`` nonzeros."""
    nonzero = (_groups(tensor.detach(), m) != 0).sum(dim=-1)
    return int((nonzero > n).sum())


def check_nm(tensor: torch.Tensor, n: int, m: int) -> bool:
    """True when every group of ``m`` consecutive weights of each row holds at most ``n`` nonzeros."""
    return nm_violations(tensor, n, m) == 0


@dataclass(frozen=True)
class NM(MethodConfig):
    """An N:M pattern (the method name, ``2:4`` or ``4:8``; sparsity is fixed at 1 - N/M) on Linear weights,
    the N kept per group chosen by ``importance`` (``magnitude`` or data-aware ``wanda``)."""

    scope: str = "linear"
    importance: str | None = None

    @property
    def n_m(self) -> tuple[int, int]:
        """(N kept, M per group)."""
        return NM_PATTERNS[self.method]


@register_transform(NM)
def _apply_nm(model: nn.Module, config: NM, calibration=None) -> nn.Module:
    n, m = config.n_m
    params = scope_params(model, config.scope)
    scores = None
    if config.importance == "wanda":
        from .unstructured import wanda_scores

        scores = wanda_scores(model, [mod for mod, _ in params], calibration)
    for i, (module, name) in enumerate(params):
        weight = getattr(module, name)
        try:
            mask = nm_mask(weight if scores is None else scores[i], n, m)
        except ValueError as exc:
            raise RecipeError(f"method {config.method!r} cannot prune {type(module).__name__} weight {tuple(weight.shape)}: {exc}") from None
        prune.custom_from_mask(module, name, mask)
    return model


for _name, (_n, _m) in NM_PATTERNS.items():
    register_method(
        _name,
        NM,
        pattern="n:m",
        help=f"keep the {_n} largest |w| (or Wanda |w|*||x||) of every {_m} consecutive weights of each Linear row ({_name}, sparsity {1 - _n / _m:.2f})",
        fixed_sparsity=1 - _n / _m,
        scopes=("linear",),
        importances=("magnitude", "wanda"),
        data_aware=("wanda",),
    )
