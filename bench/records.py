"""Records: one flat, typed row per case, appended to ``records.jsonl`` (and fsynced) as the case ends.

Add fields, never rename; bump ``SCHEMA`` when a field's meaning changes.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

__all__ = ["FAILED", "SCHEMA", "STATUSES", "Part", "Record", "RecordError", "RecordWriter", "exit_status", "latest_by_case",
           "new_run_id", "read_records"]

log = logging.getLogger("bench.records")
SCHEMA = 1
STATUSES = ("ok", "failed", "oom", "crashed", "timeout", "skipped")
FAILED = ("failed", "oom", "crashed", "timeout")  # the statuses of a case that ran and did not succeed


def new_run_id() -> str:
    """A fresh run id: the local start time and 4 random hex digits, e.g. ``20250101-120000-ab12``."""
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]


def exit_status(records: list[dict], missing: list[str] | tuple = ()) -> int:
    """A run's exit status: 1 when a case failed (any status in ``FAILED``) or a planned case has no record
    (``missing``), else 0; skipped cases do not fail a run."""
    return 1 if missing or any(r["status"] in FAILED for r in records) else 0


class Part(Protocol):
    """A step's typed result: the Record fields it sets."""

    def record_fields(self) -> dict[str, Any]: ...


class RecordError(ValueError):
    """A records file that cannot be read."""


@dataclass
class Record:
    schema: int = SCHEMA
    run_id: str | None = None
    case_id: str | None = None
    fingerprint: str | None = None
    status: str = "ok"
    error: str | None = None
    reason: str | None = None
    unstable: bool | None = None
    model: str | None = None
    arch: str | None = None
    weights: str | None = None
    params: int | None = None
    method: str | None = None
    pattern: str | None = None
    scope: str | None = None
    norm: str | None = None
    allocation: str | None = None
    recipe: str | None = None  # the recipe's label, e.g. global-l1[seed]@0.20
    # the whole recipe as a flat dict (PruneRecipe.to_dict: method, sparsity, shared fields, and the method's
    # own knobs): a method's new knob shows here without a new Record field
    recipe_config: dict[str, Any] | None = None
    sparsity_target: float | None = None
    # fraction of the scope's weights that are zero; for structured methods (heads, ffn, heads+ffn, peers)
    # the fraction of heads / FFN neurons removed (heads+ffn: mean of the two);
    # params counts what the runtime runs (torch-dense: the shrunk model; torch-masked: the full one)
    sparsity_actual: float | None = None
    runtime: str | None = None
    device: str | None = None
    dtype: str | None = None
    threads: int | None = None
    batch: int | None = None
    seq_len: int | None = None
    # how the case was served (bench.measure.scenarios): fixed | query | offline (older records: absent = fixed)
    scenario: str | None = None
    # a scenario's figures beside the ratio: query: p50_ms, p90_ms, p99_ms per request (and baseline_*); offline:
    # texts_per_s, baseline_texts_per_s, batches, padded_tokens; texts per timed unit
    scenario_figures: dict[str, float | int] | None = None
    baseline: str | None = None
    latency_ms: float | None = None
    baseline_latency_ms: float | None = None
    latency_ratio: float | None = None
    latency_ratio_lo: float | None = None
    latency_ratio_hi: float | None = None
    latency_cv: float | None = None
    latency_p90_ms: float | None = None  # variant's 90th percentile; null with fewer than 10 rounds
    latency_p99_ms: float | None = None  # variant's 99th percentile; null with fewer than 100 rounds
    rounds: int | None = None
    # the paired protocol (bench.measure.paired): blocks the CI is over, its half-width relative to the ratio,
    # the verdict (faster | slower | unchanged within +-10% | undecided), whether it was decided, drift between
    # the halves of the blocks, and why timing stopped (decided | precise | time cap | max rounds)
    latency_blocks: int | None = None
    latency_half_width: float | None = None
    latency_verdict: str | None = None
    latency_decided: bool | None = None
    latency_drift: bool | None = None
    latency_stop: str | None = None
    flops_ratio: float | None = None
    efficiency: float | None = None
    macs: int | None = None  # roofline (bench/measure/roofline.py): the variant's MACs per forward (nonzero weights),
    achieved_gflops: float | None = None  # 2 x macs / latency_ms, the matmul peak that bounds the row (its dtype)
    peak_dtype: str | None = None  # measured at the run's start (env.json peak_gflops), and achieved / peak
    peak_gflops: float | None = None
    peak_fraction: float | None = None
    peak_mem_mb: float | None = None
    peak_mem_floor_mb: float | None = None
    peak_mem_model_mb: float | None = None
    mem_ratio: float | None = None
    mem_aa_ratio: float | None = None  # the dense baseline measured twice in fresh processes: second / first (A/A)
    memory_skipped: str | None = None
    compress_skipped: str | None = None  # why a case has no gzip figure (its plan's compress_cases)  # why a plan that measures memory did not for this case (its memory_cases)
    size_bytes: int | None = None
    size_ratio: float | None = None
    size_compressed_bytes: int | None = None
    size_compressed_ratio: float | None = None
    max_abs_diff: float | None = None
    tolerance: float | None = None
    reference_fp32_rounding: float | None = None  # fp32 reference vs the masked model in float64 (max abs)
    quality_cosine: float | None = None
    quality_knn_agreement: float | None = None
    quality_meaningful: bool | None = None
    # quality (bench/measure/quality.py): 95% bootstrap CIs over evaluation items (_lo, _hi); *_drop = dense - variant
    # on the same items (positive = quality lost), with its CI; cosine / kNN agreement: held-out texts of the task
    quality_cosine_lo: float | None = None
    quality_cosine_hi: float | None = None
    quality_knn_agreement_lo: float | None = None
    quality_knn_agreement_hi: float | None = None
    quality_probe_acc: float | None = None
    quality_probe_acc_lo: float | None = None
    quality_probe_acc_hi: float | None = None
    quality_probe_drop: float | None = None
    quality_probe_drop_lo: float | None = None
    quality_probe_drop_hi: float | None = None
    quality_knn_acc: float | None = None
    quality_knn_acc_lo: float | None = None
    quality_knn_acc_hi: float | None = None
    quality_knn_drop: float | None = None
    quality_knn_drop_lo: float | None = None
    quality_knn_drop_hi: float | None = None
    quality_r1: float | None = None
    quality_r1_lo: float | None = None
    quality_r1_hi: float | None = None
    quality_r1_drop: float | None = None
    quality_r1_drop_lo: float | None = None
    quality_r1_drop_hi: float | None = None
    quality_mrr10: float | None = None
    quality_mrr10_lo: float | None = None
    quality_mrr10_hi: float | None = None
    quality_mrr10_drop: float | None = None
    quality_mrr10_drop_lo: float | None = None
    quality_mrr10_drop_hi: float | None = None
    quality_spearman: float | None = None
    quality_spearman_lo: float | None = None
    quality_spearman_hi: float | None = None
    quality_spearman_drop: float | None = None
    quality_spearman_drop_lo: float | None = None
    quality_spearman_drop_hi: float | None = None
    quality_split: str | None = None  # what quality was scored on: the corpus split (sizes, digest) or the eval file
    quality_max_len: int | None = None  # tokens every quality input was truncated to
    quality_seconds: float | None = None  # wall seconds this case spent on quality (embeddings are cached per run)
    duration_s: float | None = None
    runtime_info: str | None = None  # what the runtime did, e.g. "format=bsr; block=32; ..." or ORT providers
    dense_safetensors_bytes: int | None = None  # the dense fp32 model as safetensors
    size_safetensors_ratio: float | None = None  # size_bytes / dense_safetensors_bytes
    # data-aware pruning and recovery (pruning/importance.py, pruning/recover.py, bench/calibrate.py)
    importance: str | None = None  # magnitude | activation | fisher | wanda
    recovery_method: str | None = None  # none | lstsq | distill | lstsq+distill
    recovery_fit: str | None = None  # lstsq: ridge | scales
    recovery_seconds: float | None = None  # recovery only (lstsq + distillation), once per variant
    distill_seconds: float | None = None
    distill_loss: list[float] | None = None  # distillation loss curve (at most ~50 points)
    distill_steps: int | None = None  # optimizer steps the distillation took within its budget
    recovery_errors: list | None = None  # lstsq: per projection {layer, part, before, after[, ridge]} (relative error)
    build_seconds: float | None = None  # the whole data-aware build: importance + recovery
    calibration_size: int | None = None  # calibration articles read
    baseline_runtime: str | None = None  # the baseline's runtime and dtype (the case id of ``baseline`` names them too)
    baseline_dtype: str | None = None
    quality_floor: float | None = None  # quantizing runtimes: the gate's pooled-cosine floor (no elementwise tolerance)
    gate_cosine: float | None = None  # pooled cosine to the fp32 torch-masked outputs on the fixed batch (quality-floor gate)
    compile_s: float | None = None  # torch-compile: seconds spent compiling (warm-up calls), excluded from latency
    # seconds per phase of the case: build, equality, latency, size, memory, quality (size, memory and quality
    # run side by side, so they can add up to more than the wall time); a baseline's one-off cost lands in the
    # first case that needs it
    phase_s: dict[str, float] | None = None
    env: dict[str, Any] = field(default_factory=dict)
    started_at: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=False, default=str)

    @classmethod
    def from_dict(cls, d: dict) -> "Record":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_parts(cls, *parts: Part, **values: Any) -> "Record":
        """A record assembled from the typed results of a case's steps (``bench.steps``), after ``values``."""
        return cls(**values).add(*parts)

    def add(self, *parts: Part) -> "Record":
        """Set the fields each part reports through ``record_fields()``, in order (a later part's value wins);
        a name that is not a Record field is an error, so a step cannot write a field no reader knows."""
        known = {f.name for f in fields(self)}
        for part in parts:
            values = part.record_fields()
            unknown = sorted(set(values) - known)
            if unknown:
                raise TypeError(f"{type(part).__name__}.record_fields() names {', '.join(unknown)}, not Record fields; "
                                "add them to bench.records.Record")
            for name, value in values.items():
                setattr(self, name, value)
        return self


class RecordWriter:
    """Appends records to a JSONL file, flushed and fsynced per record, so a crash loses nothing."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path)

    def write(self, record: Record) -> None:
        line = record.to_json() + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())


def repair_tail(path: Path) -> None:
    """Make an existing records file end on a line boundary before appending to it.

    A runner killed mid-write can leave a partial last line; appending after it would glue the next
    record onto it. A complete last line only lacks its newline; a partial one is moved to
    ``<name>.partial`` (kept for inspection) and cut off.
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1
    tail = data[cut:]
    try:
        json.loads(tail)
        complete = True
    except ValueError:
        complete = False
    with open(path, "r+b") as fh:
        if complete:
            fh.seek(0, os.SEEK_END)
            fh.write(b"\n")
        else:
            log.warning("%s: last line is truncated (a killed run?); moved to %s.partial", path, path.name)
            with open(path.with_name(path.name + ".partial"), "ab") as part:
                part.write(tail + b"\n")
            fh.truncate(cut)
        fh.flush()
        os.fsync(fh.fileno())


def latest_by_case(records: list[dict]) -> list[dict]:
    """One record per case_id: the last one written (a resumed case's new result), in first-seen order."""
    by: dict[str, dict] = {}
    for d in records:
        by[d["case_id"]] = d  # a dict keeps the key's first position and takes the new value
    return list(by.values())


def read_records(path: Path, latest: bool = True) -> list[dict]:
    """Read a records file; a truncated last line (a killed run) is skipped with a warning.

    With ``latest`` (the default) a case recorded more than once (a resumed run) counts once, by its
    last record; earlier lines stay in the file as history and ``latest=False`` returns them all."""
    path = Path(path)
    if path.is_dir():
        from .rundir import RunDir

        path = RunDir(path).records
    if not path.is_file():
        raise RecordError(f"no records at {path}; pass a run directory written by `prunebench run`")
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as exc:
            if i == len(lines):
                log.warning("%s: last line %d is truncated (a killed run?); skipped", path, i)
                continue
            raise RecordError(f"{path}:{i} is not valid JSON ({exc.msg}); repair or delete that line") from exc
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            raise RecordError(f"{path}:{i} has schema {d.get('schema') if isinstance(d, dict) else None!r}, this prunebench reads {SCHEMA}; re-run with a matching version")
        if not isinstance(d.get("case_id"), str) or d.get("status") not in STATUSES:
            raise RecordError(f"{path}:{i} is not a prunebench record (needs a case_id and a status in {', '.join(STATUSES)}); repair or delete that line")
        out.append(d)
    return latest_by_case(out) if latest else out
