"""Discover the prunable parts of any Hugging Face encoder from its module structure.

No per-architecture parameter lists: the encoder's layer stack is the longest ``nn.ModuleList`` of
identical blocks holding ``nn.Linear`` layers; inside a block, query, key and value are three sibling
Linears reading the hidden state with equal widths (hidden -> heads x head_size), the attention
output maps that width back to hidden (the candidate nearest to query in the module tree), and the
FFN is the remaining hidden -> intermediate / intermediate -> hidden pair. Widths are not assumed to
equal hidden, so models whose heads or FFN neurons were removed are found too. This finds BERT,
MiniLM, DistilBERT, RoBERTa, ELECTRA and kin.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

from torch import nn

__all__ = [
    "AttentionBlock",
    "EncoderTargets",
    "FFNBlock",
    "Param",
    "SCOPES",
    "TargetError",
    "discover",
    "layer_stack",
    "scope_params",
]

log = logging.getLogger("pruning.targets")

Param = tuple[nn.Module, str]
SCOPES = ("seed", "linear", "all")
_QKV_HINTS = (("query", "q_lin", "q_proj", "q"), ("key", "k_lin", "k_proj", "k"), ("value", "v_lin", "v_proj", "v"))


class TargetError(ValueError):
    """The model has no encoder structure that prunebench recognises."""


@dataclass(frozen=True)
class AttentionBlock:
    """One layer's self-attention: q/k/v projections, the output projection and the head layout."""

    layer: int
    module: nn.Module  # the module holding q/k/v (its head-count attribute is kept in sync)
    query: nn.Linear
    key: nn.Linear
    value: nn.Linear
    output: nn.Linear

    @property
    def head_size(self) -> int:
        size = getattr(self.module, "attention_head_size", None) or getattr(self.module, "head_dim", None)
        if size is None:
            raise TargetError(f"layer {self.layer}: attention module has no head size attribute")
        return int(size)

    @property
    def num_heads(self) -> int:
        return self.query.out_features // self.head_size


@dataclass(frozen=True)
class FFNBlock:
    """One layer's feed-forward pair: hidden -> intermediate (``inp``) and back (``out``)."""

    layer: int
    inp: nn.Linear
    out: nn.Linear

    @property
    def neurons(self) -> int:
        return self.inp.out_features


@dataclass(frozen=True)
class EncoderTargets:
    """Everything prunable in one encoder, found by structure."""

    hidden_size: int
    attention: tuple[AttentionBlock, ...]
    ffn: tuple[FFNBlock, ...]
    word_embeddings: nn.Embedding
    embeddings: tuple[nn.Embedding, ...]

    def linears(self) -> list[nn.Linear]:
        """Every encoder Linear, layer by layer: q, k, v, attention output, FFN in, FFN out."""
        out: list[nn.Linear] = []
        for att, ffn in zip(self.attention, self.ffn):
            out += [att.query, att.key, att.value, att.output, ffn.inp, ffn.out]
        return out


def _layer_stack(model: nn.Module) -> nn.ModuleList:
    best: nn.ModuleList | None = None
    for _, mod in model.named_modules():
        if not isinstance(mod, nn.ModuleList) or len(mod) == 0:
            continue
        if len({type(m) for m in mod}) != 1:
            continue
        if not any(isinstance(m, nn.Linear) for m in mod[0].modules()):
            continue
        if best is None or len(mod) > len(best):
            best = mod
    if best is None:
        raise TargetError(
            f"{type(model).__name__} has no stack of encoder layers (nn.ModuleList of blocks with Linear "
            "layers); pass a Hugging Face encoder such as BertModel, DistilBertModel or RobertaModel"
        )
    return best


def _pick_qkv(names: list[str]) -> list[int]:
    """Pick query, key, value among sibling projections by name hints, else the first three registered."""
    order: list[int] = []
    for hints in _QKV_HINTS:
        hit = [i for i, n in enumerate(names) if n.split(".")[-1] in hints and i not in order]
        if len(hit) != 1:
            return [0, 1, 2]
        order.append(hit[0])
    return order


def _common_prefix(a: str, b: str) -> int:
    """How many leading module-path components two dotted names share."""
    n = 0
    for x, y in zip(a.split("."), b.split(".")):
        if x != y:
            break
        n += 1
    return n


def _find_qkv(idx: int, linears: list[tuple[str, nn.Linear]], hidden: int) -> list[int]:
    """Indices (into ``linears``) of query, key, value: three siblings reading hidden, equal widths."""
    groups: dict[tuple[str, int], list[int]] = {}
    for i, (n, m) in enumerate(linears):
        if m.in_features == hidden:
            groups.setdefault((n.rpartition(".")[0], m.out_features), []).append(i)
    group = next((ix for ix in groups.values() if len(ix) >= 3), None)
    if group is None:
        raise TargetError(f"layer {idx}: no three sibling projections of the hidden state with equal widths (query, key, value)")
    return [group[j] for j in _pick_qkv([linears[i][0] for i in group])]


def layer_stack(model: nn.Module) -> nn.ModuleList:
    """The encoder's stack of layers (what depth pruning removes entries from)."""
    return _layer_stack(model)


def _split_layer(idx: int, block: nn.Module, hidden: int) -> tuple[AttentionBlock, FFNBlock]:
    linears = [(n, m) for n, m in block.named_modules() if isinstance(m, nn.Linear)]
    linears = [(n, m) for n, m in linears if hidden in (m.in_features, m.out_features)]
    qkv_idx = _find_qkv(idx, linears, hidden)
    q_name, q = linears[qkv_idx[0]]
    rest = [i for i in range(len(linears)) if i not in qkv_idx]
    if len(rest) != 3:
        raise TargetError(
            f"layer {idx} ({type(block).__name__}) has {len(linears)} Linear layers touching the hidden size; "
            "prunebench expects separate q/k/v/output projections and one FFN pair "
            "(fused QKV or gated FFNs are not supported yet)"
        )
    found = []
    for o, u, d in itertools.permutations(rest):
        out, up, down = linears[o][1], linears[u][1], linears[d][1]
        if (out.in_features == q.out_features and out.out_features == hidden and up.in_features == hidden
                and down.out_features == hidden and up.out_features == down.in_features and u < d):
            found.append((-_common_prefix(q_name, linears[o][0]), o, u, d))
    if not found:
        widths = ", ".join(f"{linears[i][0]} {linears[i][1].in_features}->{linears[i][1].out_features}" for i in rest)
        raise TargetError(f"layer {idx}: no attention output ({q.out_features}->{hidden}) and FFN pair among {widths}")
    _, o, u, d = min(found)
    parent_name = q_name.rpartition(".")[0]
    holder = block.get_submodule(parent_name) if parent_name else block
    key, value = (linears[i][1] for i in qkv_idx[1:])
    att = AttentionBlock(idx, holder, q, key, value, linears[o][1])
    return att, FFNBlock(idx, linears[u][1], linears[d][1])


def discover(model: nn.Module) -> EncoderTargets:
    """Find attention, FFN and embedding targets of ``model`` by structure; raise TargetError if none."""
    stack = _layer_stack(model)
    get_emb = getattr(model, "get_input_embeddings", None)
    word = get_emb() if callable(get_emb) else None
    stack_ids = {id(m) for m in stack.modules()}
    embeddings = tuple(m for m in model.modules() if isinstance(m, nn.Embedding) and id(m) not in stack_ids)
    if not isinstance(word, nn.Embedding):
        word = max(embeddings, key=lambda e: e.num_embeddings, default=None)
    if word is None:
        raise TargetError(f"{type(model).__name__} has no input embedding; is it a text encoder?")
    hidden = word.embedding_dim
    pairs = [_split_layer(i, block, hidden) for i, block in enumerate(stack)]
    return EncoderTargets(
        hidden_size=hidden,
        attention=tuple(a for a, _ in pairs),
        ffn=tuple(f for _, f in pairs),
        word_embeddings=word,
        embeddings=embeddings,
    )


def scope_params(model: nn.Module, scope: str) -> list[Param]:
    """The ``(module, name)`` pairs a scope covers.

    ``seed``: the tutorial's tuple, word embeddings plus q/k/v weight and bias of every layer;
    ``linear``: every encoder Linear weight; ``all``: ``linear`` plus every embedding table.
    """
    if scope not in SCOPES:
        raise TargetError(f"unknown scope {scope!r}; choose one of {', '.join(SCOPES)}")
    t = discover(model)
    if scope == "seed":
        params: list[Param] = [(t.word_embeddings, "weight")]
        for att in t.attention:
            for lin in (att.query, att.key, att.value):
                params += [(lin, "weight"), (lin, "bias")]
        return params
    params = [(lin, "weight") for lin in t.linears()]
    if scope == "all":
        params = [(e, "weight") for e in t.embeddings] + params
    return params
