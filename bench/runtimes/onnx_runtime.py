"""onnxruntime: the baked variant exported to ONNX (checked), run by ONNX Runtime with every graph
optimisation on and the intra-op thread count of the case (the same as torch's). Baseline: the dense
model in ONNX Runtime (does pruning pay *in ORT*?); ``onnxruntime-vs-torch`` compares with dense torch.

Export: TorchScript exporter (``dynamo=False``) through a positional wrapper in eval mode, with dynamic
batch and sequence axes, and ``token_type_ids`` always an explicit input where the model takes one
(exporting a BertModel without it gives wrong outputs). A wrapper left in training mode (a fresh
``nn.Module`` is) exports with dropout active: the wrapper is put in eval mode.

Session: ORT_ENABLE_ALL, ``intra_op_num_threads`` = torch's thread count for the case, sequential
execution, and no spin-waiting of idle workers (spinning workers slow down the interleaved baseline).
CPUExecutionProvider, or CUDAExecutionProvider (I/O bound on the GPU) where the build has it.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from .base import Runner, Runtime, RuntimeUnavailable, Variant, package_versions

__all__ = ["OPSET", "OUTPUT", "RUNTIME", "GraphRunner", "OnnxExportError", "OnnxRuntime", "OrtRunner", "export", "export_checked",
           "ort_unavailable", "ort_versions"]

log = logging.getLogger("bench.runtimes.onnx_runtime")

OPSET = 17
OUTPUT = "last_hidden_state"


def ort_unavailable(device: str) -> str | None:
    """Why ONNX Runtime cannot run on ``device`` here (package missing, no CUDA provider), or None."""
    for pkg in ("onnx", "onnxruntime"):
        if importlib.util.find_spec(pkg) is None:
            return f"the {pkg} package is not installed (pip install 'prunebench[onnx]')"
    if device == "cuda":
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return f"this onnxruntime build has no CUDAExecutionProvider (providers: {', '.join(ort.get_available_providers())}); install onnxruntime-gpu"
    return None


def ort_versions() -> dict[str, str | None]:
    """The onnxruntime version (None where not installed): the env key every run has recorded."""
    return package_versions("onnxruntime")


class _Positional(nn.Module):
    """Calls the encoder with keyword arguments from positional ONNX inputs; returns last_hidden_state."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, args))).last_hidden_state


def export(model: nn.Module, inputs: dict[str, torch.Tensor], path: Path) -> Path:
    """Export ``model`` (fp32, CPU) to ``path`` with dynamic batch/seq axes, then run the ONNX checker."""
    import onnx

    inputs = dict(inputs)
    if "token_type_ids" in inspect.signature(model.forward).parameters and "token_type_ids" not in inputs:
        inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
    names = list(inputs)
    axes = {k: {0: "batch", 1: "seq"} for k in [*names, OUTPUT]}
    wrapper = _Positional(model.float().cpu().eval(), names).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings from transformers' shape checks; the checker and the equality gate judge the result
        torch.onnx.export(wrapper, tuple(inputs[k] for k in names), str(path), input_names=names, output_names=[OUTPUT],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    onnx.checker.check_model(str(path))
    return Path(path)


class GraphRunner(Runner):
    """What the runners of an exported graph share (ONNX Runtime here, OpenVINO in ``openvino_fp32``): numpy
    feeds built from a batch by the graph's input names (``input_names``; ``engine`` names the graph in the
    error for an input the batch lacks), a wall-clock ``timed``, and the fixed batch saved for the memory child."""

    engine = "ONNX"
    input_names: list[str]
    feed: dict

    def _feed(self, inputs: dict[str, torch.Tensor]) -> dict:
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise ValueError(f"the {self.engine} model needs input(s) {', '.join(missing)} that the batch does not have")
        return {n: inputs[n].detach().cpu().numpy() for n in self.input_names}

    def timed(self) -> float:
        """Seconds for one call, wall clock: the engine's call returns once its work (on any device) is done."""
        t0 = time.perf_counter()
        self()
        return time.perf_counter() - t0

    def _save_feed(self, directory: Path) -> str:
        """Write the fixed batch (``self.feed``) as torch tensors to ``directory``/inputs.pt; returns its path."""
        inputs = Path(directory) / "inputs.pt"
        torch.save({k: torch.from_numpy(v) for k, v in self.feed.items()}, inputs)
        return str(inputs)


class OrtRunner(GraphRunner):
    """An ONNX Runtime session on a fixed batch. On CUDA, inputs and output stay on the GPU (I/O binding)."""

    def __init__(self, path: Path, inputs: dict[str, torch.Tensor], device: str, threads: int):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        # ORT's idle workers spin-wait by default and then steal the cores from whatever runs next: in paired,
        # interleaved timing that is the baseline (dense torch was measured up to 50x slower right after ORT).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), so, providers=providers)
        used = self.session.get_providers()
        if device == "cuda" and "CUDAExecutionProvider" not in used:
            raise RuntimeUnavailable(f"ONNX Runtime did not start its CUDAExecutionProvider (got {', '.join(used)})")
        self.device, self.artifact, self.threads = device, Path(path), threads
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.feed = self._feed(inputs)
        self.binding = None
        if device == "cuda":
            self.binding = self.session.io_binding()
            for k, v in self.feed.items():
                self.binding.bind_ortvalue_input(k, ort.OrtValue.ortvalue_from_numpy(v, "cuda", 0))
            self.binding.bind_output(OUTPUT, "cuda")
        self.info = f"providers={','.join(used)}; opset={OPSET}; graph_optimization=ORT_ENABLE_ALL; intra_op_threads={threads}; no spinning"

    def __call__(self) -> None:
        if self.binding is not None:
            self.session.run_with_iobinding(self.binding)
        else:
            self.session.run([OUTPUT], self.feed)

    def serving_files(self, directory: Path) -> dict:
        """The ONNX file itself, and the fixed batch beside it."""
        return {"kind": "onnx", "path": str(self.artifact), "inputs": self._save_feed(directory), "imports": ["onnxruntime"],
                "device": self.device}

    def outputs(self, inputs: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        feed = self.feed if inputs is None else self._feed(inputs)
        return torch.from_numpy(self.session.run([OUTPUT], feed)[0]).float()

    def run(self, inputs: dict[str, torch.Tensor]) -> None:
        """One call on ``inputs`` (the export's batch and sequence axes are dynamic), on CPU feeds."""
        self.session.run([OUTPUT], self._feed(inputs))


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    help = "ONNX export of the baked variant, ONNX Runtime (all graph optimisations), vs dense ORT"
    fp32_tolerance = 1e-4

    def unavailable(self, device: str) -> str | None:
        return ort_unavailable(device)

    def incompatible(self, case) -> str | None:
        if case.dtype != "float32":
            return f"{case.runtime} exports float32 only; use dtype float32"
        return None

    def versions(self) -> dict[str, str | None]:
        return ort_versions()

    def prepare(self, variant: Variant, workdir: Path, device: str) -> OrtRunner:
        path = export(variant.baked(), variant.inputs, Path(workdir) / "model.onnx")
        return OrtRunner(path, variant.inputs, device, torch.get_num_threads())


RUNTIME = OnnxRuntime()


class OnnxExportError(ValueError):
    """An ONNX file that cannot be written here or does not compute what torch does; the message names the fix."""


def export_checked(model: nn.Module, inputs: dict[str, torch.Tensor], path: Path) -> float:
    """Export ``model`` to ``path`` (``prunebench prune --format onnx``) and check ONNX Runtime's outputs against
    torch's on ``inputs`` before calling it done: returns their max abs difference; raises OnnxExportError when
    ONNX Runtime is missing, the exporter fails, or the outputs differ by more than 1e-4."""
    reason = ort_unavailable("cpu")
    if reason:
        raise OnnxExportError(f"--format onnx needs ONNX Runtime: {reason}; pip install 'prunebench[onnx]' or use --format safetensors")
    try:
        export(model, inputs, path)
    except Exception as exc:  # an exporter failure is the user's dead end: say it in one line
        raise OnnxExportError(f"ONNX export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
                              "use --format safetensors") from None
    with torch.inference_mode():
        ref = model(**inputs).last_hidden_state
    diff = float((OrtRunner(path, inputs, "cpu", torch.get_num_threads()).outputs() - ref).abs().max())
    if not diff <= 1e-4:
        raise OnnxExportError(f"ONNX Runtime outputs differ from torch by {diff:.3g} (> 1e-4); the export is wrong, "
                              "use --format safetensors")
    return diff
