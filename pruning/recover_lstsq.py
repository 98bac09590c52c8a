"""Least-squares recovery ("mask tuning", after Kwon et al. 2022): refit a pruned encoder's output
projections layer by layer so what reaches each LayerNorm matches the dense model's.

Layer by layer, bottom up, on the calibration set, with the *pruned* model's own inputs to each
layer (so each fit also corrects the errors of the layers below it instead of compounding them), the
attention-output projection and then the FFN down-projection are fitted so that what reaches the
following LayerNorm — the projection's output plus the residual — matches the dense model's on the
same tokens. Two fits:

- ``scales``: Kwon's, one scale per kept head / neuron (a least-squares solve over k unknowns),
  folded into the projection's kept columns;
- ``ridge``: the whole projection (kept columns and bias) re-fitted, ridge-regularised towards its
  current weights (a strength x the mean input energy, picked per projection on calibration batches
  held out of its fit: ``RIDGE_GRID``), which has out_features x more freedom.
  Measured on MiniLM heads+ffn[fisher]@0.50 (held-out cosine to dense): ridge recovers more than
  scales (which did not beat no recovery there), so ridge is the default; both stay selectable.

Both write into the masked model's ``weight_orig`` (or ``weight``) and bias, so the masked model, the
baked one and a shrunk reload all compute the same thing. The target LayerNorm of a projection is
found by running one batch: the first LayerNorm of the layer that runs after it (post-LN encoders:
BERT, MiniLM, RoBERTa, DistilBERT, ELECTRA).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from .calibration import Calibration, LayerInputs, capture, first_layer_inputs, run_layer, run_layers, run_until, tokens_of
from .registry import RecipeError
from .targets import discover, layer_stack

__all__ = ["RIDGE", "RIDGE_GRID", "VALIDATION_EVERY", "layer_errors", "lstsq"]

log = logging.getLogger("pruning.recover_lstsq")

# Ridge strength towards the current weights, relative to the mean diagonal of the input Gram matrix.
# Picked per projection, on the calibration set alone: every VALIDATION_EVERY-th calibration batch is held
# out of the fit, each strength of RIDGE_GRID is solved on the rest, and the one with the least
# reconstruction error on the held-out batches wins; the projection is then re-solved on every batch with
# it. RIDGE is used when the calibration set has too few batches to hold any out.
RIDGE = 0.3
RIDGE_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
VALIDATION_EVERY = 4


# -- what a projection sees --------------------------------------------------------------------
def _projections(model: nn.Module, layer: int) -> dict[str, tuple[nn.Linear, int]]:
    """The layer's attention-output and FFN down-projection, with each one's input group size."""
    t = discover(model)
    att, ffn = t.attention[layer], t.ffn[layer]
    return {"att": (att.output, att.head_size), "ffn": (ffn.out, 1)}


def _kept_columns(model: nn.Module, layer: int, part: str) -> torch.Tensor:
    """Input columns of the projection that are still alive (read off the masks; all if unmasked)."""
    t = discover(model)
    if part == "att":
        src, n = t.attention[layer].query, t.attention[layer].output.in_features
    else:
        src, n = t.ffn[layer].inp, t.ffn[layer].out.in_features
    mask = getattr(src, "weight_mask", None)
    if mask is None:
        return torch.arange(n)
    return mask.any(dim=1).nonzero().flatten().cpu()


def _post_norms(model: nn.Module, layer: int, batch: dict[str, torch.Tensor]) -> dict[str, nn.Module]:
    """The LayerNorm each projection of ``layer`` feeds: the first one of the layer to run after it."""
    block = layer_stack(model)[layer]
    projs = _projections(model, layer)
    order: list[object] = []
    norms = {id(m): m for m in block.modules() if isinstance(m, nn.LayerNorm)}
    hooks = [m.register_forward_hook(lambda mod, a, o: order.append(id(mod))) for m in norms.values()]
    hooks += [lin.register_forward_hook(lambda mod, a, o, p=p: order.append(p)) for p, (lin, _) in projs.items()]
    try:
        run_until(model, batch, block)
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for p in projs:
        after = order[order.index(p) + 1:] if p in order else []
        ln = next((norms[i] for i in after if i in norms), None)
        if ln is None:
            raise RecipeError(f"layer {layer}: no LayerNorm runs after its {p} projection; lstsq recovery needs a post-LN encoder")
        out[p] = ln
    return out


def _watch(model: nn.Module, inputs: LayerInputs, pos: int, layer: int, batch: dict) -> tuple[LayerInputs, int, list[dict], dict]:
    """Run ``model``'s layers from ``pos`` through ``layer``, watching ``layer``'s post-LayerNorms: the next
    inputs, the next position, per batch what each LayerNorm got, and the LayerNorms."""
    stack = layer_stack(model)
    inputs, _ = run_layers(stack, inputs, pos, layer)
    norms = _post_norms(model, layer, batch)
    inputs, seen = run_layer(stack[layer], inputs, norms)
    return inputs, layer + 1, seen, norms


def _stats(lin: nn.Linear, ln: nn.Module, block: nn.Module, inputs: LayerInputs, z_dense: list[torch.Tensor],
           masks: list[torch.Tensor], kept: torch.Tensor, group: int, fit: str) -> dict:
    """Accumulate the normal equations of one projection's fit over the calibration batches: the
    student layer runs on its own inputs; ``z_dense`` is the dense pre-LayerNorm sum to match."""
    dev = lin.weight.device
    w = lin.weight.detach().double()[:, kept.to(dev)]
    bias = lin.bias.detach().double() if lin.bias is not None else torch.zeros(lin.out_features, dtype=torch.float64, device=dev)
    groups = len(kept) // group
    _, seen = run_layer(block, inputs, {"lin": lin, "ln": ln})
    s: dict = {"tt": 0.0, "zz": 0.0, "err0": 0.0, "tt_v": 0.0}
    held_out = fit == "ridge" and len(seen) >= VALIDATION_EVERY
    for i, (got, zd_full, m) in enumerate(zip(seen, z_dense, masks)):
        z_d = tokens_of(zd_full, m).double()
        x = tokens_of(got["lin"][0], m).double()[:, kept.to(dev)]
        y = tokens_of(got["lin"][1], m).double()
        z_s = tokens_of(got["ln"][0], m).double()
        target = z_d - (z_s - y)  # what the projection should output: dense sum minus the student's residual
        s["tt"] += float(target.pow(2).sum())
        s["zz"] += float(z_d.pow(2).sum())
        s["err0"] += float((z_d - z_s).pow(2).sum())
        if fit == "ridge":
            xa = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype, device=dev)], dim=1)
            v = "_v" if held_out and i % VALIDATION_EVERY == VALIDATION_EVERY - 1 else ""  # held out of the fit
            s["G" + v] = s.get("G" + v, 0) + xa.t() @ xa
            s["H" + v] = s.get("H" + v, 0) + xa.t() @ target
            if v:
                s["tt_v"] += float(target.pow(2).sum())
        else:
            rhs = target - bias
            if group == 1:
                s["G"] = s.get("G", 0) + (x.t() @ x) * (w.t() @ w)
                s["H"] = s.get("H", 0) + (x * (rhs @ w)).sum(dim=0)
            else:
                per = torch.einsum("tgd,ogd->tgo", x.reshape(-1, groups, group), w.reshape(-1, groups, group))
                s["G"] = s.get("G", 0) + torch.einsum("tgo,tho->gh", per, per)
                s["H"] = s.get("H", 0) + torch.einsum("tgo,to->g", per, rhs)
    s.update(w=w, bias=bias)
    return s


def _write(lin: nn.Linear, kept: torch.Tensor, new_w: torch.Tensor, new_b: torch.Tensor | None) -> None:
    """Put fitted kept columns (and bias) into the projection, masked or not."""
    target = getattr(lin, "weight_orig", None)
    target = lin.weight if target is None else target
    with torch.no_grad():
        target[:, kept.to(target.device)] = new_w.to(target.dtype)
        if new_b is not None and lin.bias is not None:
            lin.bias.copy_(new_b.to(lin.bias.dtype))


def _ridge(g: torch.Tensor, h: torch.Tensor, prior: torch.Tensor, k: int, strength: float) -> torch.Tensor:
    """Ridge solution of one projection's normal equations, pulled towards ``prior`` on the k weight
    columns (not the bias) with ``strength`` x their mean input energy."""
    reg = torch.zeros_like(g)
    reg.diagonal()[:k] = strength * float(torch.diagonal(g)[:k].mean())
    return torch.linalg.solve(g + reg, h + reg @ prior)


def _solve(s: dict, lin: nn.Linear, kept: torch.Tensor, group: int, fit: str, layer: int, part: str) -> tuple[dict, dict | None]:
    """Solve one projection's fit from its statistics, write it, and report the error before / after."""
    denom = max(s["zz"], 1e-30)  # errors relative to the dense pre-LayerNorm sum's energy, as layer_errors
    before = s["err0"] / denom
    w, bias, g, h = s["w"], s["bias"], s["G"], s["H"]
    if fit == "ridge":
        k = len(kept)
        prior = torch.cat([w, bias[:, None]], dim=1).t()  # ridge towards the current weights
        prior[k:] = 0
        strength, val = RIDGE, None
        if "G_v" in s:  # pick the strength on the held-out calibration batches, then fit on all of them
            gv, hv = s["G_v"], s["H_v"]
            val = {}
            for cand in RIDGE_GRID:
                sol = _ridge(g, h, prior, k, cand)
                val[cand] = float(torch.trace(sol.t() @ gv @ sol) - 2 * torch.trace(sol.t() @ hv) + s["tt_v"]) / denom
            strength = min(val, key=val.get)
            g, h = g + gv, h + hv  # "tt" already sums every batch
        sol = _ridge(g, h, prior, k, strength)
        _write(lin, kept, sol[:k].t(), sol[k])
        after = float(torch.trace(sol.t() @ g @ sol) - 2 * torch.trace(sol.t() @ h) + s["tt"]) / denom
        err = {"layer": layer, "part": part, "before": before, "after": max(after, 0.0), "ridge": strength}
        if val is not None:
            err["validation"] = {f"{c:g}": e for c, e in val.items()}
        return err, None
    damp = 1e-6 * float(torch.diagonal(g).mean())
    scales = torch.linalg.solve(g + damp * torch.eye(len(g), dtype=g.dtype, device=g.device), h)
    _write(lin, kept, w * scales.repeat_interleave(group)[None, :], None)
    ones = torch.ones_like(scales)
    after = before + float(scales @ g @ scales - 2 * scales @ h - (ones @ g @ ones - 2 * ones @ h)) / denom
    groups = kept.reshape(-1, group)[:, 0] // group
    return ({"layer": layer, "part": part, "before": before, "after": max(after, 0.0)},
            {"layer": layer, "part": part, "kept": groups.tolist(), "scales": scales.float().cpu().tolist()})


def lstsq(student: nn.Module, dense: nn.Module, calibration: Calibration, fit: str = "ridge") -> tuple[list[dict], list[dict]]:
    """Fit every layer's output projections bottom up (see the module docstring); in place.

    Each model's first-layer inputs are captured once per calibration batch and carried up layer by
    layer, so the whole fit costs a few forwards. With depth pruning only kept layers are fitted, and
    the FFN of the last kept layer below a removed run is fitted to the output of the run's top layer
    (with that layer's LayerNorm). Returns (errors, scales): per projection the relative
    pre-LayerNorm reconstruction error before and after its fit, and for ``fit="scales"`` the solved
    scale of every kept head / neuron."""
    errors, scales = [], []
    student.eval()
    dense.eval()
    n = len(layer_stack(student))
    skipped = set(getattr(student, "prunebench_skipped_layers", ()))  # depth pruning: layers passed through
    kept = [i for i in range(n) if i not in skipped]
    stack_s = layer_stack(student)
    dev = next(student.parameters()).device
    masks = [b["attention_mask"].to(dev) for b in calibration.batches]
    first = calibration.batches[0]
    s_in, d_in = first_layer_inputs(student, calibration), first_layer_inputs(dense, calibration)
    s_pos = d_pos = 0
    for pos, layer in enumerate(kept):
        # a kept layer's FFN output stands in for the dense model's output of the last layer before the
        # next kept one (the removed layers' work is folded into it)
        top = (kept[pos + 1] - 1) if pos + 1 < len(kept) else n - 1
        s_in, s_pos = run_layers(stack_s, s_in, s_pos, layer)
        d_in, d_pos, seen, _ = _watch(dense, d_in, d_pos, layer, first)
        z_att = [x["att"][0] for x in seen]
        z_ffn = [x["ffn"][0] for x in seen]
        norms_s = _post_norms(student, layer, first)
        if top != layer:
            d_in, d_pos, seen, top_norms = _watch(dense, d_in, d_pos, top, first)
            z_ffn = [x["ffn"][0] for x in seen]
            norms_s["ffn"].load_state_dict(top_norms["ffn"].state_dict())
        for part, z_d in (("att", z_att), ("ffn", z_ffn)):
            lin, group = _projections(student, layer)[part]
            cols = _kept_columns(student, layer, part)
            st = _stats(lin, norms_s[part], stack_s[layer], s_in, z_d, masks, cols, group, fit)
            err, sc = _solve(st, lin, cols, group, fit, layer, part)
            log.info("lstsq[%s] layer %d %s: reconstruction error %.4f -> %.4f", fit, layer, part, err["before"], err["after"])
            errors.append(err)
            if sc is not None:
                scales.append(sc)
        s_in, _ = run_layer(stack_s[layer], s_in)
        s_pos += 1
    return errors, scales


def layer_errors(student: nn.Module, dense: nn.Module, calibration: Calibration) -> list[dict]:
    """Per layer and projection, the relative error ``||z_s - z_d||^2 / ||z_d||^2`` of what reaches its
    LayerNorm (pruned vs dense, each on its own inputs), measured directly by forwards."""
    out = []
    dev = next(student.parameters()).device
    skipped = set(getattr(student, "prunebench_skipped_layers", ()))
    for layer in range(len(layer_stack(student))):
        if layer in skipped:
            continue
        norms_s = _post_norms(student, layer, calibration.batches[0])
        norms_d = _post_norms(dense, layer, calibration.batches[0])
        for part in ("att", "ffn"):
            num = den = 0.0
            for b in calibration.batches:
                b = {k: v.to(dev) for k, v in b.items()}
                with capture({"ln": norms_d[part]}) as gd:
                    run_until(dense, b, norms_d[part])
                with capture({"ln": norms_s[part]}) as gs:
                    run_until(student, b, norms_s[part])
                m = b["attention_mask"]
                zd = tokens_of(gd["ln"].inputs[0][0], m).double()
                zs = tokens_of(gs["ln"].inputs[0][0], m).double()
                num += float((zs - zd).pow(2).sum())
                den += float(zd.pow(2).sum())
            out.append({"layer": layer, "part": part, "error": num / max(den, 1e-30)})
    return out
