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
import time
from pathlib import Path

import torch

from .base import Runner, Runtime, Variant, package_versions
from .onnx_runtime import export

__all__ = ["INSTALL_HINT", "OpenVinoFp32", "OvRunner", "RUNTIME", "compile_ir", "ov_unavailable"]

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


class OvRunner(Runner):
    """A compiled OpenVINO model on a fixed batch (one infer request, reused)."""

    def __init__(self, compiled, inputs: dict[str, torch.Tensor], artifact: Path, info: str, config: dict | None = None):
        self.compiled, self.artifact, self.info, self.device = compiled, Path(artifact), info, "cpu"
        self.config = dict(config or {})
        self.names = [p.get_any_name() for p in compiled.inputs]
        self.request = compiled.create_infer_request()
        self.feed = self._feed(inputs)

    def _feed(self, inputs: dict[str, torch.Tensor]) -> dict:
        missing = [n for n in self.names if n not in inputs]
        if missing:
            raise ValueError(f"the OpenVINO model needs input(s) {', '.join(missing)} that the batch does not have")
        return {n: inputs[n].detach().cpu().numpy() for n in self.names}

    def __call__(self) -> None:
        self.request.infer(self.feed)

    def timed(self) -> float:
        t0 = time.perf_counter()
        self()
        return time.perf_counter() - t0

    def serving_files(self, directory: Path) -> dict:
        """The IR files (model.xml + .bin) the CPU plugin compiles, its config, and the fixed batch."""
        inputs = Path(directory) / "inputs.pt"
        torch.save({k: torch.from_numpy(v) for k, v in self.feed.items()}, inputs)
        return {"kind": "openvino", "path": str(self.artifact / "model.xml"), "inputs": str(inputs),
                "config": self.config, "imports": ["openvino"], "device": "cpu"}

    def outputs(self, inputs: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        feed = self.feed if inputs is None else self._feed(inputs)
        result = self.compiled.create_infer_request().infer(feed)
        return torch.from_numpy(next(iter(result.values())).copy()).float()


def compile_ir(onnx_path: Path, ir_path: Path, threads: int, extra: dict | None = None):
    """Convert an ONNX file to IR at ``ir_path`` (.xml + .bin) and compile it for CPU with f32 precision,
    latency hint, one stream, ``threads`` threads and ``extra`` properties; returns (compiled, config)."""
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_path)), str(ir_path), compress_to_fp16=False)
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
              "INFERENCE_NUM_THREADS": str(threads), **(extra or {})}
    core = ov.Core()
    return core.compile_model(core.read_model(str(ir_path)), "CPU", config), config


class OpenVinoFp32(Runtime):
    name = "openvino"
    help = f"ONNX export -> OpenVINO IR, CPU plugin in f32 (optional: {INSTALL_HINT}), vs dense torch"
    baseline_runtime = "torch-dense"
    fp32_tolerance = 1e-4

    def unavailable(self, device: str) -> str | None:
        return ov_unavailable(self.name, device)

    def incompatible(self, case) -> str | None:
        if case.dtype != "float32":
            return f"{self.name} converts the float32 export; use dtype float32"
        return None

    def versions(self) -> dict[str, str | None]:
        return package_versions("openvino")

    def prepare(self, variant: Variant, workdir: Path, device: str) -> OvRunner:
        workdir = Path(workdir) / "openvino"
        workdir.mkdir(parents=True, exist_ok=True)
        onnx_path = export(variant.baked(), variant.inputs, workdir.parent / "model.fp32.onnx")
        compiled, config = compile_ir(onnx_path, workdir / "model.xml", torch.get_num_threads())
        onnx_path.unlink()
        info = "openvino CPU; " + "; ".join(f"{k}={v}" for k, v in config.items())
        return OvRunner(compiled, variant.inputs, workdir, info, config)


RUNTIME = OpenVinoFp32()
