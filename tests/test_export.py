"""``prunebench export``: each format is loaded back in a fresh interpreter that cannot import prunebench and
reproduces the variant's embeddings; a corrupted weight is caught by the check and by that reload; bad input
exits 2 with one line; a failing check exits 1 and leaves its files and export.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from .forked_cli import run_many

ROOT = Path(__file__).resolve().parents[1]

# Run with ``python -I`` (no cwd, PYTHONPATH or user site on sys.path) from a temporary cwd; prunebench is
# installed editable into the venv, so a meta-path finder makes importing bench or pruning fail outright.
LOADER = r'''
import importlib.abc, json, sys

class NoPrunebench(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("bench", "pruning"):
            raise ImportError(f"prunebench is not available here ({name})")

sys.meta_path.insert(0, NoPrunebench())
import numpy as np
from transformers import AutoTokenizer

out, mode, ref_file, texts_file, tol = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
texts = json.load(open(texts_file))
enc = AutoTokenizer.from_pretrained(out)(texts, padding=True, truncation=True, max_length=128, return_tensors="np")
mask = enc["attention_mask"][..., None].astype(np.float32)
if mode.startswith("hf"):
    import inspect
    import torch
    from transformers import AutoModel
    model = AutoModel.from_pretrained(out, trust_remote_code=(mode != "hf-plain")).eval()
    names = inspect.signature(model.forward).parameters
    with torch.inference_mode():
        hidden = model(**{k: torch.from_numpy(v) for k, v in enc.items() if k in names}).last_hidden_state.float().numpy()
elif mode == "onnx":
    import onnxruntime as ort
    sess = ort.InferenceSession(out + "/model.onnx", providers=["CPUExecutionProvider"])
    hidden = sess.run(None, {i.name: enc[i.name].astype(np.int64) for i in sess.get_inputs()})[0]
else:
    import openvino as ov
    core = ov.Core()
    compiled = core.compile_model(core.read_model(out + "/model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    feed = {p.get_any_name(): enc[p.get_any_name()].astype(np.int64) for p in compiled.inputs}
    hidden = next(iter(compiled.create_infer_request().infer(feed).values()))
emb = (hidden * mask).sum(1) / mask.sum(1)
ref = np.load(ref_file)
result = {"max_abs_diff": float(np.abs(emb - ref).max())}
if mode == "hf+st":
    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(out, trust_remote_code=True, device="cpu").encode(texts, convert_to_numpy=True)
    normed = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    result["st_max_abs_diff"] = float(np.abs(st - normed).max())
assert "bench" not in sys.modules and "pruning" not in sys.modules, "prunebench was imported"
print(json.dumps(result))
sys.exit(0 if max(result.values()) <= tol else 1)
'''

# (name, RECIPE, model, format, extra flags)
EXPORTS = [
    ("hf", "heads+ffn@0.5", "tiny-bert", "hf", []),
    ("onnx", "heads+ffn@0.5", "tiny-bert", "onnx", []),
    ("openvino", "heads+ffn@0.5", "tiny-distilbert", "openvino", []),
    ("layers", "layers[top]@0.50", "tiny-bert", "hf", []),
    ("bf16", "heads+ffn@0.5", "tiny-bert", "hf", ["--dtype", "bfloat16"]),
    ("minilm", "heads+ffn@0.5", "minilm", "hf", []),
    ("own", "heads+ffn@0.5", "OWN", "hf", []),  # a user's own encoder: a local HF directory (tiny-roberta saved)
]

# Hides openvino (find_spec returns None for a None entry of sys.modules), then runs the CLI.
NO_OPENVINO = "import sys\nsys.modules['openvino'] = None\nfrom bench.cli import main\nsys.exit(main(sys.argv[1:]))\n"
# Corrupts one weight of what the writer wrote, before the check reads it: the check must fail (exit 1).
CORRUPT_AFTER_WRITE = """import sys
import bench.export_formats as formats
from safetensors.torch import load_file, save_file

write = formats.write

def corrupting(fmt, model, tokenizer, inputs, out, dtype, source):
    write(fmt, model, tokenizer, inputs, out, dtype, source)
    state = load_file(str(out / "model.safetensors"))
    name = next(k for k in sorted(state) if k.endswith("query.weight"))
    state[name] = state[name] * 1.5
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})

formats.write = corrupting
from bench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _own_encoder(path: Path) -> None:
    """A user's own encoder directory: tiny-roberta's seeded weights, config and tokenizer, save_pretrained."""
    from bench.models import load_model

    loaded = load_model("tiny-roberta")
    loaded.model.save_pretrained(str(path))
    loaded.tokenizer.save_pretrained(str(path))


def _model(name: str, d: Path) -> str:
    return str(d / "own-encoder") if name == "OWN" else name


def _texts() -> list[str]:
    from bench.export import CHECK_SENTENCES
    from bench.models import sentences

    return list(sentences()[:CHECK_SENTENCES])


def _reference(model_name: str, label: str, d: Path | None = None) -> np.ndarray:
    """The prunebench variant's mean-pooled embeddings of the check sentences, float32."""
    from argparse import Namespace

    from bench.export import CHECK_SEQ_LEN, pooled, recipe_from
    from bench.models import load_model
    from pruning import apply, bake

    flags = Namespace(method=None, sparsity=None, norm=None, allocation=None, seed=None, importance=None, recover=None,
                      fit=None, calibration=None, recover_seconds=None)
    loaded = load_model(_model(model_name, d) if d else model_name)
    model = bake(apply(loaded.fresh(), recipe_from(label, flags))).eval()
    inputs = loaded.encode(_texts(), CHECK_SEQ_LEN)
    with torch.inference_mode():
        return pooled(model(**inputs).last_hidden_state, inputs["attention_mask"]).numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """Every export of EXPORTS and the bad-input and failing-check commands, run through the CLI once."""
    d = tmp_path_factory.mktemp("export")
    (d / "full").mkdir()
    (d / "full" / "x.txt").write_text("taken")
    (d / "no_openvino.py").write_text(NO_OPENVINO)
    (d / "corrupt.py").write_text(CORRUPT_AFTER_WRITE)
    _own_encoder(d / "own-encoder")
    cmds = [(["export", label, "--model", _model(model, d), "--to", fmt, "--out", str(d / name), *extra], d)
            for name, label, model, fmt, extra in EXPORTS]
    bad = {"unknown method": ["export", "heads+fnn@0.5", "--to", "hf", "--out", str(d / "b1")],
           "out not empty": ["export", "heads@0.5", "--model", "tiny-bert", "--to", "hf", "--out", str(d / "full")],
           "dtype onnx": ["export", "heads@0.5", "--to", "onnx", "--dtype", "bfloat16", "--out", str(d / "b2")],
           "label token": ["export", "heads[fast]@0.5", "--to", "hf", "--out", str(d / "b3")],
           "no recipe": ["export", "--to", "hf", "--out", str(d / "b4")],
           "format": ["export", "heads@0.5", "--to", "tflite", "--out", str(d / "b5")],
           "model dir": ["export", "heads@0.5", "--model", str(d / "no-such-model"), "--to", "hf", "--out", str(d / "b7")]}
    cmds += [(argv, d) for argv in bad.values()]
    cmds.append((["export", "heads@0.5", "--model", "tiny-bert", "--to", "openvino", "--out", str(d / "b6")], d,
                 d / "no_openvino.py"))
    cmds.append((["export", "heads+ffn@0.5", "--model", "tiny-bert", "--to", "hf", "--out", str(d / "corrupt")], d,
                 d / "corrupt.py"))
    procs = run_many(cmds, jobs=2, timeout=600)
    n = len(EXPORTS)
    return {"dir": d, "exports": dict(zip([e[0] for e in EXPORTS], procs[:n])),
            "bad": dict(zip([*bad, "openvino missing"], procs[n:-1])), "corrupt": procs[-1]}


def _reload(tmp: Path, out: Path, mode: str, reference: np.ndarray, tol: float) -> subprocess.CompletedProcess:
    """The LOADER in a fresh ``python -I`` from ``tmp``: exit 0 when it reproduces ``reference`` within ``tol``."""
    ref_file, texts_file = tmp / f"{out.name}-ref.npy", tmp / "texts.json"
    np.save(ref_file, reference)
    texts_file.write_text(json.dumps(_texts()))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp / "hf-modules"), "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, "-I", "-c", LOADER, str(out), mode, str(ref_file), str(texts_file), str(tol)],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name,mode,tol", [("hf", "hf", 1e-5), ("onnx", "onnx", 1e-4), ("openvino", "openvino", 1e-4),
                                           ("layers", "hf-plain", 1e-5), ("minilm", "hf+st", 1e-5), ("own", "hf", 1e-5)])
def test_a_fresh_interpreter_without_prunebench_reproduces_the_embeddings(exported, tmp_path, name, mode, tol):
    proc = exported["exports"][name]
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    out = exported["dir"] / name
    info = json.loads((out / "export.json").read_text())
    assert info["check"]["passed"] and info["check"]["max_abs_diff"] <= tol and info["check"]["min_cosine"] > 0.9999
    assert info["format"] == EXPORTS[[e[0] for e in EXPORTS].index(name)][3] and info["prunebench_git_sha"]
    label, model = next((e[1], e[2]) for e in EXPORTS if e[0] == name)
    reloaded = _reload(tmp_path, out, mode, _reference(model, label, exported["dir"]), tol)
    assert reloaded.returncode == 0, reloaded.stdout + reloaded.stderr[-3000:]


def test_layers_only_needs_no_custom_code_and_heads_ffn_ships_its_loader(exported):
    layers = json.loads((exported["dir"] / "layers" / "config.json").read_text())
    assert "auto_map" not in layers and layers["num_hidden_layers"] == 1
    assert not (exported["dir"] / "layers" / "modeling_pruned.py").exists()
    shrunk = json.loads((exported["dir"] / "hf" / "config.json").read_text())
    assert shrunk["auto_map"]["AutoModel"] == "modeling_pruned.PrunedBertModel"
    own = json.loads((exported["dir"] / "own" / "config.json").read_text())
    assert own["auto_map"]["AutoModel"] == "modeling_pruned.PrunedRobertaModel"
    assert [x["num_heads"] for x in shrunk["pruned_layers"]] == [2, 2]
    assert (exported["dir"] / "minilm" / "modules.json").is_file() and (exported["dir"] / "minilm" / "1_Pooling").is_dir()


def test_bfloat16_export_stores_half_weights_within_the_half_tolerance(exported):
    from safetensors import safe_open

    proc = exported["exports"]["bf16"]
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    out = exported["dir"] / "bf16"
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.bfloat16
    check = json.loads((out / "export.json").read_text())["check"]
    assert check["passed"] and 0 < check["max_abs_diff"] <= check["tolerance"]


@pytest.mark.parametrize("what,needle", [("unknown method", "heads+fnn"), ("out not empty", "not an empty directory"),
                                         ("dtype onnx", "float32 only"), ("label token", "'fast'"),
                                         ("no recipe", "no recipe given"), ("format", "tflite"),
                                         ("model dir", "does not exist"), ("openvino missing", "prunebench[openvino]")])
def test_bad_input_exits_2_with_one_line(exported, what, needle):
    proc = exported["bad"][what]
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert err and needle in err[-1] and err[-1].startswith("prunebench: error:")


def test_a_weight_corrupted_before_the_check_fails_it_with_exit_1(exported):
    proc = exported["corrupt"]
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    out = exported["dir"] / "corrupt"
    check = json.loads((out / "export.json").read_text())["check"]
    assert not check["passed"] and "differ" in check["error"] and (out / "model.safetensors").is_file()
    assert "does NOT reproduce" in proc.stdout


def _corrupt_onnx(out: Path) -> None:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(out / "model.onnx"))
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, init.name))
    onnx.save(model, str(out / "model.onnx"))


def _corrupt_bin(out: Path) -> None:
    """Scale the largest f32 constant of the IR (its offset and size are in model.xml) by 1.5 in model.bin."""
    import xml.etree.ElementTree as ET

    consts = [d.attrib for d in ET.parse(out / "model.xml").iter("data") if d.attrib.get("element_type") == "f32"
              and "offset" in d.attrib]
    big = max(consts, key=lambda c: int(c["size"]))
    raw = bytearray((out / "model.bin").read_bytes())
    start, size = int(big["offset"]), int(big["size"])
    raw[start:start + size] = (np.frombuffer(bytes(raw[start:start + size]), dtype=np.float32) * 1.5).tobytes()
    (out / "model.bin").write_bytes(bytes(raw))


@pytest.mark.parametrize("name,fmt,corrupt", [("onnx", "onnx", _corrupt_onnx), ("openvino", "openvino", _corrupt_bin)])
def test_the_check_and_the_fresh_reload_catch_a_corrupted_weight(exported, tmp_path, name, fmt, corrupt):
    import shutil

    from bench.export import CHECK_SEQ_LEN, check_export
    from bench.models import load_model

    label, model = next((e[1], e[2]) for e in EXPORTS if e[0] == name)
    out = tmp_path / name
    shutil.copytree(exported["dir"] / name, out)
    loaded = load_model(model)
    inputs = loaded.encode(_texts(), CHECK_SEQ_LEN)
    reference = torch.from_numpy(_reference(model, label))
    assert check_export(fmt, out, inputs, reference, "float32").passed  # the copy, untouched, passes
    corrupt(out)
    check = check_export(fmt, out, inputs, reference, "float32")
    assert not check.passed and check.max_abs_diff > 1e-2, check
    assert _reload(tmp_path, out, fmt, reference.numpy(), 1e-4).returncode == 1


def test_recipe_labels_and_recipe_config_round_trip():
    from argparse import Namespace

    from bench.export import recipe_from
    from pruning import PruneRecipe

    flags = Namespace(method=None, sparsity=None, norm=None, allocation=None, seed=None, importance=None, recover=None,
                      fit=None, calibration=None, recover_seconds=None)
    for r in (PruneRecipe("heads+ffn", 0.5, importance="fisher", recover="lstsq"),
              PruneRecipe("heads", 0.25, allocation="global", norm="l2", recover="lstsq", fit="scales", calibration=64),
              PruneRecipe("layers", 0.5, allocation="top"), PruneRecipe("global-random", 0.3, seed=3, scope="all"),
              PruneRecipe("ffn", 0.5, recover="lstsq+distill", recover_seconds=30.0)):
        assert recipe_from(r.label, flags) == r, r.label
        assert recipe_from(json.dumps(r.to_dict()), flags) == r
    flags.sparsity = 0.75
    assert recipe_from("heads@0.5", flags) == PruneRecipe("heads", 0.75)  # a flag given wins over the label
