"""openvino: the baked variant's ONNX export (the ``onnxruntime`` runtime's exporter, checked) converted
with ``openvino.convert_model``, saved as OpenVINO IR (the ``.xml`` + ``.bin`` pair is the artifact) and
compiled for the CPU plugin with ``INFERENCE_PRECISION_HINT=f32`` (on CPUs with AMX or avx512_bf16 the
plugin otherwise runs bf16 by default, which would make this row a dtype change, not a runtime),
``PERFORMANCE_HINT=LATENCY``, one stream and the case's thread count. Baseline: dense torch.

An optional extra: ``pip install 'prunebench[openvino]'``; without it the case is skipped with that hint.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Callable

import torch

from .base import Runtime, Variant, package_versions
from .onnx_runtime import GraphRunner, export

__all__ = ["INSTALL_HINT", "OpenVinoFp32", "OpenVinoRuntime", "OvRunner", "OV_PRECISIONS", "RUNTIME", "chosen_precision", "compile_ir",
           "ov_unavailable"]

log = logging.getLogger("bench.runtimes.openvino")

INSTALL_HINT = "pip install 'prunebench[openvino]'"


def ov_unavailable(name: str, device: str) -> str | None:
    """Why an OpenVINO runtime cannot run on ``device`` here (package missing, not the CPU), or None."""
    if importlib.util.find_spec("openvino") is None:
        return f"{name} needs the optional openvino package, which is not installed ({INSTALL_HINT})"
    for pkg in ("onnx", "onnxruntime"):
        if importlib.util.find_spec(pkg) is None:
            return f"{name} converts the ONNX export and needs {pkg} ({INSTALL_HINT})"
    if device != "cpu":
        return f"{name} runs OpenVINO's CPU plugin here, not {device}; use device cpu"
    return None


class OvRunner(GraphRunner):
    """A compiled OpenVINO model on a fixed batch (one infer request, reused)."""

    engine = "OpenVINO"

    def __init__(self, compiled, inputs: dict[str, torch.Tensor], artifact: Path, info: str, config: dict | None = None):
        self.compiled, self.artifact, self.info, self.device = compiled, Path(artifact), info, "cpu"
        self.config = dict(config or {})
        self.input_names = [p.get_any_name() for p in compiled.inputs]
        self.request = compiled.create_infer_request()
        self.feed = self._feed(inputs)

    def __call__(self) -> None:
        self.request.infer(self.feed)

    def serving_files(self, directory: Path) -> dict:
        """The IR files (model.xml + .bin) the CPU plugin compiles, its config, and the fixed batch."""
        return {"kind": "openvino", "path": str(self.artifact / "model.xml"), "inputs": self._save_feed(directory),
                "config": self.config, "imports": ["openvino"], "device": "cpu"}

    def outputs(self, inputs: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        feed = self.feed if inputs is None else self._feed(inputs)
        result = self.compiled.create_infer_request().infer(feed)
        return torch.from_numpy(next(iter(result.values())).copy()).float()

    def run(self, inputs: dict[str, torch.Tensor]) -> None:
        """One call on ``inputs`` through the reused infer request (the IR keeps the export's dynamic axes)."""
        self.request.infer(self._feed(inputs))


def compile_ir(onnx_path: Path, ir_path: Path, threads: int, extra: dict | None = None, precision: str | None = "f32",
               transform: Callable | None = None):
    """Convert an ONNX file to IR at ``ir_path`` (.xml + .bin), after ``transform`` (an ``openvino.Model`` ->
    ``openvino.Model`` step, e.g. quantization) where given, and compile it for CPU with ``precision`` as the
    INFERENCE_PRECISION_HINT (None: the plugin's default, bf16 on CPUs with AMX / avx512_bf16), latency hint, one
    stream, ``threads`` threads and ``extra`` properties; returns (compiled, config)."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    ov.save_model(transform(model) if transform else model, str(ir_path), compress_to_fp16=False)
    config = {**({"INFERENCE_PRECISION_HINT": precision} if precision else {}), "PERFORMANCE_HINT": "LATENCY",
              "NUM_STREAMS": "1", "INFERENCE_NUM_THREADS": str(threads), **(extra or {})}
    core = ov.Core()
    return core.compile_model(core.read_model(str(ir_path)), "CPU", config), config


# the CPU plugin's precision names (``openvino.Type.get_type_name()``) -> prunebench's dtype names
OV_PRECISIONS = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}


def chosen_precision(compiled) -> str:
    """The OpenVINO name (``f32``, ``bf16``, ``f16``) of the precision the CPU plugin compiled ``compiled`` in: its
    INFERENCE_PRECISION_HINT property, which reports the plugin's own choice where none was asked for."""
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    return hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)


class OpenVinoRuntime(Runtime):
    """What the OpenVINO runtimes share: the optional package and the CPU plugin (``ov_unavailable``), the
    float32 export as their input, dense torch as the baseline, and ``prepare``: the baked variant's ONNX
    export, made by ``graph`` into the ONNX file to convert (here the export itself), converted to IR, made by
    ``ir`` into the model to save (here the converted one), compiled at ``precision_hint`` with ``properties()``
    on top of ``compile_ir``'s; the ONNX files are then deleted, and the IR directory is the artifact. Where
    ``precision_hint`` is None the plugin picks the precision: the runner's info names it, and the runner's
    ``computes`` is its dtype where that is not float32 (the equality gate judges that precision)."""

    baseline_runtime = "torch-dense"
    uses_export = "converts"  # what the runtime does with the float32 export, for the dtype message
    info_prefix = "openvino CPU"  # the start of the runner's info, before the compile config
    precision_hint: str | None = "f32"  # INFERENCE_PRECISION_HINT; None: the plugin's default (bf16 where the CPU has it)

    def unavailable(self, device: str) -> str | None:
        return ov_unavailable(self.name, device)

    def incompatible(self, case) -> str | None:
        if case.dtype != "float32":
            return f"{self.name} {self.uses_export} the float32 export; use dtype float32"
        return None

    def versions(self) -> dict[str, str | None]:
        return package_versions("openvino")

    def graph(self, fp32: Path, variant: Variant) -> Path:
        """The ONNX file to convert, made from the variant's float32 export ``fp32``: here that export itself."""
        return fp32

    def ir(self, model, variant: Variant):
        """The ``openvino.Model`` to save and compile, made from the converted ``model``: here that model itself."""
        return model

    def properties(self) -> dict[str, str]:
        """CPU plugin properties beyond ``compile_ir``'s: none here."""
        return {}

    def prepare(self, variant: Variant, workdir: Path, device: str) -> OvRunner:
        workdir = Path(workdir) / "openvino"
        workdir.mkdir(parents=True, exist_ok=True)
        fp32 = export(variant.baked(), variant.inputs, workdir.parent / "model.fp32.onnx")
        src = self.graph(fp32, variant)
        compiled, config = compile_ir(src, workdir / "model.xml", torch.get_num_threads(), self.properties(),
                                      self.precision_hint, lambda model: self.ir(model, variant))
        fp32.unlink()
        if src != fp32:
            src.unlink()
        info = f"{self.info_prefix}; " + "; ".join(f"{k}={v}" for k, v in config.items())
        chosen = chosen_precision(compiled)
        if self.precision_hint is None:
            info += f"; INFERENCE_PRECISION_HINT={chosen} (the plugin's default on this CPU)"
        if chosen not in OV_PRECISIONS:
            raise RuntimeError(f"{self.name}: the CPU plugin compiled in {chosen}, a precision prunebench has no equality "
                               f"rule for (known: {', '.join(OV_PRECISIONS)})")
        runner = OvRunner(compiled, variant.inputs, workdir, info, config)
        runner.computes = None if OV_PRECISIONS[chosen] == "float32" else OV_PRECISIONS[chosen]
        return runner


class OpenVinoFp32(OpenVinoRuntime):
    name = "openvino"
    help = f"ONNX export -> OpenVINO IR, CPU plugin in f32 (optional: {INSTALL_HINT}), vs dense torch"
    fp32_tolerance = 1e-4


RUNTIME = OpenVinoFp32()
