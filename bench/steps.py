"""The steps of one case, each a function returning a typed result.

A step takes the case and what the run's :class:`bench.engine.Session` caches (models, baselines, reference
outputs, memory and quality meters). Its result holds what it measured and says, through ``record_fields()``,
which Record fields it sets; ``Record.from_parts`` (or ``Record.add`` on the case's record) assembles the
record from them. ``Session.run`` only orders the steps: build → equality → latency → size, memory, quality.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import torch

from pruning import scope_params
from pruning.unstructured import sparsity_of

from .env import environment, fingerprint
from .measure.flops import macs
from .measure.latency import Latency
from .measure.paired import measure_paired
from .measure.roofline import applicable_peak, roofline_fields
from .measure.scenarios import ScenarioTimer
from .measure.scenarios import figures as scenario_figures
from .measure.memory import Memory
from .measure.size import Size, raw_bytes
from .case import Case
from .runtimes import Runner, get_runtime
from .runtimes.base import Gate, equality_gate
from .variants import build_runner, get_model, get_workload

if TYPE_CHECKING:
    from .engine import Session

__all__ = ["Built", "CaseInfo", "Equality", "Memories", "MemorySkipped", "Phases", "Roofline", "Sizes", "Speed", "build",
           "describe", "equality", "fp64_rounding", "latency", "memory", "roofline", "size"]

log = logging.getLogger("bench.steps")


@dataclass(frozen=True)
class CaseInfo:
    """What is known of a case before anything runs: its axes, recipe, baseline, env and fingerprint."""

    run_id: str
    case: Case
    started_at: str
    env: dict[str, Any]
    fingerprint: str

    def record_fields(self) -> dict[str, Any]:
        case, recipe = self.case, self.case.recipe
        spec, base = recipe.spec, case.baseline
        rt = get_runtime(case.runtime)
        return {
            "run_id": self.run_id, "case_id": case.case_id, "model": case.model_label, "runtime": case.runtime,
            "device": case.device, "dtype": case.dtype, "batch": case.batch, "seq_len": case.seq_len,
            "scenario": case.scenario,
            "threads": case.threads, "method": recipe.method, "pattern": spec.pattern, "norm": recipe.norm,
            "allocation": recipe.allocation, "scope": recipe.scope if spec.scoped else None, "recipe": recipe.label,
            "recipe_config": recipe.to_dict(),
            "sparsity_target": recipe.sparsity, "importance": recipe.importance, "recovery_method": recipe.recover,
            "baseline": base.case_id, "baseline_runtime": base.runtime, "baseline_dtype": base.dtype,
            # the fp32 tolerance before the gate runs (a skipped case shows it); the gate's own replaces it
            "tolerance": rt.fp32_tolerance if case.dtype == "float32" and rt.quality_floor is None else None,
            "quality_floor": rt.quality_floor, "started_at": self.started_at, "env": self.env,
            "fingerprint": self.fingerprint,
        }


def describe(run_id: str, case: Case) -> CaseInfo:
    env = environment()
    return CaseInfo(run_id, case, datetime.now(timezone.utc).isoformat(timespec="seconds"), env, fingerprint(case, env))


@dataclass(frozen=True)
class Built:
    """The case's runner and its baseline's, and what the variant is: its parameters, sparsity, FLOP ratio, the
    model's architecture and weights, how it was calibrated or recovered, and what the runtime reports."""

    runner: Runner
    baseline: Runner
    arch: str
    weights: str
    params: int
    sparsity_actual: float
    flops_ratio: float
    calibration: dict[str, Any] = field(default_factory=dict)
    macs: int | None = None  # the variant's MACs per forward (nonzero weights), for the roofline

    def record_fields(self) -> dict[str, Any]:
        return {"arch": self.arch, "weights": self.weights, "quality_meaningful": self.weights == "pretrained",
                **self.calibration, "runtime_info": self.runner.info,
                **self.runner.record,  # runtime-specific fields, e.g. torch-compile's compile_s
                "params": self.params, "sparsity_actual": self.sparsity_actual, "flops_ratio": self.flops_ratio,
                "macs": self.macs}


def build(session: Session, case: Case) -> Built:
    """Load the model, build the case's runner (its variant prepared by the runtime) and the baseline's, and
    count what the runtime runs: parameters, sparsity (structured methods: the fraction of heads / FFN
    neurons removed, not of weights) and MACs relative to the dense model."""
    from .calibrate import record_fields

    loaded = get_model(case.model)
    runner = build_runner(case, session.workdir(case))
    calibration = record_fields(loaded, case.recipe)  # after the build: recovery figures exist once it ran
    variant = session.masked(case.model, case.recipe) if runner.model is None else runner.model
    if case.recipe.spec.structured:
        from pruning.structured import removed_fraction

        sparsity = removed_fraction(variant)
    else:
        sparsity = sparsity_of(scope_params(variant, case.recipe.scope if case.recipe.spec.scoped else "linear"))
    work = macs(variant, case.batch, case.seq_len)
    return Built(runner, session.baseline(case), loaded.arch, loaded.weights, sum(p.numel() for p in variant.parameters()),
                 round(sparsity, 6), work / session.dense_macs(case), calibration, work)


@dataclass(frozen=True)
class Equality:
    """The equality gate's verdict, and the reference's own fp32 rounding error it was scaled by."""

    gate: Gate
    rounding: float | None

    @property
    def error(self) -> str | None:
        return self.gate.error

    def record_fields(self) -> dict[str, Any]:
        return {"max_abs_diff": self.gate.max_abs_diff, "tolerance": self.gate.tolerance,
                "gate_cosine": self.gate.cosine, "reference_fp32_rounding": self.rounding}


def fp64_rounding(fresh: torch.nn.Module, inputs: dict, ref: torch.Tensor) -> float | None:
    """Max abs diff of ``ref`` (fp32 outputs of the masked variant) to ``fresh`` (an independent copy of that
    variant) run in float64 on the same inputs; None, with a warning, where the model cannot run in float64
    (the runtime's own tolerance then applies)."""
    try:
        wide = fresh.double()
        with torch.inference_mode():
            out = wide(**inputs).last_hidden_state
        return float((ref.double() - out).abs().max())
    except (RuntimeError, TypeError, NotImplementedError) as exc:  # an op without a float64 kernel
        log.warning("reference in float64 failed (%s): fp32 rounding not measured", exc)
        return None


def equality(session: Session, case: Case, built: Built) -> Equality:
    """Judge the runner's outputs against the fp32 torch-masked reference on the case's fixed batch
    (``runtimes.base.equality_gate``), before anything is timed, by the rule of the dtype the runner computes in."""
    ref = session.reference(case)
    mask = get_model(case.model).batch(case.batch, case.seq_len)["attention_mask"]
    rounding = session.reference_rounding(case)  # scales the fp32 and the half-precision tolerance alike
    dtype = built.runner.computes or case.dtype  # a runtime that picks its own precision is judged in that precision
    gate = equality_gate(get_runtime(case.runtime), case.runtime, dtype, built.runner.outputs(), ref, mask, rounding)
    return Equality(gate, rounding)


@dataclass(frozen=True)
class Speed:
    """Paired latency against the baseline, and the efficiency it gives with the FLOP ratio (FLOP ratio over
    latency ratio: 1 when time falls as fast as the work); a serving scenario's figures (p50/p90/p99 per request,
    or texts/s) beside them. In a scenario the latency samples are seconds per unit (the whole request
    sequence or corpus), and the FLOP ratio, counted on the fixed batch, gives no efficiency."""

    latency: Latency
    flops_ratio: float | None
    scenario_figures: dict[str, float | int] | None = None

    def record_fields(self) -> dict[str, Any]:
        eff = self.flops_ratio / self.latency.ratio if self.flops_ratio and self.scenario_figures is None else None
        return {**self.latency.record_fields(), "efficiency": eff, "scenario_figures": self.scenario_figures}


def latency(session: Session, case: Case, built: Built) -> Speed:
    """Variant and baseline timed in balanced blocks until the verdict is decided (or, with the plan's
    ``ci_target``, the CI is that tight) or the time cap (``measure.paired.measure_paired``); in a serving
    scenario each side's unit is the scenario's whole workload through its runner's ``run``. A runner with its own
    ``measure_paired`` (``runtimes.st_peer``) runs the same protocol in its process against its own dense fp32."""
    p = session.plan
    protocol = {"target": p.ci_target, "time_cap_s": p.time_cap_s, "warmup": p.warmup, "min_rounds": p.min_rounds}
    if case.scenario != "fixed":  # the same protocol over the scenario's unit (bench.measure.scenarios)
        work = get_workload(case)
        variant, base = ScenarioTimer(built.runner.run, work), ScenarioTimer(built.baseline.run, work)
        lat = measure_paired(variant, base, **protocol)
        return Speed(lat, built.flops_ratio, scenario_figures(case.scenario, variant, base, len(lat.variant_s)))
    own = getattr(built.runner, "measure_paired", None)  # a runner timed in its own process (the peer) brings its rounds
    lat = own(**protocol) if own else measure_paired(built.runner.timed, built.baseline.timed, **protocol)
    return Speed(lat, built.flops_ratio)


@dataclass(frozen=True)
class Roofline:
    """The row's achieved GFLOP/s and its fraction of the measured matmul peak that bounds it
    (``bench.measure.roofline``); every field None where the case has no MACs or latency, or runs on a GPU."""

    fields: dict[str, Any]

    def record_fields(self) -> dict[str, Any]:
        return dict(self.fields)


def roofline(case: Case, rec: Any, peaks: dict[str, float] | None) -> Roofline:
    """From the record's ``macs`` and ``latency_ms`` (set in this process or an isolated child's) and the run's
    CPU peaks (``peak_gflops`` of env.json): the peak that applies is the case's dtype, else its runtime's
    ``compute_dtype``, else float32."""
    cpu = case.device == "cpu"
    peak = applicable_peak(peaks, case.dtype, get_runtime(case.runtime).compute_dtype) if cpu else None
    return Roofline(roofline_fields(rec.macs if cpu else None, rec.latency_ms, peak))


@dataclass(frozen=True)
class Sizes:
    """The artifact's size next to the baseline artifact's raw bytes and to the dense fp32 model as safetensors."""

    size: Size
    baseline_bytes: int
    dense_safetensors_bytes: int
    compress_skipped: str | None = None  # why no gzip figure (the plan's compress_cases), or None

    def record_fields(self) -> dict[str, Any]:
        s, d = self.size, self.dense_safetensors_bytes
        gz = s.compressed_bytes
        return {"size_bytes": s.raw_bytes, "size_compressed_bytes": gz,
                "size_ratio": s.raw_bytes / self.baseline_bytes,
                "size_compressed_ratio": gz / self.baseline_bytes if gz is not None else None,
                "dense_safetensors_bytes": d, "size_safetensors_ratio": s.raw_bytes / d,
                "compress_skipped": self.compress_skipped}


def size(session: Session, case: Case, built: Built) -> Sizes:
    skipped = session.plan.compress_skipped(case)  # a smoke run's budget: gzip on its first cases only
    measured = Size(raw_bytes(built.runner.artifact), None) if skipped else session.size_meter.measure(built.runner.artifact)
    return Sizes(measured, session.baseline_bytes(case), session.safetensors_bytes(case.model), skipped)


@dataclass(frozen=True)
class Memories:
    """Peak memory of serving the variant and its baseline, each in a fresh process, and the baseline's A/A
    ratio (second measurement over first)."""

    variant: Memory
    baseline: Memory
    aa_ratio: float | None

    def record_fields(self) -> dict[str, Any]:
        m, b = self.variant, self.baseline
        return {"peak_mem_mb": round(m.peak_mb, 1), "peak_mem_floor_mb": round(m.floor_mb, 1),
                "peak_mem_model_mb": round(m.model_mb, 1), "mem_aa_ratio": self.aa_ratio,
                "mem_ratio": m.model_mb / b.model_mb if b.model_mb > 0 else None}


def memory(session: Session, case: Case, built: Built) -> Memories:
    mem = session.memory_meter.measure(built.runner, session.memdir(case), case.threads)
    base, aa = session.memory_meter.baseline(case.baseline.case_id, built.baseline, session.memdir(case.baseline),
                                             case.baseline.threads)
    return Memories(mem, base, aa)


@dataclass(frozen=True)
class MemorySkipped:
    """Why a case of a plan that measures memory has no memory figures (the plan's ``memory_cases``)."""

    reason: str

    def record_fields(self) -> dict[str, Any]:
        return {"memory_skipped": self.reason}


@dataclass(frozen=True)
class Phases:
    """Seconds spent in each phase of the case (build, equality, latency, size, memory, quality) and in all."""

    seconds: dict[str, float]
    duration_s: float

    def record_fields(self) -> dict[str, Any]:
        return {"phase_s": {k: round(v, 2) for k, v in self.seconds.items()}, "duration_s": round(self.duration_s, 2)}
