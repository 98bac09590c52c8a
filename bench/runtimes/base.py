"""What every runtime shares: the typed :class:`Runtime` protocol, the Variant it runs, the Runner it
returns, and the equality gate that judges a runner's outputs before anything is timed.

A runtime is one module defining a :class:`Runtime` subclass and ``RUNTIME = ThatClass()``, plus one line in
``bench.runtimes.RUNTIMES``. Its members: ``name``, ``help``, ``baseline_runtime`` (the runtime whose dense
model is its default baseline; None = itself), ``tolerance(dtype, reference)``, ``unavailable(device)``,
``incompatible(case)`` (default: None), ``unserved(scenario)`` (default: None), ``versions()`` (library versions
that go into env and the case's fingerprint), ``prepare(variant, workdir, device) -> Runner``. A quantizing
runtime sets ``quality_floor``: its gate is the pooled cosine to the fp32 torch-masked outputs, not an
elementwise tolerance; and ``compute_dtype`` (e.g. ``"int8"``) where its matmuls run in another dtype than the
case's (the roofline's peak).
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterator

import torch
from torch import nn

from pruning import PruneRecipe, bake

__all__ = ["DTYPES", "HALF_TOLERANCE", "ROUNDING_REF", "Gate", "Runner", "Runtime", "RuntimeUnavailable", "TorchRunner", "Variant",
           "cuda_unavailable", "equality_gate", "file_bytes", "package_versions", "pooled_cosine",
           "quiet_ort_quantization"]

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# fp16/bf16 outputs are compared with the fp32 torch-masked reference: the allowed max abs diff is this
# fraction of the reference's largest |value|. Measured on this CPU, torch-dense in half precision
# differs from fp32 by ~0.16% (fp16) and ~1% (bf16) of that scale on MiniLM and the tiny configs.
HALF_TOLERANCE = {"float16": 1e-2, "bfloat16": 5e-2}
# Every elementwise tolerance (fp32 and half) is stated for a reference whose own fp32 rounding error (vs
# float64) is at most this (dense MiniLM: 2-3.5e-6); a reference that rounds more scales it by the same
# factor. A model's conditioning amplifies every precision's rounding alike: MiniLM heads+ffn[fisher,lstsq]@0.25
# rounds 2.9e-4 in fp32 (57x this) and its bf16 cast differs by 5.18 (dense: 0.056, 92x less)
ROUNDING_REF = 5e-6
# A half-precision tolerance scaled for an ill-conditioned reference can exceed the reference's own values
# (MiniLM heads+ffn[fisher,lstsq]@0.25: 18.4 against a largest value of 6.4), so it alone would pass nearly
# anything: such a gate also needs the served embeddings (mean-pooled) to keep this cosine to the fp32 reference.
SCALED_HALF_COSINE = 0.99


class RuntimeUnavailable(RuntimeError):
    """The runtime cannot run on this device; the message says why."""


@dataclass
class Variant:
    """A dense model plus one recipe. Each call builds from a fresh dense copy: a masked model
    cannot be deep-copied, so nothing pruned is ever copied."""

    loaded: "object"  # bench.models.LoadedModel
    recipe: PruneRecipe
    inputs: dict[str, torch.Tensor]  # the case's fixed batch
    dtype: str = "float32"  # pruned in fp32, then cast: the same masks in every dtype

    def masked(self) -> nn.Module:
        """The variant as torch.nn.utils.prune leaves it (masks and hooks on); data-aware and recovered
        recipes are built once and restored from a snapshot (bench.calibrate), others copied from the
        model's cache of its last pruned recipe."""
        if self.recipe.needs_calibration:
            from bench.calibrate import build_masked

            model = build_masked(self.loaded, self.recipe)[0]
        else:
            model = self.loaded.pruned(self.recipe)
        return model.to(DTYPES[self.dtype]).eval()

    def baked(self) -> nn.Module:
        """The variant with masks made permanent (plain dense tensors with zeros)."""
        return bake(self.masked())


def cuda_unavailable(device: str) -> str | None:
    if device == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available on this machine (torch.cuda.is_available() is False)"
    return None


def package_versions(*packages: str) -> dict[str, str | None]:
    """Installed versions of ``packages`` from their metadata (None where absent), without importing them."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for pkg in packages:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


class _DropRootHint(logging.Filter):
    """Drops onnxruntime.quantization's root-logger advice to run its pre-processing script (a model export
    already is what that script produces; the equality or quality gate judges the result)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-process" not in record.getMessage()


@contextmanager
def quiet_ort_quantization() -> Iterator[None]:
    """Within the block, onnxruntime.quantization's pre-processing hint on the root logger is dropped."""
    root, hint = logging.getLogger(), _DropRootHint()
    root.addFilter(hint)
    try:
        yield
    finally:
        root.removeFilter(hint)


def file_bytes(path: Path) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


class Runner:
    """A callable that runs the variant on a fixed input batch.

    ``__call__`` runs once (synchronised on CUDA); ``outputs(inputs)`` returns the last hidden state
    as a CPU fp32 tensor; ``artifact`` is the file or directory the runtime keeps on disk; ``model`` is
    a plain torch encoder the engine counts parameters, sparsity and FLOPs on (None: the engine uses the
    masked variant, which holds the same weights); ``info`` says what the runtime did; ``record`` holds
    runtime-specific Record fields (e.g. ``compile_s``) the engine copies into the case's record; ``computes`` is
    the dtype a runtime chose to compute in where not the case's (OpenVINO's default bf16): the gate judges that.
    """

    device: str = "cpu"
    artifact: Path | None = None
    model: nn.Module | None = None
    info: str | None = None
    record: dict[str, object] = {}
    computes: str | None = None

    def __call__(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def outputs(self, inputs: dict[str, torch.Tensor] | None = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def run(self, inputs: dict[str, torch.Tensor]) -> None:
        """One call on ``inputs`` of any shape (a scenario's request or batch); runners override the output copy away."""
        self.outputs(inputs)

    def serving_files(self, directory: Path) -> dict:
        """Write what a fresh process loads to serve this variant (``bench.measure.memory``) into
        ``directory``; returns the spec the memory child reads: ``kind``, ``path``, ``imports``, ``device``."""
        raise NotImplementedError(f"{type(self).__name__} cannot be loaded in a fresh process")

    def artifact_bytes(self) -> int:
        return file_bytes(self.artifact) if self.artifact else 0

    def timed(self) -> float:
        """Seconds for one call (CUDA: events after synchronize)."""
        if self.device == "cuda":
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            self()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1e3
        t0 = time.perf_counter()
        self()
        return time.perf_counter() - t0


class TorchRunner(Runner):
    """Runs an ``nn.Module`` encoder under ``torch.inference_mode``, keyword arguments only.

    ``model`` is the plain encoder the engine counts parameters, sparsity and FLOPs on; subclasses whose
    module is not such an encoder (sparse layers) call ``_setup`` and leave ``model`` unset."""

    def __init__(self, model: nn.Module, inputs: dict[str, torch.Tensor], device: str, artifact: Path | None = None):
        self._setup(model.to(device), inputs, device, artifact)
        self.model = self.net

    def _setup(self, net: nn.Module, inputs: dict[str, torch.Tensor], device: str, artifact: Path | None) -> None:
        self.device = device
        self.net = net.eval()
        self.inputs = {k: v.to(device) for k, v in inputs.items()}
        self.artifact = artifact

    def serving_files(self, directory: Path, net: nn.Module | None = None) -> dict:
        """The module as the runtime holds it (its tensors, masks and hooks) and the fixed batch, pickled."""
        net = self.net if net is None else net
        path = Path(directory) / "serve.pt"
        torch.save({"net": net, "inputs": self.inputs}, path)
        mods = {type(m).__module__ for m in net.modules()}
        mods |= {type(h).__module__ for m in net.modules() for h in m._forward_pre_hooks.values()}
        return {"kind": "torch", "path": str(path), "imports": sorted(mods), "device": self.device}

    def _forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.inference_mode():
            return self.net(**inputs).last_hidden_state

    def __call__(self) -> None:
        self._forward(self.inputs)
        if self.device == "cuda":
            torch.cuda.synchronize()

    def outputs(self, inputs: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        inputs = self.inputs if inputs is None else {k: v.to(self.device) for k, v in inputs.items()}
        return self._forward(inputs).float().cpu()

    def run(self, inputs: dict[str, torch.Tensor]) -> None:
        self._forward({k: v.to(self.device) for k, v in inputs.items()})
        if self.device == "cuda":
            torch.cuda.synchronize()


class Runtime(ABC):
    """How a variant executes: the typed protocol every runtime module implements (see the module doc)."""

    name: ClassVar[str]
    help: ClassVar[str]
    baseline_runtime: ClassVar[str | None] = None  # default baseline: dense in this runtime (None) or in another
    fp32_tolerance: ClassVar[float] = 0.0  # max abs diff against torch-masked in float32
    quality_floor: ClassVar[float | None] = None  # set: the gate is pooled cosine >= this, not a tolerance
    chooses_precision: ClassVar[bool] = False  # the runtime may compute below the case's dtype (its runner's ``computes``)
    # what its matmuls compute in when that is not the case's dtype (e.g. "int8"): which measured matmul peak
    # bounds its rows (bench.measure.roofline); None: the case's dtype
    compute_dtype: ClassVar[str | None] = None

    def tolerance(self, dtype: str, reference: torch.Tensor) -> float:
        """Max abs diff allowed against the fp32 torch-masked reference of a model that rounds like dense
        (``ROUNDING_REF``; ``equality_gate`` scales it for one that rounds more): ``fp32_tolerance`` in fp32,
        ``HALF_TOLERANCE[dtype]`` x max |reference| in half precision."""
        if dtype == "float32":
            return float(self.fp32_tolerance)
        return HALF_TOLERANCE[dtype] * float(reference.abs().max())

    def unavailable(self, device: str) -> str | None:
        """Why this runtime cannot run on ``device`` here (a missing package, no CUDA), or None."""
        return cuda_unavailable(device)

    def incompatible(self, case) -> str | None:
        """Why this runtime cannot run ``case`` (a dtype or method it has no kernel for), or None."""
        return None

    def unserved(self, scenario: str) -> str | None:
        """Why this runtime cannot serve ``scenario`` (inputs of varying shape through ``Runner.run``), or None."""
        return None

    def versions(self) -> dict[str, str | None]:
        """Versions of the libraries this runtime runs on beyond torch (recorded in env and the fingerprint)."""
        return {}

    @abstractmethod
    def prepare(self, variant: Variant, workdir: Path, device: str) -> Runner:
        """Build the runner for ``variant`` (its artifact written under ``workdir``) on ``device``."""


def pooled_cosine(out: torch.Tensor, ref: torch.Tensor, attention_mask: torch.Tensor) -> float:
    """Mean over the batch of the cosine between mean-pooled (attention-masked) outputs and reference."""
    mask = attention_mask.unsqueeze(-1).to(torch.float32)
    a = (out.float() * mask).sum(1) / mask.sum(1).clamp_min(1)
    b = (ref.float() * mask).sum(1) / mask.sum(1).clamp_min(1)
    return float(torch.nn.functional.cosine_similarity(a, b, dim=1).mean())


@dataclass(frozen=True)
class Gate:
    """The equality gate's verdict on one runner: the figures it judged and, when it fails, why."""

    max_abs_diff: float
    tolerance: float | None  # None for a quality-floor runtime
    cosine: float | None  # pooled cosine to the reference (quality-floor runtimes)
    floor: float | None
    error: str | None  # None: passed


def equality_gate(runtime: Runtime, name: str, dtype: str, out: torch.Tensor, ref: torch.Tensor,
                  attention_mask: torch.Tensor, rounding: float | None = None) -> Gate:
    """Judge a runner's outputs against the fp32 torch-masked reference before timing: within the runtime's
    tolerance, or (a quantizing runtime) pooled cosine at least its ``quality_floor``.

    ``rounding`` is the reference's own fp32 rounding error, its max abs diff to the same masked model run in
    float64. Every elementwise tolerance (a runtime's ``fp32_tolerance``, ``HALF_TOLERANCE`` x max |reference|
    in fp16/bf16) is stated for a reference that rounds by at most ``ROUNDING_REF``; one that rounds more
    (weights re-fitted by recovery cancel in larger sums, so every precision's rounding grows alike) gets it
    scaled by ``rounding / ROUNDING_REF``, so that the gate judges the runtime's error relative to what
    rounding does to this model, not to a better-conditioned one. A scaled half-precision tolerance can be
    wider than the outputs themselves, so it has a second lock: the pooled cosine to the reference must be at
    least ``SCALED_HALF_COSINE``."""
    same = out.shape == ref.shape
    diff = float((out - ref).abs().max()) if same else float("inf")
    shapes = f"(shapes {tuple(out.shape)} vs {tuple(ref.shape)})"
    if runtime.quality_floor is not None:
        floor = float(runtime.quality_floor)
        cos = pooled_cosine(out, ref, attention_mask) if same else float("nan")
        error = None if cos >= floor else (
            f"{name} outputs fall below its quality floor: pooled cosine to fp32 torch-masked {cos:.4f} < {floor} "
            f"on the fixed batch {shapes}")
        return Gate(diff, None, round(cos, 6), floor, error)
    tol = runtime.tolerance(dtype, ref)
    why = ""
    if rounding is not None and rounding > ROUNDING_REF:
        why = (f" (the runtime's {dtype} tolerance {tol:.2g} x the reference's own fp32 rounding error {rounding:.3g} "
               f"vs float64 / {ROUNDING_REF:g})")
        tol *= rounding / ROUNDING_REF
    error = None if diff <= tol else (
        f"{name} outputs differ from torch-masked: max abs diff {diff:.3g} > tolerance {tol:.2g}{why} {shapes}")
    if why and dtype != "float32":  # the scaled half tolerance is loose: the pooled outputs must still agree
        cos = pooled_cosine(out, ref, attention_mask) if same else float("nan")
        if error is None and not cos >= SCALED_HALF_COSINE:
            error = (f"{name} outputs fall below the scaled {dtype} gate's cosine floor: pooled cosine to fp32 "
                     f"torch-masked {cos:.4f} < {SCALED_HALF_COSINE} (max abs diff {diff:.3g} within tolerance "
                     f"{tol:.2g}{why}) {shapes}")
        return Gate(diff, tol, round(cos, 6), SCALED_HALF_COSINE, error)
    return Gate(diff, tol, None, None, error)
