"""On-disk size of what a runtime keeps: raw bytes and compressed bytes (gzip, level 6); and the one way a
model's tensors are written as safetensors (the dense runtimes' artifact and the size every artifact is also
compared with).

gzip of a 130 MB artifact takes seconds; :class:`SizeMeter` measures each distinct artifact once, keyed by a
hash of its bytes (and file names, and the compressor), in memory and optionally on disk, so identical
artifacts (within a run, or across runs) are compressed once."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Size", "SizeMeter", "artifact_digest", "measure_size", "raw_bytes", "save_safetensors"]

log = logging.getLogger("bench.measure.size")

_CHUNK = 1 << 22
LEVEL = 6


@dataclass(frozen=True)
class Size:
    raw_bytes: int
    compressed_bytes: int | None  # None: not compressed (a smoke budget's compress_cases)


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


def raw_bytes(artifact: Path) -> int:
    """Raw bytes of the artifact (a file, or every file under a directory): no compression, so it costs a stat
    per file (what a baseline's size is needed for: every ratio divides by its raw bytes)."""
    artifact = Path(artifact)
    files = [p for p in artifact.rglob("*") if p.is_file()] if artifact.is_dir() else [artifact]
    return sum(f.stat().st_size for f in files)


def measure_size(artifact: Path) -> Size:
    """Raw bytes of the artifact (a file, or every file under a directory) and their gzip-compressed bytes."""
    return Size(raw_bytes(artifact), _compressed(Path(artifact)))


def artifact_digest(artifact: Path) -> str:
    """A hash of what an artifact holds: each file's path relative to it, and its bytes; with the compressor's
    version and level, so a cached compressed size is never served for another compressor."""
    artifact = Path(artifact)
    files = sorted(p for p in artifact.rglob("*") if p.is_file()) if artifact.is_dir() else [artifact]
    h = hashlib.sha256(f"gzip-{LEVEL}|zlib-{zlib.ZLIB_RUNTIME_VERSION}".encode())
    for f in files:
        h.update(f"|{f.relative_to(artifact) if artifact.is_dir() else ''}|{f.stat().st_size}|".encode())
        with open(f, "rb") as fh:
            h.update(hashlib.file_digest(fh, "sha256").digest())
    return h.hexdigest()


class SizeMeter:
    """Sizes of a run's artifacts, each distinct one (by :func:`artifact_digest`) measured once; kept in memory,
    and as small JSON files in ``directory`` when given (the run's cache; None: this run only)."""

    def __init__(self, directory: Path | None = None, measure=measure_size):
        self.directory = Path(directory) / "sizes" if directory is not None else None
        self._measure = measure
        self._sizes: dict[str, Size] = {}
        self.measured = 0  # artifacts actually compressed (misses)

    def measure(self, artifact: Path) -> Size:
        """The artifact's :class:`Size`, from the cache where the same bytes were measured before."""
        key = artifact_digest(artifact)
        if key not in self._sizes:
            self._sizes[key] = self._load(key) or self._compute(key, artifact)
        return self._sizes[key]

    def _compute(self, key: str, artifact: Path) -> Size:
        self.measured += 1
        size = self._measure(artifact)
        if self.directory is not None:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
                with os.fdopen(fd, "w") as fh:
                    json.dump(asdict(size), fh)
                os.replace(tmp, self.directory / f"{key}.json")
            except OSError as exc:
                log.warning("size cache not written to %s (%s); the run goes on without it", self.directory, exc)
        return size

    def _load(self, key: str) -> Size | None:
        path = self.directory / f"{key}.json" if self.directory is not None else None
        if path is None or not path.is_file():
            return None
        try:
            return Size(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            log.warning("size cache file %s unreadable (%s): measuring again", path, exc)
            return None


def save_safetensors(model, path: Path) -> Path:
    """Write ``model``'s state dict (every tensor detached and contiguous) to ``path`` as safetensors."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path))
    return Path(path)
