"""Output fidelity to the dense model on the bundled sentence set.

Mean cosine of mean-pooled sentence embeddings (variant vs dense), and top-k nearest-neighbour
agreement: for each sentence, the overlap of its k nearest neighbours under both models.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Quality", "embed", "fidelity"]


@dataclass(frozen=True)
class Quality:
    cosine: float
    knn_agreement: float
    k: int


def embed(forward, batches: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    """Mean-pooled embeddings of every sentence; ``forward(inputs)`` returns the last hidden state."""
    out = []
    for inputs in batches:
        hidden = forward(inputs).float()
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        out.append((hidden * mask).sum(1) / mask.sum(1).clamp_min(1))
    return torch.cat(out)


def _knn(emb: torch.Tensor, k: int) -> torch.Tensor:
    e = torch.nn.functional.normalize(emb, dim=1)
    sim = e @ e.T
    sim.fill_diagonal_(-float("inf"))
    return sim.topk(k, dim=1).indices


def fidelity(dense: torch.Tensor, variant: torch.Tensor, k: int = 10) -> Quality:
    cos = torch.nn.functional.cosine_similarity(dense, variant, dim=1).mean().item()
    a, b = _knn(dense, k), _knn(variant, k)
    overlap = sum(len(set(x.tolist()) & set(y.tolist())) for x, y in zip(a, b))
    return Quality(cosine=cos, knn_agreement=overlap / (k * len(a)), k=k)
