"""On-disk size of what a runtime keeps: raw bytes and compressed bytes (gzip, level 6); and the one way a
model's tensors are written as safetensors (the dense runtimes' artifact and the size every artifact is also
compared with)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Size", "measure_size", "save_safetensors"]

_CHUNK = 1 << 22
LEVEL = 6


@dataclass(frozen=True)
class Size:
    raw_bytes: int
    compressed_bytes: int


def _compressed(path: Path) -> int:
    total = 0
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        comp = zlib.compressobj(LEVEL, zlib.DEFLATED, 31)  # gzip container
        with open(f, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                total += len(comp.compress(chunk))
        total += len(comp.flush())
    return total


def measure_size(artifact: Path) -> Size:
    artifact = Path(artifact)
    files = [p for p in artifact.rglob("*") if p.is_file()] if artifact.is_dir() else [artifact]
    return Size(sum(f.stat().st_size for f in files), _compressed(artifact))


def save_safetensors(model, path: Path) -> Path:
    """Write ``model``'s state dict (every tensor detached and contiguous) to ``path`` as safetensors."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path))
    return Path(path)
