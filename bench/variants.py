"""A case's variant and its prepared runner, and the per-process cache of loaded dense models.

The engine (``Session``), the isolated child and the run's preflight build variants through here, so
no measurement or launcher needs the orchestrator to get a model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import torch

from .dtypes import dtype_unavailable
from .measure.scenarios import Workload, workload
from .models import LoadedModel, load_model
from .plan import Case
from .runtimes import Runner, Variant, get_runtime

__all__ = ["ServedEncoder", "build_runner", "get_model", "get_workload", "unavailable", "variant"]

log = logging.getLogger("bench.variants")

_MODELS: dict[str, LoadedModel] = {}
_WORKLOADS: dict[tuple, Workload] = {}


def get_model(name: str) -> LoadedModel:
    """The dense model ``name`` (a registered name or an HF directory), loaded once per process."""
    if name not in _MODELS:
        _MODELS[name] = load_model(name)
    return _MODELS[name]


def get_workload(case: Case) -> Workload:
    """The inputs of a serving scenario's timed unit (``bench.measure.scenarios``), built once per process for a
    model, scenario and shape: a case and its baseline run the same requests or batches."""
    key = (case.model, case.scenario, case.batch, case.seq_len)
    if key not in _WORKLOADS:
        _WORKLOADS[key] = workload(case.scenario, get_model(case.model).encode, case.batch, case.seq_len)
    return _WORKLOADS[key]


def variant(case: Case) -> Variant:
    """The case's variant: its model and recipe, on its fixed batch, in its dtype."""
    loaded = get_model(case.model)
    return Variant(loaded, case.recipe, loaded.batch(case.batch, case.seq_len), case.dtype)


def build_runner(case: Case | dict, workdir: Path) -> Runner:
    """Build the case's variant and prepare its runtime in ``workdir`` (the case's thread count set first)."""
    if isinstance(case, dict):
        case = Case.from_dict(case)
    torch.set_num_threads(case.threads)
    return get_runtime(case.runtime).prepare(variant(case), Path(workdir), case.device)


def unavailable(case: Case) -> str | None:
    """Why the case cannot run here (runtime/device, a dtype or method the runtime cannot run, a scenario it
    or its baseline cannot serve, or a missing optional package), or None."""
    rt = get_runtime(case.runtime)
    reason = rt.unavailable(case.device) or rt.incompatible(case) or dtype_unavailable(case)
    if reason is None and case.scenario != "fixed":
        base = get_runtime(case.baseline.runtime)
        reason = rt.unserved(case.scenario) or (base.unserved(case.scenario) and
                                                 f"its baseline: {base.unserved(case.scenario)}")
    req = case.recipe.spec.requires
    if reason is None and req:
        import importlib.util

        if importlib.util.find_spec(req) is None:
            reason = f"method {case.recipe.method} needs the optional package {req!r} (pip install 'prunebench[peers]')"
    return reason


class ServedEncoder:
    """A runner seen as an encoder by the quality measurement: ``net(**inputs).last_hidden_state``."""

    def __init__(self, runner: Runner):
        self.runner = runner

    def __call__(self, **inputs: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(last_hidden_state=self.runner.outputs(inputs))
