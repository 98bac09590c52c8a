"""``prunebench advise``: which variant of a model to ship under a quality floor, found within a time budget.

Three stages, so that nothing below the floor is ever timed and the figures reported were not the ones chosen on:

1. **Quality** (:func:`select`): every candidate (recipe x runtime x dtype, :func:`grid`) is scored on the
   ``selection`` split against the floor (``bench.frontier.parse_floor`` / ``meets``). A weight set is pruned
   once (``bench.calibrate`` snapshots data-aware recipes) and its fp32 embeddings are shared by every runtime
   that serves it unchanged; a runtime or dtype that changes the numbers (int8, bf16) is scored on what it serves.
2. **Timing** (:func:`time_survivors`): the survivors, most promising first (:func:`expected_speedup`), run one
   at a time as standard cases (``bench.run.execute``) in ``OUT/timed`` against dense torch fp32, until the
   budget would be exceeded by the next one (its cost estimated from those timed so far).
3. **Confirmation** (:func:`confirm`): each timed record carries its quality on the ``report`` split (what the
   runtime serves); a candidate counts only if that meets the floor too. The fastest confirmed one is the
   recommendation (``bench.advise_report``).

Everything is kept in ``OUT`` (``advise.json``, ``selection.json``, ``timed/``), so re-running with the same
``--out`` skips what is recorded. Each survivor is timed in every scenario asked for (``--scenario``: the fixed
batch x seq_len shape, single queries, an offline corpus; ``bench.measure.scenarios``), and the report recommends
per scenario.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pruning import PruneRecipe

from .frontier import Floor, meets
from .rundir import RunDir

__all__ = ["Candidate", "Search", "confirm", "expected_speedup", "grid", "select", "time_survivors", "ZERO_RUNTIMES"]

log = logging.getLogger("bench.advise")

BASELINE = ("torch-dense", "float32")  # what every candidate is timed and scored against: the model as served today
STRUCTURED_RUNTIMES = ("torch-dense", "onnxruntime", "onnxruntime-int8", "torch-int8", "openvino", "openvino-auto",
                       "openvino-int8")
ZERO_RUNTIMES = ("torch-csr", "openvino-sparse-int8")  # runtimes that skip zeros: the only ones unstructured can pay off in
# (method, importance/recovery keys) of the default grid: weight-norm and data-aware + recovered, side by side
RECIPES: dict[str, tuple[dict, ...]] = {
    "heads+ffn": ({}, {"importance": "fisher", "recover": "lstsq"}),
    "layers": ({}, {"recover": "lstsq"}),
    "unstructured": ({},),
}
SPARSITIES: dict[str, tuple[float, ...]] = {"heads+ffn": (0.25, 0.5), "layers": (0.34, 0.5), "unstructured": (0.7,)}
METHOD_OF = {"unstructured": "global-l1"}
SPEED = {"onnxruntime-int8": 0.5, "torch-int8": 0.6, "bfloat16": 0.5, "onnxruntime": 0.9, "openvino": 0.85,
         "openvino-auto": 0.5, "openvino-int8": 0.45}  # priors that only order the timing


@dataclass(frozen=True)
class Candidate:
    """One thing that could be shipped: a recipe served by a runtime in a dtype."""

    recipe: PruneRecipe
    runtime: str
    dtype: str = "float32"

    @property
    def key(self) -> str:
        return f"{self.recipe.label}/{self.runtime}/{self.dtype}"

    @property
    def served(self) -> bool:
        """Whether the runtime or dtype changes the numbers, so quality must be scored on what it serves."""
        from .runtimes import get_runtime

        rt = get_runtime(self.runtime)
        return self.dtype != "float32" or rt.quality_floor is not None or rt.chooses_precision


def grid(methods: list[str] | None = None, runtimes: list[str] | None = None,
         dtypes: tuple[str, ...] = ("float32", "bfloat16")) -> list[Candidate]:
    """The candidate grid: dense and each method's importance x recovery x sparsity recipes, in every runtime
    that can serve them (unstructured only where a runtime uses zeros), fp32 and bf16 (torch-dense only)."""
    chosen = methods or list(RECIPES)
    bad = [m for m in chosen if m not in RECIPES]
    if bad:
        raise ValueError(f"advise searches {', '.join(RECIPES)}, not {bad[0]!r}; pass --methods from those")
    out = [Candidate(PruneRecipe("dense"), rt, dt) for rt in STRUCTURED_RUNTIMES for dt in dtypes
           if (rt, dt) != BASELINE and (dt == "float32" or rt == "torch-dense")]
    for m in chosen:
        rts = ZERO_RUNTIMES if m == "unstructured" else STRUCTURED_RUNTIMES
        for keys in RECIPES[m]:
            for s in SPARSITIES[m]:
                recipe = PruneRecipe(METHOD_OF.get(m, m), s, **keys)
                out += [Candidate(recipe, rt, dt) for rt in rts for dt in dtypes if dt == "float32" or rt == "torch-dense"]
    return [c for c in out if runtimes is None or c.runtime in runtimes]


def expected_speedup(c: Candidate) -> float:
    """A rough prior of the candidate's speed-up over dense torch fp32 (fraction of weights kept times what the
    runtime or dtype is expected to give), used only to order the timing: the fastest-looking first."""
    kept = 1.0 - (c.recipe.sparsity if c.recipe.spec.structured else 0.0)
    return 1.0 / (kept * SPEED.get(c.runtime, 1.0) * SPEED.get(c.dtype, 1.0))


@dataclass
class Search:
    """What advise has done so far in ``out``, kept on disk so a re-run resumes: the config, each candidate's
    selection-split verdict, and the budget clock of this invocation."""

    out: Path
    budget_s: float
    clock: Callable[[], float] = time.monotonic
    say: Callable[[str], None] = log.info  # the progress lines (the command prints them)
    selection: dict[str, dict] = field(default_factory=dict)
    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = self.clock()
        path = self.out / "selection.json"
        if path.is_file():
            self.selection = json.loads(path.read_text())

    def left(self) -> float:
        return self.budget_s - (self.clock() - self.started)

    def save(self) -> None:
        (self.out / "selection.json").write_text(json.dumps(self.selection, indent=1))

    def progress(self, done: int, total: int, what: str) -> None:
        self.say(f"advise: {done}/{total} candidates {what}, {max(self.left(), 0):.0f} s left")


def select(search: Search, cands: list[Candidate], floors: tuple[Floor, ...], score: Callable[[Candidate], dict],
           share: float = 0.5) -> list[Candidate]:
    """Stage 1: score each candidate not yet recorded on the selection split, while its share of the budget
    lasts; return those that meet the floor (in grid order). A candidate left unscored is not timed. fp32 weight
    sets go first; an int8/bf16 candidate whose fp32 weight set fails the floor is counted as failing unscored
    (quantizing or casting does not give back what pruning took), which saves the costliest scorings."""
    stop_at = search.budget_s * (1 - share)
    order = sorted(cands, key=lambda c: (c.served, -expected_speedup(c)))  # fp32 weight sets first, promising first
    failed: dict[str, dict] = {}  # recipe label -> its fp32 weight set's figures, where they fail the floor
    for i, c in enumerate(order):
        if c.key in search.selection:
            s = search.selection[c.key]
            if not c.served and not s["passes"]:
                failed[c.recipe.label] = s["figures"]
            continue
        if search.left() < stop_at:
            log.warning("advise: quality budget spent after %d of %d candidates", i, len(cands))
            break
        if c.served and c.recipe.label in failed:  # int8/bf16 do not give back what pruning took
            search.selection[c.key] = {"passes": False, "figures": failed[c.recipe.label],
                                       "scored": "not scored: its fp32 weight set fails the floor"}
            search.save()
            continue
        try:
            ok, got = meets(floors, score(c))
        except Exception as exc:  # noqa: BLE001 - a candidate that cannot be scored is recorded as failed; the search goes on
            log.warning("advise: %s could not be scored: %s", c.key, exc)
            search.selection[c.key] = {"passes": False, "figures": {}, "scored": "failed",
                                       "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}
            search.save()
            continue
        if not ok and not c.served:
            failed[c.recipe.label] = got
        search.selection[c.key] = {"passes": ok, "figures": got, "scored": "served" if c.served else "fp32 variant"}
        search.save()
        search.progress(i + 1, len(cands), "scored on the selection split")
    return [c for c in cands if search.selection.get(c.key, {}).get("passes")]


def time_survivors(search: Search, survivors: list[Candidate], launch: Callable[[list[Candidate]], list[dict]],
                   first_estimate_s: float, scenarios: tuple[str, ...] = ("fixed",)) -> list[dict]:
    """Stage 2: time the survivors, most promising first, one at a time (``launch`` runs the cases given, one per
    scenario, and returns every record so far); stop before the next one when its estimated cost (the mean of
    those timed by this invocation, else ``first_estimate_s``) exceeds the budget left. Returns the records."""
    order = sorted(survivors, key=expected_speedup, reverse=True)
    done = _done_keys(search.out, scenarios)
    costs: list[float] = []
    records: list[dict] = launch([]) if done else []
    launched: list[Candidate] = [c for c in order if c.key in done]
    for i, c in enumerate(order):
        if c.key in done:
            continue
        estimate = sum(costs) / len(costs) if costs else first_estimate_s
        if search.left() < estimate:
            search.say(f"advise: budget reached: {len(order) - i} survivors not timed (next {c.key}, ~{estimate:.0f} s)")
            break
        t0 = search.clock()
        launched.append(c)
        records = launch(launched)
        costs.append(search.clock() - t0)
        search.progress(len(launched), len(order), "timed")
    return records


def _done_keys(out: Path, scenarios: tuple[str, ...] = ("fixed",)) -> set[str]:
    """Keys of candidates with a finished record (ok, or skipped: the runtime cannot serve it) in ``out/timed`` for
    every scenario asked (a resumed search does not time them again)."""
    from .records import read_records

    path = RunDir(out / "timed").records
    if not path.is_file():
        return set()
    have: dict[str, set[str]] = {}
    for r in _keyed(read_records(path)):
        if r["status"] in ("ok", "skipped"):
            have.setdefault(r["advise_key"], set()).add(r["advise_scenario"])
    return {k for k, got in have.items() if set(scenarios) <= got}


def _keyed(records: list[dict]) -> list[dict]:
    """Records with their candidate key (``recipe label/runtime/dtype``) added as ``advise_key``, and their scenario
    (records from before scenarios: the fixed batch) as ``advise_scenario``."""
    return [{**r, "advise_key": f"{r['recipe']}/{r['runtime']}/{r.get('dtype') or 'float32'}",
             "advise_scenario": r.get("scenario") or "fixed"} for r in records]


def figures_of(record: dict) -> dict:
    """A record's quality figures as Estimates (what :func:`bench.frontier.meets` compares)."""
    from .measure.quality import METRICS
    from .measure.stats import Estimate

    out = {}
    for name, (value, drop) in METRICS.items():
        if record.get(value) is None:
            continue
        d = drop and record.get(drop) is not None
        out[name] = Estimate(record[value], record[f"{value}_lo"], record[f"{value}_hi"],
                             record[drop] if d else None, record[f"{drop}_lo"] if d else None,
                             record[f"{drop}_hi"] if d else None)
    return out


def confirm(records: list[dict], floors: tuple[Floor, ...]) -> list[dict]:
    """Stage 3: the ok timed records whose quality on the report split (what the runtime serves) meets the floor
    too, each with ``advise_key``, ``advise_scenario``, ``advise_passes`` and ``advise_figures``; fastest first."""
    out = []
    for r in _keyed(records):
        if r["status"] != "ok" or r.get("latency_ratio") is None:
            continue
        ok, got = meets(floors, figures_of(r))
        out.append({**r, "advise_passes": ok, "advise_figures": got})
    return sorted(out, key=lambda r: r["latency_ratio"])
