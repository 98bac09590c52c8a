"""Runs one Case end to end and fills its Record: equality gate, paired latency, size, memory,
quality and FLOPs. Caches what cases share (models, baselines, reference outputs) per session."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import torch

from pruning import PruneRecipe, scope_params
from pruning.unstructured import sparsity_of

from .env import environment
from .measure.flops import macs
from .measure.latency import Latency, measure_paired
from .measure.memory import MemoryMeter
from .measure.quality import MAX_LEN, EvalTask, QualityMeter, QualityResult, corpus_task, file_task
from .measure.size import measure_size, save_safetensors
from .plan import Case, Plan
from .records import Record
from .runtimes import Runner, Variant, get_runtime
from .runtimes.base import equality_gate
from .variants import ServedEncoder, build_runner, get_model, unavailable

__all__ = ["EqualityError", "Session"]

log = logging.getLogger("bench.engine")


class EqualityError(AssertionError):
    """A runtime's outputs differ from torch-masked beyond its tolerance: no timing is recorded."""


@contextmanager
def _phase(phases: dict[str, float], name: str):
    """Add the seconds spent in the block to ``phases[name]`` (also when it raises)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0


def _safe_name(case_id: str) -> str:
    """A file name for a case id: ``/`` as ``__``, anything outside ``[A-Za-z0-9._+=@-]`` as ``_``, then a short
    hash of the id (so ids that differ only in those characters stay apart)."""
    import hashlib
    import re

    name = re.sub(r"[^A-Za-z0-9._+=@-]", "_", case_id.replace("/", "__"))
    return f"{name}-{hashlib.sha256(case_id.encode()).hexdigest()[:6]}"


def _fp64_rounding(fresh: torch.nn.Module, inputs: dict, ref: torch.Tensor) -> float | None:
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


def _timed(phases: dict[str, float], name: str, fn):
    with _phase(phases, name):
        return fn()


class Session:
    """Everything shared by the cases of one run."""

    def __init__(self, plan: Plan, out_dir: Path, run_id: str, *, isolate: bool = False,
                 case_timeout_s: float | None = None):
        self.plan = plan
        self.out_dir = Path(out_dir)
        self.run_id = run_id
        self.isolate = isolate  # run each case in its own subprocess (bench/launch/isolate.py)
        self.case_timeout_s = case_timeout_s  # wall-clock limit of an isolated case and of a memory child
        self.last_samples: tuple[float, ...] = ()  # the last case's variant latency samples (seconds)
        self._tmp = Path(tempfile.mkdtemp(prefix="prunebench-"))
        from .calibrate import CACHE_ENV

        os.environ[CACHE_ENV] = str(self._tmp / "variants")  # data-aware variants built once (bench/calibrate.py)
        self._baselines: dict[str, Runner] = {}
        self._base_size: dict[str, object] = {}
        self._masked: tuple[tuple, torch.nn.Module] | None = None
        self._reference: dict[tuple, tuple[torch.Tensor, float]] = {}
        self._quality = QualityMeter()  # embeddings per (model, recipe, dtype), computed once per run
        self._task: EvalTask | None = None
        self._dense_macs: dict[tuple, int] = {}
        self._memory = MemoryMeter(case_timeout_s)  # each baseline measured twice, cached
        self._dense_bytes: dict[str, int] = {}

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    def workdir(self, case: Case) -> Path:
        """The case's scratch directory. Its name keeps only characters no tool reads specially (OpenVINO's
        ``convert_model`` splits a path at commas, as in ``heads+ffn[fisher,lstsq]``), plus a hash of the
        case id so two cases never share one."""
        d = self._tmp / _safe_name(case.case_id)
        d.mkdir(parents=True, exist_ok=True)
        return d

    # -- shared, cached pieces --------------------------------------------------------------
    def baseline(self, case: Case) -> Runner:
        """The prepared baseline runner, cached per baseline case."""
        base = case.baseline
        if base.case_id not in self._baselines:
            self._baselines[base.case_id] = build_runner(base, self.workdir(base))
        return self._baselines[base.case_id]

    def _baseline_size(self, case: Case):
        base = case.baseline
        if base.case_id not in self._base_size:
            self._base_size[base.case_id] = measure_size(self.baseline(case).artifact)
        return self._base_size[base.case_id]

    def masked(self, model: str, recipe: PruneRecipe) -> torch.nn.Module:
        """The torch-masked variant, kept for the cases of one recipe (reference outputs, quality)."""
        key = (model, recipe)
        if self._masked is None or self._masked[0] != key:
            self._masked = None
            self._masked = (key, Variant(get_model(model), recipe, {}).masked())
        return self._masked[1]

    def reference(self, case: Case) -> torch.Tensor:
        """torch-masked outputs of the case's variant on its fixed batch (the equality reference)."""
        return self._reference_and_rounding(case)[0]

    def reference_rounding(self, case: Case) -> float | None:
        """Max abs diff between the fp32 reference and the same masked model run in float64: the fp32
        rounding error of the reference itself (see ``runtimes.base.equality_gate``)."""
        return self._reference_and_rounding(case)[1]

    def _reference_and_rounding(self, case: Case) -> tuple[torch.Tensor, float]:
        key = (case.model, case.recipe, case.batch, case.seq_len)
        if key not in self._reference:
            inputs = get_model(case.model).batch(case.batch, case.seq_len)
            masked = self.masked(case.model, case.recipe)
            with torch.inference_mode():
                ref = masked(**inputs).last_hidden_state.float()
            fresh = Variant(get_model(case.model), case.recipe, {}).masked()  # a copy of the masked variant
            self._reference[key] = (ref, _fp64_rounding(fresh, inputs, ref))
        return self._reference[key]

    def quality_task(self) -> EvalTask:
        """What quality is scored on: the plan's eval file, else the BBC News split (built once per run)."""
        if self._task is None:
            if self.plan.eval:
                from .data.evalfile import load_eval_file

                self._task = file_task(load_eval_file(self.plan.eval))
            else:
                self._task = corpus_task()
        return self._task

    def _quality_net(self, key: tuple) -> torch.nn.Module:
        """The network a quality key (model, recipe, dtype) names: the cached model for dense fp32; structured
        recipes baked (heads and neurons removed: the same outputs, faster to embed); others masked."""
        model, recipe, dtype = key
        if recipe.method == "dense" and dtype == "float32":
            return get_model(model).model
        if recipe.spec.structured:
            return Variant(get_model(model), recipe, {}, dtype).baked()
        if dtype == "float32":
            return self.masked(model, recipe)
        return Variant(get_model(model), recipe, {}, dtype).masked()

    def quality(self, case: Case, runner: Runner | None = None) -> QualityResult:
        """The case's variant scored against dense in the baseline's dtype on the run's task, at the case's
        seq_len capped at MAX_LEN; random-init models get fidelity only (a task score of random weights means
        nothing). Where the runtime changes the numbers (a half dtype, int8: a quality-floor runtime), what the
        runner serves is scored, so quality shows what casting or quantizing costs; elsewhere the variant in
        fp32 (cached per recipe, shared by its runtimes)."""
        loaded = get_model(case.model)
        task = self.quality_task()
        dense = (case.model, PruneRecipe("dense"), case.baseline.dtype)
        served = runner is not None and (case.dtype != "float32" or get_runtime(case.runtime).quality_floor is not None)
        variant = (case.model, case.recipe, case.dtype, case.runtime) if served else (case.model, case.recipe, case.dtype)

        def net(key: tuple):
            return ServedEncoder(runner) if served and key == variant else self._quality_net(key)

        return self._quality.measure(dense, variant, net, loaded.encode, task, min(case.seq_len, MAX_LEN),
                                     task_metrics=loaded.weights == "pretrained" or task.kind != "corpus")

    def unavailable(self, case: Case) -> str | None:
        """Why the case cannot run here (runtime/device, a dtype or method the runtime cannot run, or a missing
        optional package), or None."""
        return unavailable(case)

    # -- one case ---------------------------------------------------------------------------
    def describe(self, case: Case, rec: Record) -> None:
        """Fill the fields known before anything runs."""
        spec = case.recipe.spec
        rec.run_id, rec.case_id = self.run_id, case.case_id
        rec.model, rec.runtime, rec.device, rec.dtype = case.model_label, case.runtime, case.device, case.dtype
        rec.batch, rec.seq_len, rec.threads = case.batch, case.seq_len, case.threads
        rec.method, rec.pattern, rec.norm, rec.allocation = case.recipe.method, spec.pattern, case.recipe.norm, case.recipe.allocation
        rec.scope = case.recipe.scope if spec.scoped else None
        rec.recipe, rec.sparsity_target = case.recipe.label, case.recipe.sparsity
        rec.importance, rec.recovery_method = case.recipe.importance, case.recipe.recover
        rec.baseline = case.baseline.case_id
        rec.baseline_runtime, rec.baseline_dtype = case.baseline.runtime, case.baseline.dtype
        rt = get_runtime(case.runtime)
        rec.tolerance = rt.fp32_tolerance if case.dtype == "float32" and rt.quality_floor is None else None  # else: set in run()
        rec.quality_floor = rt.quality_floor
        rec.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        rec.env = environment()
        from .env import fingerprint

        rec.fingerprint = fingerprint(case, rec.env)

    def run(self, case: Case, rec: Record, benchmark=None) -> None:
        """Run one case in this process (``bench.launch.isolate.run_isolated`` runs it in a child that calls this)."""
        from ._faults import inject

        inject(case.case_id)
        t0 = time.perf_counter()
        phases: dict[str, float] = {}
        rec.phase_s = phases
        torch.set_num_threads(case.threads)
        with _phase(phases, "build"):
            loaded = get_model(case.model)
            rec.arch, rec.weights = loaded.arch, loaded.weights
            rec.quality_meaningful = loaded.weights == "pretrained"
            runner = build_runner(case, self.workdir(case))
            from .calibrate import record_fields

            for key, value in record_fields(loaded, case.recipe).items():
                setattr(rec, key, value)
            rec.runtime_info = runner.info
            for key, value in runner.record.items():  # runtime-specific fields, e.g. torch-compile's compile_s
                setattr(rec, key, value)
            variant = self.masked(case.model, case.recipe) if runner.model is None else runner.model
            rec.params = sum(p.numel() for p in variant.parameters())
            scope = case.recipe.scope if case.recipe.spec.scoped else "linear"
            if case.recipe.spec.structured:  # the fraction of heads / FFN neurons removed, not of weights
                from pruning.structured import removed_fraction

                rec.sparsity_actual = round(removed_fraction(variant), 6)
            else:
                rec.sparsity_actual = round(sparsity_of(scope_params(variant, scope)), 6)
            rec.flops_ratio = macs(variant, case.batch, case.seq_len) / self._dense(case)
            base_runner = self.baseline(case)

        with _phase(phases, "equality"):  # equality before speed
            ref = self.reference(case)
            mask = loaded.batch(case.batch, case.seq_len)["attention_mask"]
            rounding = self.reference_rounding(case) if case.dtype == "float32" else None
            gate = equality_gate(get_runtime(case.runtime), case.runtime, case.dtype, runner.outputs(), ref, mask, rounding)
            rec.max_abs_diff, rec.tolerance, rec.gate_cosine = gate.max_abs_diff, gate.tolerance, gate.cosine
            rec.reference_fp32_rounding = rounding
        if gate.error:
            raise EqualityError(gate.error)

        with _phase(phases, "latency"):
            lat = measure_paired(runner.timed, base_runner.timed, target=self.plan.ci_target, time_cap_s=self.plan.time_cap_s,
                                 warmup=self.plan.warmup, min_rounds=self.plan.min_rounds, benchmark=benchmark)
        self._latency(rec, lat)

        # size, memory and quality time nothing: run them side by side (each phase's own seconds are recorded)
        with ThreadPoolExecutor(max_workers=2) as pool:
            size_f = pool.submit(_timed, phases, "size", lambda: (measure_size(runner.artifact), self._baseline_size(case)))
            mem_f = pool.submit(_timed, phases, "memory", lambda: (
                self._memory.measure(runner, self._memdir(case), case.threads),
                self._memory.baseline(case.baseline.case_id, base_runner, self._memdir(case.baseline),
                                      case.baseline.threads))) if self.plan.memory else None
            if self.plan.quality:
                with _phase(phases, "quality"):
                    for name, value in self.quality(case, runner).record_fields().items():
                        setattr(rec, name, value)
            size, base_size = size_f.result()
            rec.size_bytes, rec.size_compressed_bytes = size.raw_bytes, size.compressed_bytes
            rec.size_ratio = size.raw_bytes / base_size.raw_bytes
            rec.size_compressed_ratio = size.compressed_bytes / base_size.raw_bytes
            rec.dense_safetensors_bytes = self._safetensors_bytes(case.model)
            rec.size_safetensors_ratio = size.raw_bytes / rec.dense_safetensors_bytes
            if mem_f is not None:
                mem, (base, rec.mem_aa_ratio) = mem_f.result()
                rec.peak_mem_mb, rec.peak_mem_floor_mb = round(mem.peak_mb, 1), round(mem.floor_mb, 1)
                rec.peak_mem_model_mb = round(mem.model_mb, 1)
                rec.mem_ratio = mem.model_mb / base.model_mb if base.model_mb > 0 else None
        del runner
        shutil.rmtree(self.workdir(case), ignore_errors=True)
        rec.duration_s = round(time.perf_counter() - t0, 2)
        phases.update({k: round(v, 2) for k, v in phases.items()})

    def _latency(self, rec: Record, lat: Latency) -> None:
        for name, value in lat.record_fields().items():
            setattr(rec, name, value)
        self.last_samples = lat.variant_s
        rec.efficiency = rec.flops_ratio / lat.ratio if rec.flops_ratio else None

    def _dense(self, case: Case) -> int:
        key = (case.model, case.batch, case.seq_len)
        if key not in self._dense_macs:
            self._dense_macs[key] = macs(get_model(case.model).model, case.batch, case.seq_len, nonzero=False)
        return self._dense_macs[key]

    def _safetensors_bytes(self, model: str) -> int:
        """Bytes of the dense fp32 model saved as safetensors: what every artifact is also compared with."""
        if model not in self._dense_bytes:
            path = save_safetensors(get_model(model).model, self._tmp / f"dense-{len(self._dense_bytes)}.safetensors")
            self._dense_bytes[model] = path.stat().st_size
            path.unlink()
        return self._dense_bytes[model]

    def _memdir(self, case: Case) -> Path:
        """The memory child's own directory: it writes its artifact while the size of the case's is read."""
        d = self.workdir(case) / "memory"
        d.mkdir(exist_ok=True)
        return d
