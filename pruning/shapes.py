"""What a pruned model keeps: per layer the heads and FFN neurons (masked or removed), the layers.

Read off the prune masks of a masked model, or from what ``bake`` / ``load_pruned`` recorded on a
shrunk one (``model.prunebench_structure``, ``prunebench_*_layers``). The structured and depth
methods both use it; it imports neither.
"""

from __future__ import annotations

from torch import nn

from .targets import EncoderTargets, discover, layer_stack

__all__ = ["kept_from_masks", "kept_layers", "layer_shapes", "removed_fraction", "removed_layers_fraction"]


def kept_layers(model: nn.Module) -> list[int]:
    """Indices (in the dense model) of the layers a depth-pruned model keeps."""
    dense = getattr(model, "prunebench_dense_layers", None) or len(layer_stack(model))
    skipped = set(getattr(model, "prunebench_skipped_layers", ()))
    removed = set(getattr(model, "prunebench_removed_layers", ()))
    return [i for i in range(dense) if i not in skipped and i not in removed]


def removed_layers_fraction(model: nn.Module) -> float:
    """Fraction of the dense model's encoder layers removed or skipped."""
    dense = getattr(model, "prunebench_dense_layers", None) or len(layer_stack(model))
    return 1 - len(kept_layers(model)) / dense


def kept_from_masks(t: EncoderTargets) -> list[tuple[list[int], list[int]]] | None:
    """Per layer (kept head indices, kept neuron indices) read off the prune masks, or None if unmasked."""
    out, masked = [], False
    for att, ffn in zip(t.attention, t.ffn):
        heads = list(range(att.num_heads))
        qmask = getattr(att.query, "weight_mask", None)
        if qmask is not None:
            masked = True
            heads = [h for h in heads if bool(qmask.reshape(att.num_heads, -1)[h].any())]
        neurons = list(range(ffn.neurons))
        fmask = getattr(ffn.inp, "weight_mask", None)
        if fmask is not None:
            masked = True
            neurons = [j for j in neurons if bool(fmask[j].any())]
        out.append((heads, neurons))
    return out if masked else None


def layer_shapes(model: nn.Module) -> list[dict]:
    """Per layer: kept heads (count and indices) and FFN size, against the counts before pruning.

    Read off the masks of a masked model; for a shrunk model, from what ``bake``/``load_pruned``
    recorded (``model.prunebench_structure``); otherwise the model's own, unpruned, shapes.
    """
    t = discover(model)
    kept = kept_from_masks(t)
    if kept is not None:
        return [dict(num_heads=len(h), head_indices=h, ffn_size=len(f), dense_num_heads=a.num_heads, dense_ffn_size=ff.neurons)
                for (h, f), a, ff in zip(kept, t.attention, t.ffn)]
    recorded = getattr(model, "prunebench_structure", None)
    if recorded is not None:
        return [dict(x) for x in recorded]
    return [dict(num_heads=a.num_heads, head_indices=list(range(a.num_heads)), ffn_size=f.neurons,
                 dense_num_heads=a.num_heads, dense_ffn_size=f.neurons) for a, f in zip(t.attention, t.ffn)]


def removed_fraction(model: nn.Module, kinds: tuple[str, ...] | None = None) -> float:
    """The sparsity a structured recipe achieved: the fraction of heads and/or FFN neurons removed.

    With both kinds (``heads+ffn``) it is the mean of the two fractions, so heads count as much as
    neurons although neurons outnumber them. ``kinds`` defaults to the model's recipe pattern.
    """
    if kinds is None:
        recipe = getattr(model, "prunebench_recipe", None)
        kinds = tuple(recipe.spec.pattern.split("+")) if recipe is not None else ("heads", "ffn")
    shapes = layer_shapes(model)
    fractions = []
    if "heads" in kinds:
        fractions.append(1 - sum(s["num_heads"] for s in shapes) / sum(s["dense_num_heads"] for s in shapes))
    if "ffn" in kinds:
        fractions.append(1 - sum(s["ffn_size"] for s in shapes) / sum(s["dense_ffn_size"] for s in shapes))
    if "layers" in kinds:
        fractions.append(removed_layers_fraction(model))
    return sum(fractions) / len(fractions) if fractions else 0.0
