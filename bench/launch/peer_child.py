"""The peer child: runs inside the peer venv (``bench.launch.peer_venv``) and serves one sentence-transformers
backend to the parent (``bench.runtimes.st_peer``) over a line protocol.

It imports nothing from prunebench but ``bench.measure.paired`` (pure Python + numpy: the same paired
protocol as every other row, not a copy), because the peer venv has its own, older transformers. Each
request is one JSON line on stdin; each reply one JSON line on the real stdout (library output goes to
stderr). Arrays travel as ``.npz`` / ``.npy`` files the parent names. Requests:

- ``load``: ``model`` (a sentence-transformers directory, copied to ``workdir`` so exports land there),
  ``backend`` (torch | onnx | openvino), ``quantize`` (an ONNX dynamic-quantization config such as avx2,
  or null), ``dtype``, ``threads``. Loads the peer backend and, as its paired baseline, the same model in
  sentence-transformers' torch backend in fp32.
- ``outputs``: token embeddings (last hidden state) of the batch in ``inputs`` written to ``out``.
- ``paired``: the peer backend timed against the torch fp32 baseline on the batch in ``inputs`` with
  ``bench.measure.paired.measure_paired`` and the parent's ``protocol`` parameters; replies the raw rounds.
- ``quit``.
A failure replies ``{"error": "..."}`` and the child keeps serving (the parent decides).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import traceback
from pathlib import Path

import numpy as np


def _forward(model, torch):
    """A function: numpy feed -> last hidden state (numpy fp32), through the model's first module (the
    Transformer module, which dispatches to the torch, ORT or OpenVINO model it wraps)."""
    first = model[0]

    def run(feed: dict) -> np.ndarray:
        features = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feed.items()}
        with torch.inference_mode():
            out = first(features)["token_embeddings"]
        return out.float().numpy() if hasattr(out, "float") else np.asarray(out, np.float32)
    return run


class Peer:
    """The loaded peer backend and its fp32 torch baseline."""

    def __init__(self) -> None:
        self.peer = self.base = None
        self.info = ""

    def load(self, req: dict) -> dict:
        import torch
        from sentence_transformers import SentenceTransformer, __version__

        torch.set_num_threads(int(req["threads"]))
        src = Path(req["workdir"]) / "model"
        if not src.exists():
            shutil.copytree(req["model"], src)
        base = SentenceTransformer(str(src), backend="torch", device="cpu")
        backend, quantize, threads = req["backend"], req.get("quantize"), int(req["threads"])
        artifact = None
        if backend == "torch":
            peer = SentenceTransformer(str(src), backend="torch", device="cpu")
            if req.get("dtype", "float32") != "float32":
                peer = peer.to(getattr(torch, req["dtype"]))
        elif backend == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            kwargs = {"provider": "CPUExecutionProvider", "session_options": options}
            exported = (src / "onnx" / "model.onnx").is_file()  # a second load in this workdir reads the first's export
            peer = SentenceTransformer(str(src), backend="onnx", device="cpu", model_kwargs=dict(kwargs))
            if not exported:  # saving over the file it loaded from raises SameFileError
                peer.save_pretrained(str(src))  # the fp32 export (the quantizer reads it)
            name = "model.onnx"
            if quantize:
                from sentence_transformers.backend import export_dynamic_quantized_onnx_model

                if not sorted((src / "onnx").glob(f"model_*_{quantize}.onnx")):
                    export_dynamic_quantized_onnx_model(peer, quantize, str(src))
                written = sorted((src / "onnx").glob(f"model_*_{quantize}.onnx"))  # q/qu: the config's weight dtype
                if not written:
                    raise FileNotFoundError(f"the {quantize} quantization wrote no onnx/model_*_{quantize}.onnx")
                name = written[0].name
                peer = SentenceTransformer(str(src), backend="onnx", device="cpu",
                                           model_kwargs={**kwargs, "file_name": f"onnx/{name}"})
                if Path(peer.transformers_model.session._model_path).name != name:
                    raise RuntimeError(f"sentence-transformers loaded {peer.transformers_model.session._model_path}, not {name}")
            artifact = str(src / "onnx" / name)
        elif backend == "openvino":
            exported = (src / "openvino" / "openvino_model.xml").is_file()
            peer = SentenceTransformer(str(src), backend="openvino", device="cpu",
                                       model_kwargs={"ov_config": {"INFERENCE_NUM_THREADS": str(threads)}})
            if not exported:  # writing the IR over the .bin it has mapped would kill this process (SIGBUS)
                peer.save_pretrained(str(src))
            artifact = str(src / "openvino" / "openvino_model.xml")
        else:
            raise ValueError(f"unknown peer backend {backend!r}")
        self.peer, self.base = _forward(peer, torch), _forward(base, torch)
        from importlib import metadata

        versions = {p: _version(metadata, p) for p in ("sentence-transformers", "transformers", "torch",
                                                          "onnxruntime", "openvino", "optimum", "optimum-intel")}
        self.info = (f"sentence-transformers {__version__} {backend}" + (f" qint8 ({quantize} config)" if quantize else "")
                     + " in the peer venv, timed against sentence-transformers torch fp32 of the same model; "
                     + ", ".join(f"{k} {v}" for k, v in versions.items() if v))
        return {"info": self.info, "versions": versions, "artifact": artifact}

    def outputs(self, req: dict) -> dict:
        feed = dict(np.load(req["inputs"]))
        np.save(req["out"], self.peer(feed))
        return {}

    def paired(self, req: dict) -> dict:
        from bench.measure.paired import measure_paired

        feed = dict(np.load(req["inputs"]))

        def timed(run):
            def call() -> float:
                t0 = time.perf_counter()
                run(feed)
                return time.perf_counter() - t0
            return call

        lat = measure_paired(timed(self.peer), timed(self.base), **req["protocol"])
        return {"variant_s": list(lat.variant_s), "baseline_s": list(lat.baseline_s), "block_pairs": lat.block_pairs,
                "alpha": lat.alpha, "band": lat.band, "stop": lat.stop}


def _version(metadata, pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def main() -> None:
    """Serve requests until ``quit`` or end of input."""
    reply_to = sys.stdout
    sys.stdout = sys.stderr  # library prints must not corrupt the protocol
    peer = Peer()
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "quit":
            break
        try:
            reply = getattr(peer, req["op"])(req)
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which records the case as failed
            traceback.print_exc(file=sys.stderr)
            reply = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}
        reply_to.write(json.dumps(reply) + "\n")
        reply_to.flush()


if __name__ == "__main__":
    main()
