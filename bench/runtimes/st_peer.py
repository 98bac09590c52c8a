"""The peer: sentence-transformers' own backends (``st-torch``, ``st-onnx``, ``st-onnx-qint8``, ``st-openvino``)
as runtimes of the same run, so a report can say how prunebench's best row compares with what a user gets
from sentence-transformers alone, measured, not quoted.

Their ONNX/OpenVINO extras pin transformers < 4.58, so they run in their own cached venv
(``bench.launch.peer_venv``) in a child process (``bench/launch/peer_child.py``). The paired protocol needs
both sides in one process: the child times the peer backend against sentence-transformers' torch backend in
fp32 (the same dense model as the run's baseline) with ``bench.measure.paired`` and the plan's parameters,
and returns the raw rounds; this runner turns them into a :class:`Latency` (ratio and CI) as every other row.
The equality gate and quality use the child's outputs on our own tokenized batches, so the peer is scored on
the same items by the same meter. Dense only: the peer cannot prune.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

import bench
from bench.launch.peer_venv import BUILD_COMMAND, peer_python, peer_venv_dir
from bench.measure.latency import Latency

from .base import Runner, Runtime, Variant
from .int8 import QUALITY_FLOOR

__all__ = ["CHILD", "quantize_config", "ST_ONNX", "ST_ONNX_QINT8", "ST_OPENVINO", "ST_TORCH", "PeerChildError", "PeerRunner", "StPeerRuntime"]

log = logging.getLogger("bench.runtimes.st_peer")

CHILD = Path(__file__).resolve().parents[1] / "launch" / "peer_child.py"
QUANTIZE = "per-cpu"  # sentence-transformers' ONNX dynamic-quantization config, chosen as its docs advise per CPU


def quantize_config(flags: tuple[str, ...] | None = None) -> str:
    """The sentence-transformers ``export_dynamic_quantized_onnx_model`` config for this CPU, as its docs advise:
    ``avx512_vnni`` where the CPU has VNNI, ``avx512`` with AVX-512 only, ``arm64`` on ARM, else ``avx2``."""
    import platform

    from bench.env import cpu_flags

    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    flags = set(cpu_flags() if flags is None else flags)
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


class PeerChildError(RuntimeError):
    """The peer child failed a request (its error), or died (its last stderr line)."""


class PeerChild:
    """The child process in the peer venv and its JSON-line protocol (``bench/launch/peer_child.py``)."""

    def __init__(self, python: Path, child: Path, workdir: Path):
        # the child runs in it, so absolute (a relative path would name a hub repo there); not resolved: a plain
        # symlink to an odd path (_plain_path) must stay plain
        self.workdir = Path(workdir).absolute()
        self.log_path = self.workdir / "peer-child.log"
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
        env["PYTHONPATH"] = str(Path(bench.__file__).resolve().parents[1])  # bench.measure.paired, nothing else
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([str(python), "-u", str(child)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, text=True, env=env, cwd=self.workdir)
        self._n = 0

    def _last_error_line(self) -> str:
        lines = [ln.strip() for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        return lines[-1][:300] if lines else "no output"

    def request(self, op: str, **fields: Any) -> dict:
        """Send one request; its reply, or :class:`PeerChildError` with the child's error."""
        try:
            self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            self.proc.wait(timeout=30)
            raise PeerChildError(f"the peer child exited {self.proc.returncode} during {op!r}: {self._last_error_line()}")
        reply = json.loads(line)
        if "error" in reply:
            raise PeerChildError(f"the peer child failed {op!r}: {reply['error']}")
        return reply

    def save(self, inputs: dict[str, torch.Tensor]) -> str:
        """Write a token batch where the child reads it; returns the path."""
        self._n += 1
        path = self.workdir / f"in-{self._n % 2}.npz"
        np.savez(path, **{k: v.cpu().numpy() for k, v in inputs.items()})
        return str(path)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
        self._log.close()


class PeerRunner(Runner):
    """A sentence-transformers backend served by the peer child. ``outputs`` are its last hidden states on our
    tokenized batches; ``measure_paired`` times it in the child against the peer's own torch fp32."""

    def __init__(self, child: PeerChild, inputs: dict[str, torch.Tensor], loaded: dict, backend: str, dense: torch.nn.Module):
        self.child = child
        self.inputs = inputs
        self.backend, self._dense = backend, dense
        self.info = loaded["info"]
        self.versions = loaded.get("versions", {})
        self.artifact = Path(loaded["artifact"]) if loaded.get("artifact") else child.workdir / "model"

    def __call__(self) -> None:
        self.outputs()

    def outputs(self, inputs: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        out = self.child.workdir / "out.npy"
        self.child.request("outputs", inputs=self.child.save(self.inputs if inputs is None else inputs), out=str(out))
        return torch.from_numpy(np.load(out)).float()

    def serving_files(self, directory: Path) -> dict:
        """For the memory child, which runs in prunebench's venv: the peer's own ONNX file (our ONNX Runtime) or
        OpenVINO IR (our OpenVINO); for st-torch the dense fp32 module it loads from the same safetensors (the
        same tensors in torch eager: what the peer holds, measured by our torch, not the peer venv's)."""
        feed = Path(directory) / "inputs.pt"
        torch.save(self.inputs, feed)
        if self.backend == "onnx":
            return {"kind": "onnx", "path": str(self.artifact), "inputs": str(feed), "imports": ["onnxruntime"],
                    "device": "cpu"}
        if self.backend == "openvino":
            return {"kind": "openvino", "path": str(self.artifact), "inputs": str(feed), "imports": ["openvino"],
                    "config": {"INFERENCE_NUM_THREADS": str(torch.get_num_threads())}, "device": "cpu"}
        path = Path(directory) / "serve.pt"
        torch.save({"net": self._dense, "inputs": self.inputs}, path)
        return {"kind": "torch", "path": str(path), "imports": [type(self._dense).__module__], "device": "cpu"}

    def measure_paired(self, **protocol: Any) -> Latency:
        """The paired rounds timed in the child (peer backend vs sentence-transformers torch fp32, same batch),
        as a Latency; ``protocol`` is ``bench.measure.paired.measure_paired``'s keywords (target, time_cap_s, ...)."""
        r = self.child.request("paired", inputs=self.child.save(self.inputs), protocol=protocol)
        return Latency(tuple(r["variant_s"]), tuple(r["baseline_s"]), protocol.get("target"), int(r["block_pairs"]),
                       float(r["alpha"]), float(r["band"]), r["stop"])

    def __del__(self) -> None:
        child = getattr(self, "child", None)
        if child is not None:
            child.close()


def _st_dir(model: str) -> Path:
    """The directory the peer loads ``model`` from (the bundled MiniLM's package directory, or the model's own),
    without loading it; a random-init architecture has none (an empty path)."""
    if model == "minilm":
        from bench.models import _minilm_dir

        return _minilm_dir()
    return Path(model) if Path(model).is_dir() else Path()


def _plain_path(workdir: Path) -> Path:
    """``workdir``, or where its path holds a character a tool reads specially (optimum takes ``dir@x`` for hub repo
    ``dir`` at revision ``x``; OpenVINO splits at commas: advise names its workdirs after candidates such as
    ``dense@0.00``) a symlink to it from a plain temporary directory, so every path the peer sees is plain."""
    if not any(ch in str(workdir) for ch in "@,"):
        return workdir
    link = Path(tempfile.mkdtemp(prefix="prunebench-peer-")) / "work"
    link.symlink_to(workdir, target_is_directory=True)
    return link


class StPeerRuntime(Runtime):
    """One sentence-transformers backend, run by the peer child in the peer venv."""

    baseline_runtime = None
    fp32_tolerance = 1e-4  # the same model in another transformers / ORT: as onnxruntime's own fp32 row

    def __init__(self, name: str, backend: str, quantize: str | None = None, floor: float | None = None,
                 help: str = ""):  # noqa: A002
        self.name, self.backend, self.quantize, self.quality_floor, self.help = name, backend, quantize, floor, help
        # qint8: int8 MatMuls; OpenVINO runs bf16 where the CPU has it (the roofline falls back to fp32 where not)
        self.compute_dtype = "int8" if quantize else "bfloat16" if backend == "openvino" else None

    def unavailable(self, device: str) -> str | None:
        if device != "cpu":
            return f"{self.name} runs the peer on CPU only"
        if peer_python() is None:
            return (f"the peer's venv is not built ({peer_venv_dir()}); build it once with `{BUILD_COMMAND}` "
                    "(a few hundred MB, cached)")
        return None

    def unserved(self, scenario: str) -> str | None:
        if scenario != "fixed":
            return (f"{self.name} is timed inside the peer's own process on the fixed batch only; the {scenario} "
                    "scenario is not implemented there (use scenario fixed)")
        return None

    def incompatible(self, case) -> str | None:
        if not (_st_dir(case.model) / "modules.json").is_file():
            return (f"{self.name} needs a sentence-transformers model directory (with modules.json); "
                    f"{case.model} is not one")
        if case.recipe.method != "dense":
            return f"{self.name} runs the dense model only: sentence-transformers cannot prune"
        allowed = ("float32", "bfloat16") if self.backend == "torch" else ("float32",)
        if case.dtype not in allowed:
            return f"{self.name} runs {' or '.join(allowed)} only; use --dtype float32"
        return None

    def versions(self) -> dict[str, str | None]:
        return {"peer_venv": peer_venv_dir().name}

    def prepare(self, variant: Variant, workdir: Path, device: str) -> Runner:
        python = peer_python()
        if python is None:
            raise PeerChildError(self.unavailable(device) or "the peer venv is missing")
        model_dir = Path(variant.loaded.source)
        if not (model_dir / "modules.json").is_file():
            raise PeerChildError(f"{self.name} needs the model as a local sentence-transformers directory "
                                 f"(with modules.json); {variant.loaded.name} comes from {variant.loaded.source}")
        workdir = _plain_path(Path(workdir).resolve())  # absolute: the child's cwd is the workdir
        child = PeerChild(python, CHILD, workdir)
        try:
            quantize = quantize_config() if self.quantize == QUANTIZE else self.quantize
            loaded = child.request("load", model=str(model_dir), backend=self.backend, quantize=quantize,
                                   dtype=variant.dtype, threads=torch.get_num_threads(), workdir=str(workdir))
        except PeerChildError:
            child.close()
            raise
        return PeerRunner(child, variant.inputs, loaded, self.backend, variant.loaded.model)


# one module, four runtimes: the registry names each as "st_peer:<ATTRIBUTE>"
ST_TORCH = StPeerRuntime("st-torch", "torch", help="sentence-transformers' torch backend (peer venv)")
ST_ONNX = StPeerRuntime("st-onnx", "onnx", help="sentence-transformers' ONNX backend, fp32 (peer venv)")
ST_ONNX_QINT8 = StPeerRuntime("st-onnx-qint8", "onnx", QUANTIZE, QUALITY_FLOOR,
                              help="sentence-transformers' ONNX backend, dynamic int8 (its config for this CPU: avx512_vnni, avx512, "
                                   "avx2 or arm64; peer venv)")
ST_OPENVINO = StPeerRuntime("st-openvino", "openvino", floor=QUALITY_FLOOR,
                            help="sentence-transformers' OpenVINO backend (bf16 on AMX by default: a quality floor)")
