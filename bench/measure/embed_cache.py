"""Quality embeddings computed once per distinct network and input, kept in memory and (optionally) on disk.

Scoring quality embeds a few hundred articles per variant; the dense model's embeddings are the same in every
run, and two recipes that end in the same weights embed the same. :class:`EmbedCache` wraps
:func:`bench.measure.quality.embed_texts` and keys each result by everything that decides it, so it can never
serve a figure a fresh computation would not give:

- the network: its class, its config, every tensor of its state dict (names, dtypes, shapes and bytes: masked
  variants hold ``weight_orig`` and ``weight_mask``), the hooks on its modules, its train/eval mode;
- the inputs: the texts, and the token ids and attention mask the tokenizer makes of them at ``max_len`` (the
  split, its digest, the tokenizer and the model revision all end up here);
- the code and the numerics: the source of ``bench.measure.quality``, torch and transformers versions, the CPU
  kernels torch dispatches to and its thread count.

A network that is not a plain encoder with a state dict (a runtime's served outputs: ONNX, int8) is never
cached. A miss computes; a file that cannot be read is a miss. ``directory=None`` keeps the cache in memory
only (the plan's ``cache = false`` / ``prunebench run --no-cache``).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

__all__ = ["EmbedCache", "default_dir", "network_digest"]

log = logging.getLogger("bench.measure.embed_cache")
VERSION = 1  # bump when what a cached file holds changes


def default_dir() -> Path:
    """``$XDG_CACHE_HOME/prunebench`` (``~/.cache/prunebench`` when unset): the run's on-disk cache."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "prunebench"


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous()
    return t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def network_digest(net: nn.Module) -> str | None:
    """A digest of what decides a network's outputs (class, config, state dict, hooks, mode), or None where it
    cannot be hashed (no state dict, sparse or quantized tensors): such a network is never cached."""
    from transformers import PreTrainedModel

    if not isinstance(net, PreTrainedModel):
        return None
    h = hashlib.sha256(f"{type(net).__module__}.{type(net).__qualname__}|{net.training}|".encode())
    h.update(net.config.to_json_string(use_diff=False).encode())
    try:
        for name, t in sorted(net.state_dict().items()):
            if not isinstance(t, torch.Tensor) or t.layout != torch.strided or t.is_quantized:
                return None
            h.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(_tensor_bytes(t))
    except (RuntimeError, TypeError) as exc:  # a tensor that has no plain bytes
        log.debug("not caching a network whose state cannot be hashed: %s", exc)
        return None
    for name, m in net.named_modules():
        hooks = [*m._forward_pre_hooks.values(), *m._forward_hooks.values()]
        if hooks:
            h.update(f"|{name}:{sorted(type(x).__qualname__ for x in hooks)}".encode())
    return h.hexdigest()


@lru_cache(maxsize=1)
def _code_version() -> str:
    """The scorer's source, the libraries and the kernels that compute an embedding."""
    import transformers

    from . import quality

    src = inspect.getsource(quality)
    parts = [str(VERSION), src, torch.__version__, transformers.__version__, torch.backends.cpu.get_cpu_capability()]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _inputs_digest(encode: Callable[[list[str], int], dict], texts: tuple[str, ...], max_len: int) -> str:
    enc = encode(list(texts), max_len)
    h = hashlib.sha256(f"{max_len}|{len(texts)}|".encode())
    h.update("\x00".join(texts).encode())  # the texts themselves, and what the tokenizer makes of them
    for k in sorted(enc):
        h.update(f"|{k}|{tuple(enc[k].shape)}|".encode())
        h.update(_tensor_bytes(enc[k]))
    return h.hexdigest()


class EmbedCache:
    """Embeddings per (network, inputs, code) key: in memory for the run, and in ``directory`` when given."""

    def __init__(self, directory: Path | None = None, embed: Callable | None = None):
        from .quality import embed_texts

        self.directory = Path(directory) / "embeddings" if directory is not None else None
        self._embed = embed or embed_texts
        self._memory: dict[str, torch.Tensor] = {}
        self.computed = 0  # embeddings computed (misses), for the run's log and the tests
        self.loaded = 0  # embeddings read from disk

    def key(self, net: nn.Module, encode: Callable[[list[str], int], dict], texts: tuple[str, ...], max_len: int) -> str | None:
        """The cache key of ``net``'s embeddings of ``texts``, or None where ``net`` cannot be cached."""
        digest = network_digest(net)
        if digest is None:
            return None
        parts = (digest, _inputs_digest(encode, texts, max_len), _code_version(), str(torch.get_num_threads()))
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    def embed_texts(self, net: nn.Module, encode: Callable[[list[str], int], dict], texts: tuple[str, ...],
                    max_len: int) -> torch.Tensor:
        """``quality.embed_texts(net, encode, texts, max_len)``, from the cache where the same key was computed."""
        key = self.key(net, encode, texts, max_len) if texts else None
        if key is None:
            self.computed += 1
            return self._embed(net, encode, texts, max_len)
        if key in self._memory:
            return self._memory[key]
        emb = self._load(key)
        if emb is None:
            self.computed += 1
            emb = self._embed(net, encode, texts, max_len)
            self._store(key, emb)
        self._memory[key] = emb
        return emb

    def _path(self, key: str) -> Path | None:
        return self.directory / key[:2] / f"{key}.pt" if self.directory is not None else None

    def _load(self, key: str) -> torch.Tensor | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            emb = torch.load(path, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a damaged file is a miss, recomputed and rewritten
            log.warning("embedding cache file %s unreadable (%s): recomputing", path, exc)
            return None
        self.loaded += 1
        return emb

    def _store(self, key: str, emb: torch.Tensor) -> None:
        path = self._path(key)
        if path is None:
            return
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            os.close(fd)
            torch.save(emb.clone(), tmp)
            os.replace(tmp, path)  # atomic: a concurrent reader sees the whole file or none
        except OSError as exc:
            log.warning("embedding cache not written to %s (%s); the run goes on without it", path, exc)
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
