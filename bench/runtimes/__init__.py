"""Runtimes: how a variant executes. One module per runtime; this registry maps names to modules.

A runtime module defines ``NAME``, ``HELP``, ``BASELINE`` (the runtime whose dense model is its
baseline; None = itself), ``TOLERANCE`` (max abs diff allowed against torch-masked),
``unavailable(device) -> str | None`` and ``prepare(variant, workdir, device) -> Runner``; optionally
``incompatible(case) -> str | None`` (a dtype or method the runtime cannot run: the case is skipped).
"""

from __future__ import annotations

import difflib
import importlib
from types import ModuleType

from .base import Runner, RuntimeUnavailable, TorchRunner, Variant

__all__ = ["RUNTIMES", "Runner", "UnknownRuntime", "RuntimeUnavailable", "TorchRunner", "Variant", "get_runtime", "runtime_names"]

# runtime name -> module under bench.runtimes, or an absolute module path for a runtime that lives
# elsewhere (a plugin, or a test-only runtime); add a line to add a runtime
RUNTIMES: dict[str, str] = {
    "torch-masked": "torch_masked",
    "torch-dense": "torch_dense",
    "torch-csr": "torch_csr",
    "torch-bsr": "torch_bsr",
    "torch-semi24": "torch_semi24",
    "onnxruntime": "onnx_runtime",
    "onnxruntime-vs-torch": "onnx_vs_torch",
}


class UnknownRuntime(ValueError):
    """An unknown runtime name."""


def runtime_names() -> list[str]:
    return list(RUNTIMES)


def get_runtime(name: str) -> ModuleType:
    if name not in RUNTIMES:
        near = difflib.get_close_matches(name, list(RUNTIMES), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise UnknownRuntime(f"unknown runtime {name!r}{hint}; use one of {', '.join(RUNTIMES)}")
    module = RUNTIMES[name]
    return importlib.import_module(module if "." in module else f"{__name__}.{module}")
