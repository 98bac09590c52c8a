"""Time-bounded distillation: train a pruned encoder towards the dense one's mean-pooled embeddings.

No labels: the loss is 1 - cosine + MSE of the pruned model's mean-pooled embeddings to the dense
model's, on the calibration batches, with AdamW, seeded, until a stated number of seconds has passed
(checked after every step), with a tqdm progress bar when tqdm is installed. Masked weights stay
masked (``torch.nn.utils.prune`` multiplies ``weight_orig`` by the mask in every forward).
"""

from __future__ import annotations

import logging
import time

import torch
from torch import nn

from .calibration import Calibration, mean_pool
from .registry import RecipeError

__all__ = ["distill"]

log = logging.getLogger("pruning.recover_distill")


def _progress(total: float):
    """A tqdm bar over seconds when tqdm is installed (to stderr), else None (the loop logs instead)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=round(total), unit="s", desc="distill", leave=False)


def distill(student: nn.Module, dense: nn.Module, calibration: Calibration, seconds: float, seed: int = 0,
            lr: float = 5e-5) -> tuple[list[float], float, int]:
    """Train ``student`` towards ``dense``'s mean-pooled embeddings (1 - cosine + MSE) on the calibration
    batches with AdamW, seeded, until ``seconds`` have passed (checked after every step). The masked
    weights stay masked (torch.nn.utils.prune multiplies ``weight_orig`` by the mask in every forward).
    Returns (loss per step, seconds spent, steps)."""
    if seconds <= 0:
        raise RecipeError(f"distillation needs a positive time budget, not {seconds!r}; pass --recover-seconds 120")
    dev = next(student.parameters()).device
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        dense.eval()
        targets = [mean_pool(dense(**{k: v.to(dev) for k, v in b.items()}).last_hidden_state.float(), b["attention_mask"].to(dev))
                   for b in calibration.batches]
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    student.train()
    for mod in student.modules():  # no dropout noise: the target is deterministic
        if isinstance(mod, nn.Dropout):
            mod.eval()
    curve: list[float] = []
    bar = _progress(seconds)
    t0 = time.perf_counter()
    last_tick = t0
    try:
        while time.perf_counter() - t0 < seconds:
            for i in torch.randperm(len(calibration.batches), generator=gen).tolist():
                b = {k: v.to(dev) for k, v in calibration.batches[i].items()}
                emb = mean_pool(student(**b).last_hidden_state.float(), b["attention_mask"])
                loss = (1 - nn.functional.cosine_similarity(emb, targets[i], dim=-1)).mean() + nn.functional.mse_loss(emb, targets[i])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                curve.append(float(loss.detach()))
                now = time.perf_counter()
                if bar is not None:
                    bar.update(round(now - t0) - bar.n)
                    bar.set_postfix(loss=f"{curve[-1]:.4f}")
                elif now - last_tick > 10:
                    log.info("distill %.0f/%.0f s, loss %.4f", now - t0, seconds, curve[-1])
                    last_tick = now
                if now - t0 >= seconds:
                    break
    finally:
        if bar is not None:
            bar.close()
        student.eval()
    spent = time.perf_counter() - t0
    log.info("distilled %d steps in %.1f s, loss %.4f -> %.4f", len(curve), spent, curve[0] if curve else float("nan"), curve[-1] if curve else float("nan"))
    return curve, spent, len(curve)
