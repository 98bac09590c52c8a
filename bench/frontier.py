"""The iso-quality frontier: per method, the highest sparsity whose quality on the selection split stays above a floor.

``prunebench frontier --floor "r@1>=-0.02,cosine>=0.95"`` parses the floor (:func:`parse_floor`): a task
metric's floor is on its paired change vs dense (variant - dense on the same held-out items: ``r@1``,
``mrr``, ``probe``, ``knn``), a fidelity metric's is absolute (``cosine``, ``agreement``).

A method removes whole units (k of L layers, whole heads, FFN neurons), so it reaches only some sparsities:
:func:`levels` lists them (each with the smallest target that reaches it; a target that removes nothing,
such as layers@0.05 on 6 layers, is no level). :func:`search` looks for the highest level that passes, on
quality alone (no timing): with few levels (at most ``steps + 1``: layers, heads of a small model) it tries
them from the top down, which is exact whatever the shape of the quality curve; with more it bisects the
levels, assuming quality falls as sparsity rises. The floor is judged on the point figures of the
``selection`` split (never the ``report`` split the timed run then reports on, so the choice does not
flatter the reported figures); ``frontier.json`` names the split. Sparsities are the achieved ones. The
variants found are timed per runtime by the ordinary run machinery (``prunebench frontier``:
bench/commands.py) and the report says what pruning buys at equal quality
(``bench.report.structured.frontier_section``, ``bench.report.section_plots.frontier_plot``). A method that
fails the floor at every level tried has no frontier point.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

__all__ = ["FLOOR_METRICS", "Floor", "FrontierError", "FrontierPoint", "levels", "load", "meets", "parse_floor", "save", "search"]

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
    """A method's frontier: the highest passing achieved sparsity found (None: none passed), the target that
    reaches it, how the levels were searched (``scan`` or ``bisect``) and every level scored."""

    method: str
    label: str | None  # the passing recipe's label
    sparsity: float | None  # achieved
    trail: tuple[dict, ...]  # [{sparsity (achieved), target, passes, figures, label}], in the order tried
    recipe: dict | None = None
    target: float | None = None
    how: str = "scan"


def _removed(counts: Sequence[int], s: float, allocation: str | None) -> float:
    """Fraction of ``counts``' units a target ``s`` removes, as ``pruning.structured`` / ``pruning.depth`` allocate
    (uniform: ``round(s * n)`` per layer; global: ``round(s * total)``; every layer keeps one)."""
    total = sum(counts)
    if allocation == "global":
        return min(round(s * total), total - len(counts)) / total
    return sum(min(round(s * n), n - 1) for n in counts) / total


def levels(method: str, allocation: str | None, heads: Sequence[int], neurons: Sequence[int],
           hi: float = 0.9) -> list[tuple[float, float]]:
    """(target, achieved sparsity) of every level ``method`` reaches on a model with these per-layer head and
    FFN-neuron counts, up to ``hi``, by achieved sparsity; the target is the smallest that reaches the level.

    ``layers`` reaches k/L; ``heads`` whole heads (per layer with ``uniform``, across layers with ``global``);
    ``heads+ffn`` is searched over its heads' levels (the coarser unit), its achieved sparsity the mean of the
    two fractions removed (as ``pruning.shapes.removed_fraction``)."""
    units = {"heads": list(heads), "ffn": list(neurons), "layers": [len(heads)]}
    kinds = method.split("+")
    if any(k not in units for k in kinds):
        raise FrontierError(f"frontier searches heads, ffn, heads+ffn or layers, not {method!r}")
    alloc = {k: None if k == "layers" else allocation for k in kinds}
    coarse = min(kinds, key=lambda k: sum(units[k]))
    counts = units[coarse]
    if alloc[coarse] == "global":
        cands = {k / sum(counts) for k in range(1, sum(counts) - len(counts) + 1)}
    else:
        cands = {j / n for n in set(counts) for j in range(1, n)}
    out: dict[float, float] = {}
    for t in sorted(cands):
        achieved = round(sum(_removed(units[k], t, alloc[k]) for k in kinds) / len(kinds), 6)
        if 0 < achieved and t <= hi and achieved not in out:
            out[achieved] = t
    return sorted(((t, a) for a, t in out.items()), key=lambda x: x[1])


def search(make_recipe: Callable[[float], object], score: Callable[[object], dict], floors: tuple[Floor, ...],
           reach: Sequence[tuple[float, float]], steps: int = 5, method: str = "") -> FrontierPoint:
    """The highest level of ``reach`` (:func:`levels`) whose figures (``score(recipe)``) meet ``floors``.

    At most ``steps + 1`` levels: each is tried from the highest down until one passes (exact on any curve).
    More: the highest is tried, then ``steps`` bisections of the levels between the highest passing (dense,
    below the lowest level, passes) and the lowest failing one."""
    if not reach or steps < 1:
        raise FrontierError(f"frontier search needs a reachable sparsity and steps >= 1 (got {len(reach)} levels, "
                            f"{steps} steps); raise --max-sparsity or --steps")
    trail: list[dict] = []
    best: tuple[object, float, float] | None = None

    def probe(i: int) -> bool:
        nonlocal best
        target, achieved = reach[i]
        recipe = make_recipe(round(target, 6))
        ok, got = meets(floors, score(recipe))
        trail.append({"sparsity": achieved, "target": recipe.sparsity, "passes": ok, "figures": got, "label": recipe.label})
        log.info("frontier %s @%.3f (target %.4f): %s %s", method, achieved, target, "passes" if ok else "fails", got)
        if ok and (best is None or achieved > best[1]):
            best = (recipe, achieved, target)
        return ok

    how = "scan" if len(reach) <= steps + 1 else "bisect"
    if how == "scan":
        for i in reversed(range(len(reach))):
            if probe(i):
                break
    elif not probe(len(reach) - 1):
        lo, top = -1, len(reach) - 1
        for _ in range(steps):
            if top - lo <= 1:
                break
            mid = (lo + top) // 2
            lo, top = (mid, top) if probe(mid) else (lo, mid)
    recipe = best[0] if best else None
    return FrontierPoint(method, recipe.label if recipe else None, best[1] if best else None, tuple(trail),
                         recipe.to_dict() if recipe else None, best[2] if best else None, how)


def save(points: list[FrontierPoint], floors: tuple[Floor, ...], path: Path, judged_on: str | None = None) -> None:
    """Write the floor, the split it was judged on and every method's point (with its trail of scored variants)
    as ``frontier.json``."""
    path.write_text(json.dumps({"floor": [str(f) for f in floors], "judged_on": judged_on,
                                "points": [asdict(p) for p in points]}, indent=1))


def load(run_dir: Path) -> dict | None:
    """A run's ``frontier.json`` (what :func:`save` wrote), or None when the run is not a frontier run."""
    path = Path(run_dir) / "frontier.json"
    return json.loads(path.read_text()) if path.is_file() else None
