"""The plan: the grid ``model x recipe x runtime x dtype x device x batch x seq_len x scenario`` as a list of
Cases (:mod:`bench.case`: one measurement and its baseline). The query scenario serves one request at a time, so
its cases take batch 1 whatever ``batch`` lists (``bench.measure.scenarios``).

Built from CLI flags or a TOML file (see ``bench/plans/*.toml``); every field is checked on
construction so a bad plan fails before anything is measured.
"""

from __future__ import annotations

import itertools
import json
import tomllib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pruning import PruneRecipe, RecipeError, recipe_keys

from .case import DTYPES, Case, PlanError, parse_baseline, positive_int
from .launch.shard import in_shard, parse_shard
from .models import ModelError, resolve_model
from .runtimes import ALIASES, get_runtime

__all__ = ["DTYPES", "Case", "Plan", "PlanError", "builtin_plan", "in_shard", "load_plan", "parse_baseline", "parse_shard",
           "plan_from_dict"]

DEVICES = ("cpu", "cuda", "auto")


@dataclass(frozen=True)
class Plan:
    """Cases plus how to measure them."""

    cases: tuple[Case, ...]
    name: str = "custom"
    # relative half-width of the latency ratio's 95% CI to stop at, where a gate needs a precise figure (the CI
    # plan); None: stop when the verdict (faster / slower / within +-10%) is decided (bench.measure.paired)
    ci_target: float | None = None
    time_cap_s: float = 20.0  # per case, for the paired latency rounds
    warmup: int = 2
    min_rounds: int = 8
    memory: bool = True
    quality: bool = True
    cache: bool = True  # reuse sizes and quality embeddings from the on-disk cache (bench/measure/embed_cache.py)
    eval: str | None = None  # noqa: A003 - a user's evaluation TSV (bench/data/evalfile.py); None: BBC News
    # a smoke run's budget (the quick plan): None measures everything. quality_items caps the BBC News split at that
    # many probe-train and held-out articles (named in quality_split as capped=N; a user's eval file is scored
    # whole); memory_cases measures memory on the plan's first N cases only (the others say so in memory_skipped);
    # compress_cases gzips the artifacts of the first N cases only (the others: raw bytes, compress_skipped says why)
    quality_items: int | None = None
    memory_cases: int | None = None
    compress_cases: int | None = None
    source: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.cases:
            raise PlanError("the plan has no cases; give at least one model, recipe and runtime")
        for name in ("ci_target", "time_cap_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) and not (name == "ci_target" and v is None):
                raise PlanError(f"{name} must be a number, got {v!r}")
        if self.ci_target is not None and not 0 < self.ci_target < 1:
            raise PlanError(f"ci_target {self.ci_target!r} must be in (0, 1), e.g. 0.03")
        if not self.time_cap_s > 0:
            raise PlanError(f"time_cap_s {self.time_cap_s!r} must be positive")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise PlanError(f"warmup must be a non-negative integer, got {self.warmup!r}")
        positive_int("min_rounds", self.min_rounds)
        for name, whole in (("quality_items", "score the full split"), ("memory_cases", "measure every case"),
                            ("compress_cases", "compress every case's artifact")):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise PlanError(f"{name} must be a positive integer, got {v!r}; leave it out to {whole}")
        for name in ("memory", "quality", "cache"):
            if not isinstance(getattr(self, name), bool):
                raise PlanError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.eval is not None:
            _check_eval(self.eval)
        ids = [c.case_id for c in self.cases]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise PlanError(f"case {dup} appears twice in the plan; remove the duplicate recipe or runtime")

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("cases", "source")}
        d["cases"] = [c.to_dict() for c in self.cases]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        return cls(**{**d, "cases": tuple(Case.from_dict(c) for c in d["cases"])})

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load_json(cls, path: Path) -> "Plan":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            if isinstance(exc, (PlanError, RecipeError, ModelError)):
                raise
            raise PlanError(f"{path} is not a plan written by `prunebench run` ({type(exc).__name__}: {exc}); "
                            "pass the plan.json of a run directory") from None

    def memory_skipped(self, case: Case) -> str | None:
        """Why the plan measures no memory for ``case`` although it measures memory (``memory_cases``: only the
        plan's first N cases, in plan order, whatever shard or process runs them), or None."""
        if not self.memory or self.memory_cases is None:
            return None
        if any(case.case_id == c.case_id for c in self.cases[:self.memory_cases]):
            return None
        return (f"not measured: the plan measures memory on its first {self.memory_cases} of {len(self.cases)} cases "
                f"(memory_cases = {self.memory_cases}); remove memory_cases to measure every case")

    def compress_skipped(self, case: Case) -> str | None:
        """Why the plan records no gzip-compressed size for ``case`` (``compress_cases``: only the plan's first N
        cases, in plan order), or None."""
        if self.compress_cases is None or any(case.case_id == c.case_id for c in self.cases[:self.compress_cases]):
            return None
        return (f"not compressed: the plan gzips the artifacts of its first {self.compress_cases} of {len(self.cases)} "
                f"cases (compress_cases = {self.compress_cases}); remove compress_cases to compress every case")

    def cases_in_shard(self, shard: tuple[int, int] | None) -> tuple[Case, ...]:
        """The cases shard ``(i, n)`` runs (all cases when ``shard`` is None)."""
        return self.cases if shard is None else tuple(c for c in self.cases if in_shard(c.case_id, *shard))


def _check_eval(path: Any) -> None:
    """A plan's ``eval`` file must parse: a bad file is bad input before anything is measured."""
    from .data.evalfile import EvalFileError, load_eval_file

    if not isinstance(path, str) or not path.strip():
        raise PlanError(f"eval must be the path of a TSV file (text<TAB>label or s1<TAB>s2<TAB>score), got {path!r}")
    try:
        load_eval_file(path)
    except EvalFileError as exc:
        raise PlanError(str(exc)) from None


def _as_list(name: str, value: Any) -> list:
    if isinstance(value, list):
        if not value:
            raise PlanError(f"{name} is an empty list; give at least one value")
        return value
    return [value]


def _device(value: str) -> str:
    if value not in DEVICES:
        raise PlanError(f"unknown device {value!r}; use cpu, cuda or auto")
    if value == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return value


# runtimes / devices / dtype / baseline in a recipe table restrict or replace the plan's for that recipe's
# cases; every other key is the recipe's (pruning.recipe_keys: PruneRecipe's fields and the method config's own)
_CASE_KEYS = {"runtimes", "devices", "dtype", "baseline"}
_PLAN_KEYS = {"name", "models", "runtimes", "devices", "batch", "seq_len", "scenario", "threads", "dtype", "recipes",
              "ci_target", "time_cap_s", "warmup", "min_rounds", "memory", "quality", "cache", "baseline", "eval",
              "quality_items", "memory_cases", "compress_cases"}


def plan_from_dict(d: dict, **overrides: Any) -> Plan:
    """Expand a plan mapping (TOML layout) into Cases. ``overrides`` replace top-level keys."""
    d = {**d, **{k: v for k, v in overrides.items() if v is not None}}
    unknown = set(d) - _PLAN_KEYS
    if unknown:
        raise PlanError(f"unknown plan key(s) {', '.join(sorted(unknown))}; known keys: {', '.join(sorted(_PLAN_KEYS))}")
    import torch

    threads = d.get("threads")
    if threads is None:
        threads = torch.get_num_threads()
    elif isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:  # 0 is not "torch's default"
        raise PlanError(f"threads must be a positive integer, got {threads!r}; pass --threads 1 or more, or leave it "
                        f"out for torch's default ({torch.get_num_threads()} here)")
    recipes: list[tuple[PruneRecipe, list[str] | None, list[str] | None, list[str] | None, tuple | None]] = []
    plan_base = parse_baseline(d["baseline"]) if d.get("baseline") is not None else None
    for i, r in enumerate(_as_list("recipes", d.get("recipes", []))):
        if not isinstance(r, dict) or "method" not in r:
            raise PlanError(f"recipes[{i}] needs a 'method' key, e.g. {{method = 'global-l1', sparsity = 0.5}}")
        known = _CASE_KEYS | recipe_keys(r["method"])
        bad = set(r) - known
        if bad:
            raise PlanError(f"recipes[{i}] has unknown key(s) {', '.join(sorted(bad))}; known: {', '.join(sorted(known))}")
        only = r.get("runtimes")
        where = [_device(x) for x in _as_list(f"recipes[{i}].devices", r["devices"])] if "devices" in r else None
        dtype = _as_list(f"recipes[{i}].dtype", r["dtype"]) if "dtype" in r else None
        base = parse_baseline(r["baseline"], f"recipes[{i}].baseline") if "baseline" in r else None
        kw = {k: v for k, v in r.items() if k not in _CASE_KEYS | {"sparsity"}}
        for s in _as_list(f"recipes[{i}].sparsity", r.get("sparsity", 0.0)):
            rec = PruneRecipe.from_dict({**kw, "sparsity": s})
            if rec.needs_calibration:
                from .calibrate import check_calibration

                check_calibration(rec)
            if all((rec, dtype, only, base) != (x, dt, o, b) for x, o, _, dt, b in recipes):
                recipes.append((rec, only, where, dtype, base))
    models = [resolve_model(m) for m in _as_list("models", d.get("models", ["minilm"]))]
    runtimes = _as_list("runtimes", d.get("runtimes", ["torch-masked", "torch-dense"]))
    for rt in runtimes:
        if rt not in ALIASES:
            get_runtime(rt)
    devices = [_device(x) for x in _as_list("devices", d.get("devices", ["cpu"]))]
    cases = []
    plan_dtypes = _as_list("dtype", d.get("dtype", "float32"))
    scenarios = _as_list("scenario", d.get("scenario", "fixed"))
    from .measure.scenarios import SCENARIOS

    for sc in scenarios:
        if not isinstance(sc, str) or sc not in SCENARIOS:
            raise PlanError(f"scenario {sc!r} is not one of {', '.join(SCENARIOS)}; e.g. scenario = ['fixed', 'query']")
    for m, (rec, only, where, dtype, base), rt in itertools.product(models, recipes, runtimes):
        if only is not None and rt not in only:
            continue
        brt, bdt = base or plan_base or (None, None)
        for sc, dev, dt, b, s in itertools.product(
            dict.fromkeys(scenarios), dict.fromkeys(where or devices), dict.fromkeys(dtype or plan_dtypes),
            _as_list("batch", d.get("batch", [8])), _as_list("seq_len", d.get("seq_len", [128]))
        ):
            case = Case(m, rec, rt, dev, 1 if sc == "query" else b, s, threads, dt, brt, bdt, sc)
            if all(case.case_id != c.case_id for c in cases):  # an alias and its runtime, or a recipe listed twice
                cases.append(case)
    knobs = {k: d[k] for k in ("ci_target", "time_cap_s", "warmup", "min_rounds", "memory", "quality", "cache",
                               "quality_items", "memory_cases", "compress_cases") if k in d}
    if d.get("eval") is not None:  # absolute, so the run's plan.json names the file wherever it is read
        _check_eval(d["eval"])
        knobs["eval"] = str(Path(d["eval"]).expanduser().resolve())
    return Plan(tuple(cases), name=d.get("name", "custom"), source=d, **knobs)


def load_plan(path: Path | str, **overrides: Any) -> Plan:
    path = Path(path)
    if not path.is_file():
        raise PlanError(f"plan file {path} does not exist; pass a TOML plan such as bench/plans/default.toml")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PlanError(f"plan file {path} is not valid TOML ({exc}); fix the syntax") from exc
    return plan_from_dict(data, **overrides)


def builtin_plan(name: str, **overrides: Any) -> Plan:
    """A plan shipped in ``bench/plans/NAME.toml`` (default, quick, ci, ...)."""
    ref = resources.files("bench").joinpath(f"plans/{name}.toml")
    if not ref.is_file():
        raise PlanError(f"no built-in plan {name!r}")
    return plan_from_dict(tomllib.loads(ref.read_text(encoding="utf-8")), **overrides)

