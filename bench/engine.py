"""Runs one Case end to end and fills its Record: equality gate, paired latency, size, memory,
quality and FLOPs. Caches what cases share (models, baselines, reference outputs) per session."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import torch

from pruning import PruneRecipe

from . import steps
from .measure.embed_cache import EmbedCache, default_dir
from .measure.flops import macs
from .measure.memory import MemoryMeter
from .measure.quality import MAX_LEN, EvalTask, QualityMeter, QualityResult, corpus_task, file_task
from .measure.size import SizeMeter, raw_bytes, save_safetensors
from .plan import Case, Plan
from .records import Record
from .runtimes import Runner, Variant, get_runtime
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
    """A file name for a case id: ``/`` as ``__``, anything outside ``[A-Za-z0-9._+=-]`` as ``_``, then a short
    hash of the id (so ids that differ only in those characters stay apart). No ``@``: optimum (the peer's ONNX
    export) reads ``path@rest`` as a hub repo at revision ``rest``; no ``,``: OpenVINO splits paths there."""
    import hashlib
    import re

    name = re.sub(r"[^A-Za-z0-9._+=-]", "_", case_id.replace("/", "__"))
    return f"{name}-{hashlib.sha256(case_id.encode()).hexdigest()[:6]}"


def _timed(phases: dict[str, float], name: str, fn):
    with _phase(phases, name):
        return fn()


def _now(fn) -> Future:
    """``fn()`` run in this thread, its result or exception held in a Future (like the pool's)."""
    future: Future = Future()
    try:
        future.set_result(fn())
    except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
        future.set_exception(exc)
    return future


class Session:
    """Everything shared by the cases of one run."""

    def __init__(self, plan: Plan, out_dir: Path, run_id: str, *, isolate: bool = False,
                 case_timeout_s: float | None = None, cache_dir: Path | None = None):
        self.plan = plan
        self.out_dir = Path(out_dir)
        self.run_id = run_id
        self.isolate = isolate  # run each case in its own subprocess (bench/launch/isolate.py)
        self.case_timeout_s = case_timeout_s  # wall-clock limit of an isolated case and of a memory child
        self.last_samples: tuple[float, ...] = ()  # the last case's variant latency samples (seconds)
        self._tmp = Path(tempfile.mkdtemp(prefix="prunebench-"))
        from .calibrate import CACHE_ENV

        disk = (cache_dir or default_dir()) if plan.cache else None  # None: nothing read or written there
        # data-aware variants built once (bench/calibrate.py): across runs when cached, else in this run
        os.environ[CACHE_ENV] = str(self._variants(disk) or self._tmp / "variants")
        self._baselines: dict[str, Runner] = {}
        self._base_size: dict[str, int] = {}
        self._masked: tuple[tuple, torch.nn.Module] | None = None
        self._reference: dict[tuple, tuple[torch.Tensor, float]] = {}
        # each distinct thing measured once (artifacts by their bytes, embeddings by weights and inputs), on disk too
        self.size_meter = SizeMeter(disk)
        self.embed_cache = EmbedCache(disk)
        self._quality = QualityMeter(embedder=self.embed_cache.embed_texts)  # per (model, recipe, dtype), once a run
        self._task: EvalTask | None = None
        self._dense_macs: dict[tuple, int] = {}
        self.memory_meter = MemoryMeter(case_timeout_s)  # each baseline measured twice, cached
        self._dense_bytes: dict[str, int] = {}

    def _variants(self, disk: Path | None) -> Path | None:
        """The on-disk directory of the plan's data-aware variants (``bench.variant_cache``), or None."""
        from .variant_cache import variant_dir

        data_aware = [c for c in self.plan.cases if c.recipe.needs_calibration]
        if disk is None or not data_aware:
            return None
        return variant_dir(disk, [c.model for c in data_aware], {c.threads for c in data_aware})

    def close(self) -> None:
        log.info("measured once: %d artifacts compressed, %d memory children, %d embeddings computed and %d read "
                 "from the cache", self.size_meter.measured, self.memory_meter.measured, self.embed_cache.computed,
                 self.embed_cache.loaded)
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

    def baseline_bytes(self, case: Case) -> int:
        """The baseline artifact's raw bytes (every size ratio divides by them), read once per baseline case; its
        gzip size is no figure of the case (seconds for a dense MiniLM), so it is not computed."""
        base = case.baseline
        if base.case_id not in self._base_size:
            self._base_size[base.case_id] = raw_bytes(self.baseline(case).artifact)
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
            self._reference[key] = (ref, steps.fp64_rounding(fresh, inputs, ref))
        return self._reference[key]

    def quality_task(self) -> EvalTask:
        """What quality is scored on: the plan's eval file, else the BBC News split (built once per run)."""
        if self._task is None:
            if self.plan.eval:
                from .data.evalfile import load_eval_file

                self._task = file_task(load_eval_file(self.plan.eval))
            else:
                self._task = corpus_task(cap=self.plan.quality_items)
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
        nothing). Where the runtime changes the numbers (a half dtype, a precision the runtime chose: ``computes``,
        int8: a quality-floor runtime), what the runner serves is scored, so quality shows what casting or
        quantizing costs; elsewhere the variant in fp32 (cached per recipe, shared by its runtimes)."""
        loaded = get_model(case.model)
        task = self.quality_task()
        dense = (case.model, PruneRecipe("dense"), case.baseline.dtype)
        served = runner is not None and (case.dtype != "float32" or runner.computes is not None
                                         or get_runtime(case.runtime).quality_floor is not None)
        variant = (case.model, case.recipe, case.dtype, case.runtime) if served else (case.model, case.recipe, case.dtype)

        def net(key: tuple):
            return ServedEncoder(runner) if served and key == variant else self._quality_net(key)

        return self._quality.measure(dense, variant, net, loaded.encode, task, min(case.seq_len, MAX_LEN),
                                     task_metrics=loaded.weights == "pretrained" or task.kind != "corpus")

    def unavailable(self, case: Case) -> str | None:
        """Why the case cannot run here (runtime/device, a dtype or method the runtime cannot run, or a missing
        optional package), or None."""
        return unavailable(case)

    # -- one case: the steps in order (bench/steps.py), the record assembled from their results ----
    def describe(self, case: Case, rec: Record) -> None:
        """Set the fields known before anything runs (a skipped case's record holds them too)."""
        rec.add(steps.describe(self.run_id, case))

    def run(self, case: Case, rec: Record) -> None:
        """Run one case in this process (``bench.launch.isolate.run_isolated`` runs it in a child that calls this):
        build → equality → latency → size, memory and quality side by side. Whatever a step raises, the results
        of the steps before it are in ``rec`` (nothing measured is lost)."""
        from ._faults import inject

        inject(case.case_id)
        t0 = time.perf_counter()
        phases: dict[str, float] = {}
        parts: list = []
        torch.set_num_threads(case.threads)
        memory = self.plan.memory and self.plan.memory_skipped(case) is None
        try:
            if memory:  # the memory children's fork server imports torch while this case builds...
                self.memory_meter.prestart()
            built = _timed(phases, "build", lambda: steps.build(self, case))
            parts.append(built)
            gate = _timed(phases, "equality", lambda: steps.equality(self, case, built))  # equality before speed
            parts.append(gate)
            if gate.error:
                raise EqualityError(gate.error)
            if memory:  # ...and is idle before anything is timed (a wait, if any, is in duration_s only)
                self.memory_meter.settle()
            speed = _timed(phases, "latency", lambda: steps.latency(self, case, built))
            parts.append(speed)
            self.last_samples = speed.latency.variant_s
            self._untimed(case, built, phases, parts)
            shutil.rmtree(self.workdir(case), ignore_errors=True)
        finally:
            rec.add(*parts, steps.Phases(phases, time.perf_counter() - t0))

    def _untimed(self, case: Case, built: steps.Built, phases: dict[str, float], parts: list) -> None:
        """Size, memory and quality time nothing: they run side by side (each phase's own seconds recorded).
        Each result that succeeded is appended to ``parts``, in that order; then the first error is raised."""
        with ThreadPoolExecutor(max_workers=2) as pool:
            done = [pool.submit(_timed, phases, "size", lambda: steps.size(self, case, built))]
            skipped = self.plan.memory_skipped(case)  # a smoke run's budget: memory on its first cases only
            if self.plan.memory and skipped is None:
                done.append(pool.submit(_timed, phases, "memory", lambda: steps.memory(self, case, built)))
            elif skipped:
                parts.append(steps.MemorySkipped(skipped))
            if self.plan.quality:  # in this thread, while the pool works
                done.append(_now(lambda: _timed(phases, "quality", lambda: self.quality(case, built.runner))))
            errors = []
            for future in done:
                try:
                    parts.append(future.result())
                except Exception as exc:  # noqa: BLE001 - re-raised below, once the others are kept
                    errors.append(exc)
        if errors:
            raise errors[0]

    def dense_macs(self, case: Case) -> int:
        """MACs of the dense model on the case's batch (every weight counted), cached per shape."""
        key = (case.model, case.batch, case.seq_len)
        if key not in self._dense_macs:
            self._dense_macs[key] = macs(get_model(case.model).model, case.batch, case.seq_len, nonzero=False)
        return self._dense_macs[key]

    def safetensors_bytes(self, model: str) -> int:
        """Bytes of the dense fp32 model saved as safetensors: what every artifact is also compared with."""
        if model not in self._dense_bytes:
            path = save_safetensors(get_model(model).model, self._tmp / f"dense-{len(self._dense_bytes)}.safetensors")
            self._dense_bytes[model] = path.stat().st_size
            path.unlink()
        return self._dense_bytes[model]

    def memdir(self, case: Case) -> Path:
        """The memory child's own directory: it writes its artifact while the size of the case's is read."""
        d = self.workdir(case) / "memory"
        d.mkdir(exist_ok=True)
        return d
