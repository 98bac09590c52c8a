"""The iso-quality frontier: per method, the highest sparsity whose held-out quality stays above a floor.

``prunebench frontier --floor "r@1>=-0.02,cosine>=0.95"`` parses the floor (:func:`parse_floor`): a task
metric's floor is on its paired change vs dense (variant - dense on the same held-out items: ``r@1``,
``mrr``, ``probe``, ``knn``), a fidelity metric's is absolute (``cosine``, ``agreement``). For each
method (with its importance and recovery) :func:`search` bisects the sparsity on quality alone — no
timing — assuming quality falls as sparsity rises; the variants found are then timed per runtime by
the ordinary run machinery (``prunebench frontier``: bench/commands.py), and the report says what pruning
buys at equal quality (``bench.report.structured.frontier_section``, ``bench.report.section_plots.frontier_plot``).
Only sparsities actually measured are reported; a method that fails the floor at its lowest tried sparsity
has no frontier point.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

__all__ = ["FLOOR_METRICS", "Floor", "FrontierError", "FrontierPoint", "load", "meets", "parse_floor", "save", "search"]

log = logging.getLogger("bench.frontier")

# floor name -> (QualityResult figure, kind); task floors are on the paired change vs dense
FLOOR_METRICS = {"r@1": ("r1", "task"), "mrr": ("mrr10", "task"), "probe": ("probe_acc", "task"), "knn": ("knn_acc", "task"),
                 "cosine": ("cosine", "fidelity"), "agreement": ("knn_agreement", "fidelity")}
_TERM = re.compile(r"^\s*([a-z@0-9_]+)\s*>=\s*([-+]?\d*\.?\d+(?:e[-+]?\d+)?)\s*$")


class FrontierError(ValueError):
    """A floor or search that cannot be run as asked; the message names the fix."""


@dataclass(frozen=True)
class Floor:
    """One term of a floor: ``metric >= value`` (task metrics: change vs dense; fidelity: absolute)."""

    metric: str
    value: float

    @property
    def figure(self) -> str:
        return FLOOR_METRICS[self.metric][0]

    @property
    def kind(self) -> str:
        return FLOOR_METRICS[self.metric][1]

    def of(self, figures: dict) -> float | None:
        """The figure this term compares: change vs dense (task) or the value (fidelity); None if absent."""
        est = figures.get(self.figure)
        if est is None:
            return None
        if self.kind == "task":
            return None if est.drop is None else -est.drop
        return est.value

    def __str__(self) -> str:
        return f"{self.metric}>={self.value:g}"


def parse_floor(text: str) -> tuple[Floor, ...]:
    """``"r@1>=-0.02,cosine>=0.95"`` -> Floor terms; FrontierError naming the bad term otherwise."""
    terms = [t for t in (text or "").split(",") if t.strip()]
    if not terms:
        raise FrontierError('--floor is empty; pass terms such as "r@1>=-0.02,cosine>=0.95"')
    out = []
    for t in terms:
        m = _TERM.match(t.lower())
        if not m:
            raise FrontierError(f"floor term {t.strip()!r} is not METRIC>=VALUE; e.g. r@1>=-0.02 or cosine>=0.95")
        if m.group(1) not in FLOOR_METRICS:
            raise FrontierError(f"unknown floor metric {m.group(1)!r}; choose from {', '.join(FLOOR_METRICS)}")
        out.append(Floor(m.group(1), float(m.group(2))))
    return tuple(out)


def meets(floors: tuple[Floor, ...], figures: dict) -> tuple[bool, dict[str, float | None]]:
    """Whether every term holds, and the compared figure of each (a missing figure fails its term)."""
    got = {str(f): f.of(figures) for f in floors}
    ok = all(v is not None and v >= f.value for f, v in zip(floors, got.values()))
    return ok, got


@dataclass(frozen=True)
class FrontierPoint:
    """A method's frontier: the highest passing sparsity found (None: none passed) and every probe."""

    method: str
    label: str | None  # the passing recipe's label
    sparsity: float | None
    trail: tuple[dict, ...]  # [{sparsity, passes, figures}], in the order tried
    recipe: dict | None = None


def search(make_recipe: Callable[[float], object], score: Callable[[object], dict], floors: tuple[Floor, ...],
           hi: float = 0.9, steps: int = 5, method: str = "") -> FrontierPoint:
    """Bisect sparsity in (0, hi] on quality alone: ``score(recipe)`` gives the QualityResult figures.

    ``hi`` is tried first (if it passes it is the answer); then ``steps`` halvings of the interval
    between the highest passing and lowest failing sparsity (starting from 0, dense, which passes)."""
    if not 0 < hi < 1 or steps < 1:
        raise FrontierError(f"frontier search needs 0 < max sparsity < 1 and steps >= 1 (got {hi}, {steps})")
    trail: list[dict] = []
    best = None

    def probe(s: float) -> bool:
        nonlocal best
        recipe = make_recipe(round(s, 4))
        ok, got = meets(floors, score(recipe))
        trail.append({"sparsity": recipe.sparsity, "passes": ok, "figures": got, "label": recipe.label})
        log.info("frontier %s @%.3f: %s %s", method, recipe.sparsity, "passes" if ok else "fails", got)
        if ok and (best is None or recipe.sparsity > best.sparsity):
            best = recipe
        return ok

    lo, top = 0.0, hi
    if not probe(hi):
        for _ in range(steps):
            mid = (lo + top) / 2
            if probe(mid):
                lo = mid
            else:
                top = mid
    return FrontierPoint(method, best.label if best else None, best.sparsity if best else None, tuple(trail),
                         best.to_dict() if best else None)


def save(points: list[FrontierPoint], floors: tuple[Floor, ...], path: Path) -> None:
    """Write the floor and every method's point (with its trail of scored variants) as ``frontier.json``."""
    path.write_text(json.dumps({"floor": [str(f) for f in floors], "points": [asdict(p) for p in points]}, indent=1))


def load(run_dir: Path) -> dict | None:
    """A run's ``frontier.json`` (what :func:`save` wrote), or None when the run is not a frontier run."""
    path = Path(run_dir) / "frontier.json"
    return json.loads(path.read_text()) if path.is_file() else None
