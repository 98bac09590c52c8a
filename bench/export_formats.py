"""The formats ``prunebench export`` writes, and how each is loaded back by its own runtime for the check.

- ``hf``: ``save_pretrained`` of the shrunk model plus the tokenizer. Where structured pruning left layers
  with their own head counts or FFN widths, the config keeps the dense architecture, lists the kept shapes
  in ``pruned_layers`` and maps ``AutoModel`` to ``modeling_pruned.Pruned<Base>`` (``bench/export_modeling.py``
  copied in), so ``AutoModel.from_pretrained(DIR, trust_remote_code=True)`` rebuilds it; layers-only and
  mask recipes need no custom code. A source model that is a sentence-transformers directory gets its
  modules.json and module folders (pooling, normalize) copied, so ``SentenceTransformer(DIR,
  trust_remote_code=True)`` loads the export.
- ``onnx``: model.onnx (the ``onnxruntime`` runtime's exporter: dynamic batch and sequence axes) + tokenizer.
- ``openvino``: model.xml/.bin (the ``openvino`` runtime's conversion of that ONNX file) + tokenizer.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import shutil
from pathlib import Path

import torch
from torch import nn

from pruning import discover
from pruning.structured import layer_shapes

from .runtimes.base import DTYPES

__all__ = ["FORMATS", "LOADERS", "RUNTIME_OF", "dtype_unsupported", "format_unavailable", "load_outputs", "pruned_layers",
           "write"]

log = logging.getLogger("bench.export_formats")

FORMATS = ("onnx", "openvino", "hf")
# the runtime whose equality rule (bench/runtimes/base.py) judges an export of each format
RUNTIME_OF = {"hf": "torch-dense", "onnx": "onnxruntime", "openvino": "openvino"}
# the library that loads each format back, for the check and in export.json
LOADERS = {"hf": "transformers", "onnx": "onnxruntime", "openvino": "openvino"}
_EXTRAS = {"onnx": ("onnx", "onnxruntime"), "openvino": ("openvino", "onnx", "onnxruntime")}
_ST_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


def format_unavailable(fmt: str) -> str | None:
    """Why ``fmt`` cannot be written here (a missing package, with the pip extra that brings it), or None."""
    for pkg in _EXTRAS.get(fmt, ()):
        if importlib.util.find_spec(pkg) is None:
            return f"--to {fmt} needs the {pkg} package, which is not installed; pip install 'prunebench[{fmt}]'"
    return None


def dtype_unsupported(fmt: str, dtype: str) -> str | None:
    """Why ``fmt`` cannot be written in ``dtype``, or None (only ``hf`` stores half-precision weights)."""
    if dtype not in DTYPES:
        return f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}"
    if fmt != "hf" and dtype != "float32":
        return f"--to {fmt} exports float32 only (the runtime's own exporter); use --dtype float32 or --to hf"
    return None


def pruned_layers(model: nn.Module) -> list[dict] | None:
    """Per layer, the dotted paths and kept shapes ``modeling_pruned.shrink`` needs, or None when every layer
    keeps its dense head count and FFN width (a plain config then describes the model)."""
    shapes = layer_shapes(model)
    if all(s["num_heads"] == s["dense_num_heads"] and s["ffn_size"] == s["dense_ffn_size"] for s in shapes):
        return None
    names = {id(m): n for n, m in model.named_modules()}
    t, out = discover(model), []
    for att, ffn, s in zip(t.attention, t.ffn, shapes):
        out.append({"attention": names[id(att.module)], "qkv": [names[id(x)] for x in (att.query, att.key, att.value)],
                    "attention_output": names[id(att.output)], "num_heads": int(s["num_heads"]),
                    "head_size": att.head_size, "ffn_in": names[id(ffn.inp)], "ffn_out": names[id(ffn.out)],
                    "ffn_size": int(s["ffn_size"])})
    return out


def _write_hf(model: nn.Module, out: Path, dtype: str, source: str) -> None:
    """save_pretrained in ``dtype`` with the loader where layers were shrunk, then the sentence-transformers files."""
    layers = pruned_layers(model)
    model = copy.deepcopy(model).to(DTYPES[dtype])  # the config too: the edits below stay on the copy
    if layers is not None:
        model.config.pruned_layers = layers
        model.config.auto_map = {"AutoModel": f"modeling_pruned.Pruned{type(model).__name__}"}
    if hasattr(model.config, "prunebench"):  # a `prunebench prune` source: its block describes another loader
        del model.config.prunebench
    model.save_pretrained(str(out))
    if layers is not None:
        shutil.copyfile(Path(__file__).with_name("export_modeling.py"), out / "modeling_pruned.py")
    _copy_sentence_transformers(Path(source), out)


def _copy_sentence_transformers(src: Path, out: Path) -> None:
    """Copy a sentence-transformers source's modules.json, its configs and its module folders (not the root
    Transformer module, which is the exported model itself)."""
    if not (src / "modules.json").is_file():
        return
    for name in _ST_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
    for module in json.loads((src / "modules.json").read_text()):
        path = module.get("path", "")
        if path and (src / path).is_dir():
            shutil.copytree(src / path, out / path)


def write(fmt: str, model: nn.Module, tokenizer, inputs: dict[str, torch.Tensor], out: Path, dtype: str,
          source: str) -> None:
    """Write the baked fp32 ``model`` (the variant) to ``out`` as ``fmt`` in ``dtype``, with ``tokenizer``;
    ``inputs`` is the example batch the graph exporters trace, ``source`` the model's directory (or a name)."""
    from .runtimes.onnx_runtime import export

    if fmt == "hf":
        _write_hf(model, out, dtype, source)
    elif fmt == "onnx":
        export(model, inputs, out / "model.onnx")
    else:
        from .runtimes.openvino_fp32 import compile_ir

        onnx_file = export(model, inputs, out / "model.fp32.onnx")
        compile_ir(onnx_file, out / "model.xml", torch.get_num_threads())
        onnx_file.unlink()
    tokenizer.save_pretrained(str(out))


def load_outputs(fmt: str, out: Path, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The last hidden state (fp32, CPU) of the export in ``out`` on ``inputs``, loaded from its files by the
    format's own loader: transformers, onnxruntime or openvino."""
    if fmt == "hf":
        from transformers import AutoModel

        model = AutoModel.from_pretrained(str(out), trust_remote_code=True).eval()
        with torch.inference_mode():
            return model(**inputs).last_hidden_state.float()
    if fmt == "onnx":
        from .runtimes.onnx_runtime import OrtRunner

        return OrtRunner(out / "model.onnx", inputs, "cpu", torch.get_num_threads()).outputs()
    import openvino as ov

    from .runtimes.openvino_fp32 import OvRunner

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(out / "model.xml")), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return OvRunner(compiled, inputs, out, "export check").outputs()
