"""Runtimes: how a variant executes. One module per runtime; this registry maps names to modules.

A runtime module defines a :class:`bench.runtimes.base.Runtime` subclass and ``RUNTIME``, an instance of
it (see ``base.py`` for the protocol). ``ALIASES`` keeps old runtime names that are now a runtime plus an
explicit baseline working in plans and on the command line.
"""

from __future__ import annotations

import difflib
import importlib

from .base import Runner, Runtime, RuntimeUnavailable, TorchRunner, Variant

__all__ = ["ALIASES", "RUNTIMES", "Runner", "Runtime", "UnknownRuntime", "RuntimeUnavailable", "TorchRunner", "Variant",
           "get_runtime", "runtime_names"]

# runtime name -> module under bench.runtimes, or an absolute module path for a runtime that lives
# elsewhere (a plugin, or a test-only runtime), optionally ":ATTRIBUTE" where a module holds several
# runtimes (default RUNTIME); add a line to add a runtime
RUNTIMES: dict[str, str] = {
    "torch-masked": "torch_masked",
    "torch-dense": "torch_dense",
    "torch-csr": "torch_csr",
    "torch-bsr": "torch_bsr",
    "torch-semi24": "torch_semi24",
    "onnxruntime": "onnx_runtime",
    "onnxruntime-int8": "onnx_int8",
    "torch-int8": "torch_int8",
    "torch-compile": "torch_compile",
    "openvino": "openvino_fp32",
    "openvino-sparse-int8": "openvino_sparse_int8",
    "openvino-auto": "openvino_auto",
    "openvino-int8": "openvino_int8",
    # the peer, sentence-transformers' own backends in their own venv: "module:ATTRIBUTE" (one module, four runtimes)
    "st-torch": "st_peer:ST_TORCH", "st-onnx": "st_peer:ST_ONNX", "st-onnx-qint8": "st_peer:ST_ONNX_QINT8",
    "st-openvino": "st_peer:ST_OPENVINO",
}

# old name -> (runtime, baseline runtime): `onnxruntime-vs-torch` was ORT with dense torch as its baseline
ALIASES: dict[str, tuple[str, str]] = {"onnxruntime-vs-torch": ("onnxruntime", "torch-dense")}


class UnknownRuntime(ValueError):
    """An unknown runtime name."""


def runtime_names() -> list[str]:
    return list(RUNTIMES)


def get_runtime(name: str) -> Runtime:
    """The runtime registered as ``name`` (its module's ``RUNTIME``)."""
    if name not in RUNTIMES:
        near = difflib.get_close_matches(name, list(RUNTIMES), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise UnknownRuntime(f"unknown runtime {name!r}{hint}; use one of {', '.join(RUNTIMES)}")
    module, _, attr = RUNTIMES[name].partition(":")
    mod = importlib.import_module(module if "." in module else f"{__name__}.{module}")
    runtime = getattr(mod, attr or "RUNTIME", None)
    if not isinstance(runtime, Runtime):
        raise TypeError(f"runtime module {mod.__name__} has no RUNTIME instance of bench.runtimes.base.Runtime; "
                        "define a Runtime subclass and RUNTIME = ThatClass()")
    return runtime
