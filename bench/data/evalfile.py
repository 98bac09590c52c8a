"""A user's own evaluation file (``prunebench run --eval FILE``, ``eval = "FILE"`` in a plan).

Two TSV shapes, told apart by the column count of the first line:

- ``text<TAB>label``: topic/intent classification. A seeded split per label (half of each label's lines,
  rounded up, are held out) gives probe-train and evaluation items: linear-probe and kNN accuracy.
- ``s1<TAB>s2<TAB>score``: sentence similarity. Spearman correlation of the embeddings' cosine with the
  score, over every pair.

Every line must have the first line's column count; blank lines are skipped; no header line. A file that
cannot be used raises :class:`EvalFileError` with one line naming the file, the line and the fix.
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["EvalFile", "EvalFileError", "load_eval_file"]

log = logging.getLogger("bench.data.evalfile")

SHAPES = "text<TAB>label or s1<TAB>s2<TAB>score"
MIN_PAIRS = 3  # Spearman of fewer pairs says nothing


class EvalFileError(ValueError):
    """An evaluation file that cannot be used; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class EvalFile:
    """A parsed evaluation file: ``kind`` is ``labels`` or ``pairs``.

    labels: ``train_texts``/``train_labels`` fit the probe and the kNN index, ``eval_texts``/``eval_labels``
    are scored (label indices into ``classes``). pairs: ``s1``, ``s2`` and ``scores``, all of them scored.
    """

    path: str
    kind: str
    sha256: str
    seed: int
    classes: tuple[str, ...] = ()
    train_texts: tuple[str, ...] = ()
    train_labels: tuple[int, ...] = ()
    eval_texts: tuple[str, ...] = ()
    eval_labels: tuple[int, ...] = ()
    s1: tuple[str, ...] = ()
    s2: tuple[str, ...] = ()
    scores: tuple[float, ...] = ()

    def describe(self) -> str:
        """A one-line account of the file and its split (recorded as ``quality_split``)."""
        name = Path(self.path).name
        if self.kind == "labels":
            return (f"file:{name} labels={len(self.classes)} probe_train={len(self.train_texts)} "
                    f"eval={len(self.eval_texts)} seed={self.seed} sha256={self.sha256}")
        return f"file:{name} pairs={len(self.scores)} sha256={self.sha256}"


def _fail(path: Path, where: str, problem: str, fix: str) -> EvalFileError:
    return EvalFileError(f"eval file {path}{where}: {problem}; {fix}")


def _rows(path: Path) -> tuple[list[tuple[int, list[str]]], str]:
    if not path.is_file():
        raise _fail(path, "", "does not exist" if not path.exists() else "is not a file",
                    f"pass a TSV file ({SHAPES})")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _fail(path, f" line {line}", "is not UTF-8 text", "save the file as UTF-8") from None
    rows = [(i, line.split("\t")) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not rows:
        raise _fail(path, "", "is empty", f"write one item per line: {SHAPES}")
    return rows, hashlib.sha256(raw).hexdigest()[:12]


@lru_cache(maxsize=8)
def _load(path: str, seed: int, mtime_ns: int) -> EvalFile:
    p = Path(path)
    rows, sha = _rows(p)
    first, cols = rows[0][0], len(rows[0][1])
    if cols not in (2, 3):
        raise _fail(p, f" line {first}", f"has {cols} tab-separated columns", f"use {SHAPES}")
    for i, row in rows:
        if len(row) != cols:
            raise _fail(p, f" line {i}", f"has {len(row)} tab-separated columns, line {first} has {cols}",
                        f"give every line {cols} columns ({SHAPES})")
        if any(not c.strip() for c in row):
            raise _fail(p, f" line {i}", "has an empty column", "fill it in or delete the line")
    if cols == 2:
        return _labels(p, rows, sha, seed)
    return _pairs(p, rows, sha, seed)


def _labels(p: Path, rows: list[tuple[int, list[str]]], sha: str, seed: int) -> EvalFile:
    by: dict[str, list[tuple[int, str]]] = {}
    for i, (text, label) in rows:
        by.setdefault(label.strip(), []).append((i, text.strip()))
    if len(by) < 2:
        raise _fail(p, "", f"has one label ({next(iter(by))!r})", "a probe needs at least two labels: add lines of another label")
    for label, items in by.items():
        if len(items) < 2:
            raise _fail(p, f" line {items[0][0]}", f"label {label!r} has one example",
                        "a seeded split needs at least two per label: add another line with that label or delete this one")
    classes = tuple(sorted(by))
    rng = random.Random(seed)
    train: list[tuple[str, int]] = []
    held: list[tuple[str, int]] = []
    for c, label in enumerate(classes):
        items = rng.sample(by[label], len(by[label]))
        n_eval = (len(items) + 1) // 2
        held += [(t, c) for _, t in items[:n_eval]]
        train += [(t, c) for _, t in items[n_eval:]]
    return EvalFile(str(p), "labels", sha, seed, classes=classes,
                    train_texts=tuple(t for t, _ in train), train_labels=tuple(c for _, c in train),
                    eval_texts=tuple(t for t, _ in held), eval_labels=tuple(c for _, c in held))


def _pairs(p: Path, rows: list[tuple[int, list[str]]], sha: str, seed: int) -> EvalFile:
    scores = []
    for i, (_, _, score) in rows:
        try:
            value = float(score)
        except ValueError:
            value = float("nan")
        if value != value or value in (float("inf"), float("-inf")):
            raise _fail(p, f" line {i}", f"score {score.strip()!r} is not a number",
                        "the third column must be a number such as 3.5 (no header line)")
        scores.append(value)
    if len(rows) < MIN_PAIRS:
        raise _fail(p, "", f"has {len(rows)} pairs", f"Spearman needs at least {MIN_PAIRS}: add pairs")
    if len(set(scores)) < 2:
        raise _fail(p, "", "gives every pair the same score", "Spearman needs scores that differ: give the real scores")
    return EvalFile(str(p), "pairs", sha, seed, s1=tuple(r[1][0].strip() for r in rows),
                    s2=tuple(r[1][1].strip() for r in rows), scores=tuple(scores))


def load_eval_file(path: str | Path, seed: int = 0) -> EvalFile:
    """Parse and split an evaluation file (cached while the file is unchanged); raise EvalFileError."""
    p = Path(path).expanduser()
    try:
        mtime = p.stat().st_mtime_ns
    except OSError:
        mtime = -1
    return _load(str(p), seed, mtime)
