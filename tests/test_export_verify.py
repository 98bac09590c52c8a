"""``prunebench export``'s standalone check: the ``verify_export.py`` it writes passes in a fresh ``python -I``
for every format, from another cwd, with prunebench made unimportable, and imports only numpy and the
format's own runtime; planted faults (a perturbed weight, perturbed reference embeddings, a prunebench
module in ``sys.modules``) make it exit 1, and export reports a failing fresh check with exit 1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# (name, recipe, tiny seeded model, format): the exports test_export.py checks in-process
EXPORTS = [("hf", "heads+ffn@0.5", "tiny-bert", "hf"), ("onnx", "heads+ffn@0.5", "tiny-bert", "onnx"),
           ("openvino", "heads+ffn@0.5", "tiny-distilbert", "openvino")]
# what each format's script may import besides numpy and the standard library
NEEDS = {"hf": {"torch", "transformers"}, "onnx": {"onnxruntime"}, "openvino": {"openvino"}}
HEAVY = {"torch", "transformers", "onnxruntime", "openvino", "onnx", "bench", "pruning"}

# Runs a verify_export.py as __main__ after making prunebench unimportable (a meta-path finder: prunebench is
# installed editable into the venv, so -I alone would not hide it) and, with PLANT=1, after planting a fake
# prunebench module in sys.modules; prints which heavy modules it imported, exits with the script's code.
WRAPPER = r'''
import importlib.abc, json, os, runpy, sys, types

class NoPrunebench(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("bench", "pruning"):
            raise ImportError(f"prunebench is not available here ({name})")

sys.meta_path.insert(0, NoPrunebench())
if os.environ.get("PLANT") == "1":
    sys.modules["pruning"] = types.ModuleType("pruning")
code = 0
try:
    runpy.run_path(sys.argv[1], run_name="__main__")
except SystemExit as exc:
    code = exc.code
print("imported " + json.dumps(sorted(m for m in %r if m in sys.modules)))
sys.exit(code)
''' % sorted(HEAVY)


def _export(name: str, label: str, model: str, fmt: str, out: Path) -> int:
    from bench.cli import main

    return main(["export", label, "--model", model, "--to", fmt, "--out", str(out)])


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """Each format exported once through the CLI entry point; the exit codes by name."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    d = tmp_path_factory.mktemp("verify")
    return {"dir": d, "rc": {name: _export(name, label, model, fmt, d / name) for name, label, model, fmt in EXPORTS}}


def _run(script: Path, cwd: Path, plant: bool = False) -> subprocess.CompletedProcess:
    """``script`` under WRAPPER in a fresh ``python -I`` from ``cwd``, without PYTHONPATH."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PLANT": "1" if plant else "0"}
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, "-I", "-c", WRAPPER, str(script)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _imported(proc: subprocess.CompletedProcess) -> set[str]:
    return set(json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("imported "))[len("imported "):]))


def _line(proc: subprocess.CompletedProcess) -> str:
    return next((x for x in proc.stdout.splitlines() if x.startswith("verify_export:")), proc.stderr[-2000:])


@pytest.mark.parametrize("name", [e[0] for e in EXPORTS])
def test_export_runs_the_script_in_a_fresh_isolated_process_and_records_it(exported, name):
    assert exported["rc"][name] == 0
    out = exported["dir"] / name
    info = json.loads((out / "export.json").read_text())
    fresh, check = info["fresh_process_check"], info["check"]
    assert fresh["passed"] and fresh["returncode"] == 0 and fresh["error"] is None, fresh
    assert fresh["command"] == f"{sys.executable} -I {out.resolve() / 'verify_export.py'}" and fresh["cwd"] == str(out.resolve())
    assert 0 <= fresh["max_abs_diff"] <= fresh["tolerance"] == check["tolerance"] and fresh["min_cosine"] > 0.9999
    assert {"verify_export.py", "reference.npz"} <= set(info["files"])
    ref = np.load(out / "reference.npz")
    assert ref["embeddings"].dtype == np.float32 and ref["embeddings"].shape[0] == check["sentences"] == len(ref["sentences"])
    assert ref["input_ids"].shape == ref["attention_mask"].shape and float(ref["tolerance"]) == check["tolerance"]
    assert ("token_type_ids" in ref.files) == (name != "openvino")  # as the model takes them: distilbert has none


@pytest.mark.parametrize("name", [e[0] for e in EXPORTS])
def test_the_script_passes_from_another_cwd_with_prunebench_unimportable(exported, tmp_path, name):
    script = exported["dir"] / name / "verify_export.py"
    assert f"FORMAT = {name!r}" in script.read_text()
    proc = _run(script, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert _line(proc).startswith(f"verify_export: PASS {name} ")
    assert _imported(proc) == NEEDS[name]  # numpy and the format's own runtime only, no prunebench


def _copy(exported, name: str, tmp_path: Path) -> Path:
    out = tmp_path / name
    shutil.copytree(exported["dir"] / name, out)
    return out


def test_perturbed_reference_embeddings_fail_the_script(exported, tmp_path):
    from bench.export_verify import fresh_check

    out = _copy(exported, "onnx", tmp_path)
    ref = dict(np.load(out / "reference.npz"))
    ref["embeddings"] = ref["embeddings"].copy()
    ref["embeddings"][3, 0] += 10 * float(ref["tolerance"])
    np.savez(out / "reference.npz", **ref)
    proc = _run(out / "verify_export.py", tmp_path)
    assert proc.returncode == 1 and _line(proc).startswith("verify_export: FAIL onnx "), proc.stdout + proc.stderr[-2000:]
    fresh = fresh_check(out)
    assert not fresh.passed and fresh.returncode == 1 and fresh.max_abs_diff > fresh.tolerance and "FAIL" in fresh.error


def test_a_perturbed_weight_file_fails_the_script(exported, tmp_path):
    from safetensors.numpy import load_file, save_file

    out = _copy(exported, "hf", tmp_path)
    state = load_file(str(out / "model.safetensors"))
    name = next(k for k in sorted(state) if k.endswith("query.weight"))
    state[name] = state[name] * 1.5
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    proc = _run(out / "verify_export.py", tmp_path)
    assert proc.returncode == 1 and _line(proc).startswith("verify_export: FAIL hf "), proc.stdout + proc.stderr[-2000:]


def test_a_prunebench_module_in_sys_modules_fails_the_script(exported, tmp_path):
    proc = _run(exported["dir"] / "onnx" / "verify_export.py", tmp_path, plant=True)
    assert proc.returncode == 1 and "imported_prunebench=pruning" in _line(proc), proc.stdout + proc.stderr[-2000:]


def test_export_exits_1_when_the_fresh_check_fails_and_the_in_process_one_passes(tmp_path, monkeypatch, capsys):
    import bench.export as export

    write = export.write_verifier

    def skewed(fmt, out, inputs, reference, tolerance, texts):  # reference.npz gets embeddings the variant's + 1
        write(fmt, out, inputs, reference + 1.0, tolerance, texts)

    monkeypatch.setattr(export, "write_verifier", skewed)
    out = tmp_path / "skewed"
    assert _export("onnx", "heads+ffn@0.5", "tiny-bert", "onnx", out) == 1
    info = json.loads((out / "export.json").read_text())
    assert info["check"]["passed"] and not info["fresh_process_check"]["passed"]
    assert info["fresh_process_check"]["max_abs_diff"] > 0.5 and info["fresh_process_check"]["returncode"] == 1
    assert "fresh-process check failed" in capsys.readouterr().out and (out / "model.onnx").is_file()
