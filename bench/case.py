"""A case: one measurement -- a recipe applied to a model, run by a runtime on a device at one shape (or one
serving scenario, ``bench.measure.scenarios``), timed against its baseline.

A case names its baseline ``{runtime, dtype}`` (``baseline = "torch-dense:float32"`` in a plan or a recipe
table, ``--baseline`` on the command line); by default it is dense in the runtime's own baseline runtime
(itself, or dense torch for the sparse formats) in the case's dtype. A non-default baseline is part of the
case id (``.../vs-torch-dense-float32``) and of its fingerprint; a default one changes neither.

Every field is checked on construction, so a bad case fails before anything is measured. The grid of
cases a plan expands to is :mod:`bench.plan`'s (which re-exports these names).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pruning import PruneRecipe

from .measure.scenarios import SCENARIOS
from .runtimes import ALIASES, get_runtime

__all__ = ["DTYPES", "Case", "PlanError", "parse_baseline", "positive_int"]

DTYPES = ("float32", "float16", "bfloat16")


class PlanError(ValueError):
    """A plan (or one of its cases) that cannot run; the message names the field and the fix."""


def positive_int(name: str, value: Any) -> int:
    """``value`` if it is a positive integer (not a bool), else a PlanError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PlanError(f"{name} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class Case:
    """One measurement: a recipe applied to a model, run by a runtime on a device at one shape."""

    model: str
    recipe: PruneRecipe
    runtime: str
    device: str = "cpu"
    batch: int = 8
    seq_len: int = 128
    threads: int = 2
    dtype: str = "float32"
    baseline_runtime: str | None = None  # None: the runtime's default baseline runtime
    baseline_dtype: str | None = None  # None: the case's dtype
    # how the case is served (bench.measure.scenarios): the fixed batch (default), single real queries, or an
    # offline corpus with dynamic padding; a non-default scenario is part of the case id and fingerprint
    scenario: str = "fixed"

    def __post_init__(self) -> None:
        if self.runtime in ALIASES:  # an old name for a runtime with another baseline
            runtime, base = ALIASES[self.runtime]
            object.__setattr__(self, "runtime", runtime)
            object.__setattr__(self, "baseline_runtime", self.baseline_runtime or base)
        positive_int("batch", self.batch)
        positive_int("seq_len", self.seq_len)
        positive_int("threads", self.threads)
        if self.seq_len > 512:
            raise PlanError(f"seq_len {self.seq_len} exceeds the 512 positions of these encoders; use 512 or less")
        if self.scenario not in SCENARIOS:
            raise PlanError(f"scenario {self.scenario!r} is not one of {', '.join(SCENARIOS)}; e.g. scenario = ['fixed', 'query']")
        if self.scenario == "query" and self.batch != 1:
            raise PlanError(f"the query scenario serves one request at a time (batch 1), got batch {self.batch}; use batch 1")
        if self.device not in ("cpu", "cuda"):
            raise PlanError(f"device {self.device!r} is not cpu or cuda")
        if self.dtype not in DTYPES:
            raise PlanError(f"dtype {self.dtype!r} is not float32, float16 or bfloat16")
        default = get_runtime(self.runtime).baseline_runtime or self.runtime
        if self.baseline_runtime is not None:
            get_runtime(self.baseline_runtime)
            if self.baseline_runtime == default:  # the default spelled out: the same case, the same id
                object.__setattr__(self, "baseline_runtime", None)
        if self.baseline_dtype is not None:
            if self.baseline_dtype not in DTYPES:
                raise PlanError(f"baseline dtype {self.baseline_dtype!r} is not float32, float16 or bfloat16")
            if self.baseline_dtype == self.dtype:
                object.__setattr__(self, "baseline_dtype", None)

    @property
    def model_label(self) -> str:
        return Path(self.model).name if "/" in self.model else self.model

    @property
    def case_id(self) -> str:
        dt = "" if self.dtype == "float32" else f"-{self.dtype}"
        shape = f"b{self.batch}s{self.seq_len}" if self.scenario == "fixed" else f"{self.scenario}-b{self.batch}s{self.seq_len}"
        cid = f"{self.model_label}/{self.recipe.label}/{self.runtime}/{self.device}{dt}/{shape}"
        if self.baseline_runtime is None and self.baseline_dtype is None:
            return cid
        base = self.baseline
        return f"{cid}/vs-{base.runtime}-{base.dtype}"

    @property
    def baseline(self) -> "Case":
        """The dense model in the baseline runtime and dtype (by default the runtime's own baseline runtime, in
        the case's dtype)."""
        rt = self.baseline_runtime or get_runtime(self.runtime).baseline_runtime or self.runtime
        return replace(self, recipe=PruneRecipe("dense"), runtime=rt, dtype=self.baseline_dtype or self.dtype,
                       baseline_runtime=None, baseline_dtype=None)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["recipe"] = self.recipe.to_dict()
        for k in ("baseline_runtime", "baseline_dtype"):  # absent when default: older fingerprints stay valid
            if d[k] is None:
                del d[k]
        if d["scenario"] == "fixed":
            del d["scenario"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Case":
        return cls(**{**d, "recipe": PruneRecipe.from_dict(d["recipe"])})


def parse_baseline(text: Any, where: str = "baseline") -> tuple[str, str | None]:
    """``"RUNTIME[:DTYPE]"`` (e.g. ``torch-dense:float32``) as (runtime, dtype or None = the case's dtype)."""
    if not isinstance(text, str) or not text.strip():
        raise PlanError(f"{where} must be 'RUNTIME[:DTYPE]', e.g. 'torch-dense:float32', got {text!r}")
    runtime, _, dtype = text.strip().partition(":")
    if runtime in ALIASES:
        raise PlanError(f"{where}: {runtime!r} is not a baseline runtime; use {ALIASES[runtime][1]!r}")
    try:
        get_runtime(runtime)
    except ValueError as exc:
        raise PlanError(f"{where}: {exc}") from None
    if dtype and dtype not in DTYPES:
        raise PlanError(f"{where}: dtype {dtype!r} is not float32, float16 or bfloat16 (e.g. 'torch-dense:float32')")
    return runtime, dtype or None
