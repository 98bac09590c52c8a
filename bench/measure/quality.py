"""Quality of a variant: a real task on held-out text, and fidelity to the dense model, each with a
bootstrap 95% CI and a paired drop vs dense.

What is scored (an :class:`EvalTask`):

- the built-in BBC News corpus (:func:`corpus_task`, from :mod:`bench.data.corpus`, deduplicated by content):
  linear-probe accuracy (scikit-learn logistic regression on frozen mean-pooled embeddings, fit on probe-train,
  scored on a held-out split, as MTEB scores classification; ``report`` for every reported figure,
  ``selection`` for whatever is chosen), kNN accuracy (k=10, cosine, neighbours from
  probe-train) and title -> body retrieval (each held-out title is a query, its own body the one relevant
  document among all held-out bodies: recall@1 and MRR@10);
- a user's file (:func:`file_task`, ``--eval FILE``): ``text<TAB>label`` gives probe and kNN accuracy,
  ``s1<TAB>s2<TAB>score`` the Spearman correlation of cosine with the score;
- always: fidelity to dense on the held-out texts (mean cosine of the two embeddings of each text, and
  top-10 neighbour agreement).

A collapsed model scores chance on every task metric: ties are never hits (:mod:`bench.measure.stats`).
Every figure is a statistic of per-item scores; its CI is the percentile bootstrap over evaluation items
(seeded), and the paired drop (dense - variant, positive = quality lost) is computed on the same items with
the same bootstrap indices, so a variant identical to dense has a drop of exactly 0. Fidelity is already
relative to dense (dense scores 1.0), so it has no separate drop (scorers, bootstrap: :mod:`bench.measure.stats`).

:class:`QualityMeter` embeds each (model, recipe, dtype) once per run, dense included, in one place
(``QualityMeter._embeddings``, through the run's embedding cache), and scores from its cache."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from .stats import BOOTSTRAP, SEED, Estimate, estimates, knn_vote, probe_predictions, retrieval_scores

__all__ = ["EVAL_ITEMS", "K", "MAX_LEN", "METRICS", "PROBE_ITEMS", "EvalTask", "Quality", "QualityMeter", "QualityResult",
           "corpus_task", "embed", "embed_texts", "fidelity", "fidelity_items", "file_task", "task_items"]

log = logging.getLogger("bench.measure.quality")

# Held-out and probe-train articles of the BBC News split, and the token cap of every quality input: the
# budget that keeps quality within seconds per MiniLM variant on a 2-core CPU (bodies are the long part).
EVAL_ITEMS, PROBE_ITEMS, MAX_LEN = 250, 200, 48
K = 10  # kNN accuracy and neighbour agreement
BATCH = 32

# figure -> (record field of the figure, record field of its paired drop vs dense or None); each field F also
# has F_lo and F_hi (95% CI)
METRICS: dict[str, tuple[str, str | None]] = {
    "probe_acc": ("quality_probe_acc", "quality_probe_drop"),
    "knn_acc": ("quality_knn_acc", "quality_knn_drop"),
    "r1": ("quality_r1", "quality_r1_drop"),
    "mrr10": ("quality_mrr10", "quality_mrr10_drop"),
    "spearman": ("quality_spearman", "quality_spearman_drop"),
    "cosine": ("quality_cosine", None),
    "knn_agreement": ("quality_knn_agreement", None),
}


# -- fidelity on embeddings (point figures) ---------------------------------------------------------
@dataclass(frozen=True)
class Quality:
    """Fidelity point figures: mean cosine to dense and top-k neighbour agreement."""

    cosine: float
    knn_agreement: float
    k: int


def embed(forward: Callable[[dict[str, torch.Tensor]], torch.Tensor], batches: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    """Mean-pooled embeddings of every row; ``forward(inputs)`` returns the last hidden state."""
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


def fidelity_items(dense: torch.Tensor, variant: torch.Tensor, k: int = K) -> dict[str, np.ndarray]:
    """Per item: cosine of its two embeddings, and the fraction of its k nearest neighbours both models share."""
    k = min(k, len(dense) - 1)
    cos = torch.nn.functional.cosine_similarity(dense.double(), variant.double(), dim=1).numpy()
    if k < 1:
        return {"cosine": cos}
    a, b = _knn(dense, k), _knn(variant, k)
    shared = (a.unsqueeze(2) == b.unsqueeze(1)).any(2).sum(1).double() / k
    return {"cosine": cos, "knn_agreement": shared.numpy()}


def fidelity(dense: torch.Tensor, variant: torch.Tensor, k: int = K) -> Quality:
    """Mean cosine and top-k neighbour agreement of two embeddings of the same texts."""
    items = fidelity_items(dense, variant, k)
    return Quality(cosine=float(items["cosine"].mean()), knn_agreement=float(items["knn_agreement"].mean()), k=k)


# -- what is scored ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalTask:
    """Named groups of texts to embed, and the labels or scores that go with them.

    ``kind``: ``corpus`` (groups train, eval, title, body: probe, kNN, retrieval), ``labels`` (train, eval:
    probe, kNN) or ``pairs`` (s1, s2: Spearman). ``split`` is the one-line account recorded with each case.
    """

    kind: str
    split: str
    texts: Mapping[str, tuple[str, ...]]
    train_labels: tuple[int, ...] = ()
    eval_labels: tuple[int, ...] = ()
    scores: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        need = {"corpus": {"train", "eval", "title", "body"}, "labels": {"train", "eval"}, "pairs": {"s1", "s2"}}
        if self.kind not in need:
            raise ValueError(f"task kind {self.kind!r} is not corpus, labels or pairs")
        if not need[self.kind] <= set(self.texts):
            raise ValueError(f"a {self.kind} task needs text groups {sorted(need[self.kind])}, got {sorted(self.texts)}")

    @property
    def fidelity_groups(self) -> tuple[str, ...]:
        """The held-out texts fidelity is scored on."""
        return ("s1", "s2") if self.kind == "pairs" else ("eval",)


def corpus_task(seed: int = SEED, probe_train: int = PROBE_ITEMS, eval: int = EVAL_ITEMS,  # noqa: A002
                split: str = "report", cap: int | None = None) -> EvalTask:
    """The BBC News task scored on one held-out split (``eval`` articles each): probe-train article texts, the
    held-out texts, their titles and bodies. ``cap`` (a plan's ``quality_items``) keeps at most N articles per split
    (held-out: a stratified subset of the uncapped split's) and ends the account in ``capped=N``.

    ``split`` is ``report`` (every reported figure: nothing is chosen on it) or ``selection`` (what a frontier
    floor, a study or a default is chosen on). The recorded account names the deduplication, every split's size,
    the split scored and the digest, so a figure scored on another (or the old, undeduplicated) split differs."""
    from bench.data.corpus import HELD_OUT, splits

    if split not in HELD_OUT:
        raise ValueError(f"corpus split {split!r} is not one of {', '.join(HELD_OUT)}")
    probe_train, eval = (probe_train, eval) if cap is None else (min(probe_train, cap), min(eval, cap))  # noqa: A001
    s = splits(seed, probe_train=probe_train, selection=eval, report=eval)
    held = getattr(s, split)
    topics = sorted({a.topic for a in s.probe_train})
    d = s.describe()
    account = (f"bbc-news dedup={d['dedup']} unique={d['unique']}/{d['total']} seed={d['seed']} "
               f"calibration={d['calibration']} probe_train={d['probe_train']} selection={d['selection']} "
               f"report={d['report']} scored={split} digest={d['digest']}" + (f" capped={cap}" if cap else ""))
    return EvalTask("corpus", account, {"train": tuple(a.text for a in s.probe_train), "eval": tuple(a.text for a in held),
                                        "title": tuple(a.title for a in held), "body": tuple(a.body for a in held)},
                    train_labels=tuple(topics.index(a.topic) for a in s.probe_train),
                    eval_labels=tuple(topics.index(a.topic) for a in held))


def file_task(ev) -> EvalTask:
    """A task from a parsed :class:`bench.data.evalfile.EvalFile`."""
    if ev.kind == "labels":
        return EvalTask("labels", ev.describe(), {"train": ev.train_texts, "eval": ev.eval_texts},
                        train_labels=ev.train_labels, eval_labels=ev.eval_labels)
    return EvalTask("pairs", ev.describe(), {"s1": ev.s1, "s2": ev.s2}, scores=ev.scores)


# -- embedding ----------------------------------------------------------------------------------------
def _clip(texts: tuple[str, ...], max_len: int, encode: Callable[[list[str], int], dict]) -> list[str]:
    """Texts cut at a word boundary well past ``max_len`` tokens, so a long body is not tokenized whole; a cut
    text that no longer fills ``max_len`` tokens is given whole (the tokenizer's truncation stays exact)."""
    room = 12 * max_len  # characters; a token is rarely longer than 12
    cut = [t if len(t) <= room else t[:room].rsplit(" ", 1)[0] for t in texts]
    shortened = [i for i, (a, b) in enumerate(zip(cut, texts)) if a is not b]
    if shortened:
        lengths = encode([cut[i] for i in shortened], max_len)["attention_mask"].sum(1).tolist()
        for i, n in zip(shortened, lengths):
            if n < max_len:
                cut[i] = texts[i]
    return cut


def embed_texts(net: nn.Module, encode: Callable[[list[str], int], dict], texts: tuple[str, ...], max_len: int,
                batch: int = BATCH) -> torch.Tensor:
    """Mean-pooled embeddings of ``texts`` (in their order), truncated by the tokenizer to ``max_len``.

    Texts are sorted by token count and batched with padding to the longest in each batch, so short titles
    cost little."""
    if not texts:
        return torch.empty(0)
    enc = encode(_clip(texts, max_len, encode), max_len)
    order = torch.argsort(enc["attention_mask"].sum(1), stable=True)
    parts = []
    with torch.inference_mode():
        for i in range(0, len(order), batch):
            rows = order[i:i + batch]
            mask = enc["attention_mask"][rows]
            cols = mask.any(0)
            inputs = {k: v[rows][:, cols] for k, v in enc.items()}
            parts.append(embed(lambda x: net(**x).last_hidden_state, [inputs]))
        out = torch.empty(len(texts), parts[0].shape[1])
        out[order] = torch.cat(parts)
    return out


def task_items(task: EvalTask, emb: Mapping[str, torch.Tensor], seed: int = SEED) -> dict[str, np.ndarray]:
    """Per-item scores of one model: 0/1 correctness for the accuracies, recall@1 and reciprocal rank per
    query, (cosine, score) rows for Spearman."""
    if task.kind == "pairs":
        cos = torch.nn.functional.cosine_similarity(emb["s1"].double(), emb["s2"].double(), dim=1).numpy()
        return {"spearman": np.column_stack([cos, np.asarray(task.scores, float)])}
    y_train, y_eval = np.asarray(task.train_labels), np.asarray(task.eval_labels)
    classes = int(max(y_train.max(), y_eval.max())) + 1
    out = {"probe_acc": (probe_predictions(emb["train"], y_train, emb["eval"], seed) == y_eval).astype(float),
           "knn_acc": (knn_vote(emb["train"], y_train, emb["eval"], K, classes) == y_eval).astype(float)}
    if task.kind == "corpus":
        out["r1"], out["mrr10"] = retrieval_scores(emb["title"], emb["body"])
    return out


# -- one run's quality, cached --------------------------------------------------------------------------
@dataclass(frozen=True)
class QualityResult:
    """A variant's quality figures (keys of :data:`METRICS`), what they were scored on, and the seconds this
    measurement took (near 0 when every embedding was cached)."""

    figures: dict[str, Estimate]
    split: str
    max_len: int
    seconds: float = 0.0

    def record_fields(self) -> dict[str, float | str | None]:
        """The flat record fields: quality_<figure>[_lo|_hi], quality_<task>_drop[_lo|_hi], quality_split,
        quality_max_len, quality_seconds."""
        out: dict[str, float | str | None] = {}
        for name, est in self.figures.items():
            value_field, drop_field = METRICS[name]
            out.update({value_field: round(est.value, 6), f"{value_field}_lo": round(est.lo, 6),
                        f"{value_field}_hi": round(est.hi, 6)})
            if drop_field is not None and est.drop is not None:
                out.update({drop_field: round(est.drop, 6), f"{drop_field}_lo": round(est.drop_lo, 6),
                            f"{drop_field}_hi": round(est.drop_hi, 6)})
        out.update(quality_split=self.split, quality_max_len=self.max_len, quality_seconds=round(self.seconds, 3))
        return out


@dataclass
class QualityMeter:
    """Scores the cases of one run: each model's (and recipe's, and dtype's) embeddings of the task are
    computed once, on first use, and kept for every runtime and later case.

    Keys are any hashable tuples naming a (model, recipe, dtype); ``net(key)`` builds that network only when
    its embeddings are not cached yet."""

    resamples: int = BOOTSTRAP
    seed: int = SEED
    embedder: Callable[..., torch.Tensor] = embed_texts  # bench.measure.embed_cache.EmbedCache.embed_texts: once per weights
    _emb: dict[Hashable, dict[str, torch.Tensor]] = field(default_factory=dict)
    _items: dict[Hashable, dict[str, np.ndarray]] = field(default_factory=dict)
    _results: dict[Hashable, QualityResult] = field(default_factory=dict)

    def _embeddings(self, key: Hashable, net: Callable[[Hashable], nn.Module], encode, task: EvalTask, max_len: int,
                    groups: tuple[str, ...]) -> dict[str, torch.Tensor]:
        have = self._emb.setdefault((key, task.split, max_len), {})
        missing = [g for g in groups if g not in have]
        if missing:
            model = net(key)
            for g in missing:
                have[g] = self.embedder(model, encode, task.texts[g], max_len)
        return have

    def _task_items(self, key: Hashable, emb: dict[str, torch.Tensor], task: EvalTask, max_len: int) -> dict[str, np.ndarray]:
        k = (key, task.split, max_len)
        if k not in self._items:
            self._items[k] = task_items(task, emb, self.seed)
        return self._items[k]

    def measure(self, dense: Hashable, variant: Hashable, net: Callable[[Hashable], nn.Module],
                encode: Callable[[list[str], int], dict], task: EvalTask, max_len: int, *,
                task_metrics: bool = True) -> QualityResult:
        """The variant's quality vs dense on ``task``; without ``task_metrics`` (random-init models) fidelity only.
        ``seconds`` is the time this call took."""
        t0 = time.perf_counter()
        rkey = (dense, variant, task.split, max_len, task_metrics)
        if rkey not in self._results:
            groups = tuple(task.texts) if task_metrics else task.fidelity_groups
            d_emb = self._embeddings(dense, net, encode, task, max_len, groups)
            v_emb = d_emb if variant == dense else self._embeddings(variant, net, encode, task, max_len, groups)
            fg = task.fidelity_groups
            d_fid, v_fid = (torch.cat([e[g] for g in fg]) for e in (d_emb, v_emb))
            figures = estimates(fidelity_items(d_fid, v_fid), resamples=self.resamples, seed=self.seed)
            if task_metrics:
                d_items = self._task_items(dense, d_emb, task, max_len)
                v_items = d_items if variant == dense else self._task_items(variant, v_emb, task, max_len)
                figures = {**estimates(v_items, d_items, self.resamples, self.seed), **figures}
            self._results[rkey] = QualityResult(figures, task.split, max_len)
        return replace(self._results[rkey], seconds=time.perf_counter() - t0)
