"""The iso-quality frontier: per method, the highest sparsity whose held-out quality stays above a floor.

``prunebench frontier --floor "r@1>=-0.02,cosine>=0.95"`` parses the floor (:func:`parse_floor`): a task
metric's floor is on its paired change vs dense (variant - dense on the same held-out items: ``r@1``,
``mrr``, ``probe``, ``knn``), a fidelity metric's is absolute (``cosine``, ``agreement``). For each
method (with its importance and recovery) :func:`search` bisects the sparsity on quality alone — no
timing — assuming quality falls as sparsity rises; the variants found are then timed per runtime by
the ordinary run machinery, and :func:`frontier_section` / :func:`write_frontier_plot` say what pruning
buys at equal quality. Only sparsities actually measured are reported; a method that fails the floor
at its lowest tried sparsity has no frontier point.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

__all__ = ["FLOOR_METRICS", "Floor", "FrontierError", "FrontierPoint", "frontier_section", "meets", "parse_floor",
           "recovery_section", "search", "write_distill_plot", "write_frontier_plot"]

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
    path.write_text(json.dumps({"floor": [str(f) for f in floors], "points": [asdict(p) for p in points]}, indent=1))


# -- report ------------------------------------------------------------------------------------
def _fmt(x, spec: str = ".2f") -> str:
    return "–" if x is None or x != x else format(x, spec)


def frontier_section(df, run_dir: Path | None) -> list[str]:
    """'What pruning buys at equal quality': per method, the frontier sparsity and its speed per runtime."""
    if run_dir is None or not (Path(run_dir) / "frontier.json").is_file():
        return []
    data = json.loads((Path(run_dir) / "frontier.json").read_text())
    lines = ["## What pruning buys at equal quality", "",
             f"Floor: `{', '.join(data['floor'])}` (task metrics: change vs dense on the same held-out items; "
             "fidelity: absolute). Per method, the highest sparsity found by bisection on quality alone, then timed "
             "(latency ratio to dense in the same runtime, 95% CI; speedup = 1 / ratio).", "",
             "| method | frontier sparsity | quality at it | runtime | latency ratio [95% CI] | speedup |",
             "| --- | --- | --- | --- | --- | --- |"]
    ok = df[df["status"] == "ok"] if len(df) else df
    for p in data["points"]:
        if p["sparsity"] is None:
            tried = min((t["sparsity"] for t in p["trail"]), default=None)
            lines.append(f"| {p['method']} | none (fails at {_fmt(tried)}) | – | – | – | – |")
            continue
        passing = [t for t in p["trail"] if t["passes"] and t["sparsity"] == p["sparsity"]]
        q = ", ".join(f"{k}: {_fmt(v, '.3f')}" for k, v in (passing[0]["figures"] if passing else {}).items())
        rows = ok[ok["recipe"] == p["label"]] if len(ok) else ok
        if not len(rows):
            lines.append(f"| {p['method']} | {p['sparsity']:.2f} | {q} | – | not timed | – |")
        for r in rows.itertuples():
            ratio = getattr(r, "latency_ratio", None)
            ci = f"{_fmt(ratio)} [{_fmt(getattr(r, 'latency_ratio_lo', None))}, {_fmt(getattr(r, 'latency_ratio_hi', None))}]"
            lines.append(f"| {p['method']} | {p['sparsity']:.2f} | {q} | {r.runtime} | {ci} | {_fmt(1 / ratio if ratio else None)}x |")
    lines += ["", "![speedup vs quality at the floor](plots/frontier.png)", ""] if (Path(run_dir) / "plots" / "frontier.png").is_file() else [""]
    return lines


def write_frontier_plot(df, run_dir: Path) -> Path | None:
    """Speedup vs the floor's first figure per probed variant that was timed, the floor drawn, dense and
    the frontier points marked."""
    path = Path(run_dir) / "frontier.json"
    if not path.is_file() or not len(df):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(path.read_text())
    first = parse_floor(data["floor"][0])[0]
    fig, ax = plt.subplots(figsize=(6, 4))
    dense_q = 0.0 if first.kind == "task" else 1.0
    ax.scatter([dense_q], [1.0], marker="*", s=150, color="black", label="dense")
    ax.axvline(first.value, color="red", linestyle="--", label=f"floor {first}")
    ok = df[df["status"] == "ok"]
    for p in data["points"]:
        if p["sparsity"] is None:
            continue
        rows = ok[ok["recipe"] == p["label"]]
        passing = [t for t in p["trail"] if t["passes"] and t["sparsity"] == p["sparsity"]]
        qv = passing[0]["figures"].get(str(first)) if passing else None
        for r in rows.itertuples():
            if r.latency_ratio and qv is not None:
                ax.scatter([qv], [1 / r.latency_ratio], s=60, label=f"{p['label']} ({r.runtime})")
    ax.set_xlabel(f"{first.metric}" + (" change vs dense" if first.kind == "task" else ""))
    ax.set_ylabel("speedup vs dense (1 / latency ratio)")
    ax.set_title("what pruning buys at equal quality")
    ax.legend(fontsize=7)
    out = Path(run_dir) / "plots" / "frontier.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def recovery_section(df, run_dir: Path | None = None) -> list[str]:
    """Before / after recovery side by side: per structured recipe, importance, recovery, latency ratio,
    held-out cosine, probe accuracy and its paired change, title -> body recall@1, recovery seconds."""
    if not len(df) or "recovery_method" not in df or "importance" not in df:
        return []
    g = df[(df["status"] == "ok") & df["pattern"].isin(["heads", "ffn", "heads+ffn", "layers"])]
    if not len(g) or g["importance"].nunique(dropna=True) + g["recovery_method"].nunique(dropna=True) <= 2:
        return []
    lines = ["## Data-aware importance and recovery, side by side", "",
             "Same structures removed, chosen by weight norm (magnitude) or on calibration text (activation, "
             "Fisher), then repaired (lstsq: each layer's output projections re-fitted so the pre-LayerNorm sums "
             "match dense; distill: a timed distillation to the dense embeddings) or not. Recovery changes no "
             "shape, so the latency ratio should not move.", "",
             "| recipe | runtime | latency ratio [95% CI] | cosine | probe acc (Δ) | recall@1 (Δ) | recovery s | calibration |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in g.sort_values(["sparsity_target", "recipe", "runtime"], kind="stable").to_dict("records"):
        def delta(v, d):
            return f"{_fmt(r.get(v), '.3f')} ({_fmt(-r[d] if r.get(d) is not None else None, '+.3f')})"
        lines.append(f"| {r['recipe']} | {r['runtime']} | {_fmt(r.get('latency_ratio'))} [{_fmt(r.get('latency_ratio_lo'))}, "
                     f"{_fmt(r.get('latency_ratio_hi'))}] | {_fmt(r.get('quality_cosine'), '.3f')} | "
                     f"{delta('quality_probe_acc', 'quality_probe_drop')} | {delta('quality_r1', 'quality_r1_drop')} | "
                     f"{_fmt(r.get('recovery_seconds'), '.0f')} | {_fmt(r.get('calibration_size'), '.0f')} |")
    if run_dir is not None and (Path(run_dir) / "plots" / DISTILL_PLOT).is_file():
        lines += ["", f"![distillation loss](plots/{DISTILL_PLOT})"]
    return lines + [""]


DISTILL_PLOT = "distill_loss.png"


def write_distill_plot(df, run_dir: Path) -> Path | None:
    """The distillation loss curve of every distilled variant (one line per recipe, over its time budget; a
    record keeps up to 51 evenly spaced points of the curve); None, and no file, when nothing was distilled."""
    out = Path(run_dir) / "plots" / DISTILL_PLOT
    if not len(df) or "distill_loss" not in df:
        out.unlink(missing_ok=True)
        return None
    curves = {}
    for r in df.to_dict("records"):
        loss = r.get("distill_loss")
        if isinstance(loss, list) and loss and r.get("recipe") not in curves:
            curves[r["recipe"]] = (loss, r.get("distill_seconds"))
    if not curves:
        out.unlink(missing_ok=True)
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.subplots()
    for label, (loss, secs) in curves.items():
        x = [100 * i / max(len(loss) - 1, 1) for i in range(len(loss))]
        ax.plot(x, loss, label=f"{label} ({_fmt(secs, '.0f')} s)")
    ax.set(xlabel="progress through the distillation budget (%)", ylabel="loss (1 − cosine + MSE to dense embeddings)",
           title="distillation loss", yscale="log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out
