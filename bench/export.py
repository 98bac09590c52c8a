"""``prunebench export RECIPE --to onnx|openvino|hf --out DIR``: a pruned variant in the form its runtime
loads without prunebench, checked against what was benchmarked.

The recipe is given as its label (``heads+ffn@0.5``, ``heads+ffn[fisher,lstsq]@0.50``: a ``case_id``'s
recipe part), as a record's ``recipe_config`` JSON, or with ``prune``'s flags. The variant is built as
``run`` and ``prune`` build it (``bench.calibrate.build_masked``, then ``bake``) and written by
``bench.export_formats``. The check loads the written files back through the format's own loader and
compares mean-pooled embeddings of fixed real sentences with the variant's in float32: max abs diff and
min cosine, judged by the equality rule of the runtime that serves the format (``bench/runtimes/base.py``).
The export also gets ``verify_export.py`` and ``reference.npz`` (``bench.export_verify``): the same check
as a standalone script that imports no prunebench module, which export runs in a fresh ``python -I`` from
the export's directory. ``export.json`` records the recipe, the source model, the format, the git sha, the
check and the fresh-process check; a failed check, either one, leaves the files and exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pruning import PruneRecipe, bake, method_spec
from pruning.recover import FITS, RECOVERIES
from pruning.targets import SCOPES

from . import export_formats as formats
from .export_verify import FreshCheck, fresh_check, write_verifier
from .runtimes import get_runtime
from .runtimes.base import equality_gate, package_versions
from .run import UsageError, recovery_keys

__all__ = ["CHECK_SENTENCES", "CHECK_SEQ_LEN", "ExportCheck", "ExportError", "check_export", "export_command",
           "export_model", "pooled", "recipe_from"]

log = logging.getLogger("bench.export")

CHECK_SENTENCES = 16  # the first sentences of bench.models.sentences(), one padded batch
CHECK_SEQ_LEN = 128


class ExportError(ValueError):
    """The variant cannot be written in the format asked for; the message names the fix."""


@dataclass(frozen=True)
class ExportCheck:
    """The exported files, loaded by ``loader``, against the prunebench variant on fixed sentences."""

    loader: str
    rule: str  # the runtime whose equality rule judged it
    dtype: str
    sentences: int
    max_abs_diff: float
    min_cosine: float
    tolerance: float | None
    passed: bool
    error: str | None


def pooled(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean-pooled embeddings: the last hidden state averaged over the tokens the attention mask keeps."""
    mask = attention_mask.unsqueeze(-1).to(torch.float32)
    return (hidden.float() * mask).sum(1) / mask.sum(1).clamp_min(1)


def _label_token(token: str, spec, label: str) -> dict:
    """The recipe key one bracketed item of a recipe label sets (``fisher``, ``lstsq``, ``cal64``, ``seed3``, ...)."""
    fit = next((f for f in FITS if f"lstsq-{f}" in token), None)
    if fit is not None and token.replace(f"-{fit}", "") in RECOVERIES:
        return {"recover": token.replace(f"-{fit}", ""), "fit": fit}
    for key, choices in (("recover", RECOVERIES), ("scope", SCOPES), ("norm", spec.norms),
                         ("allocation", spec.allocations), ("importance", spec.importances)):
        if token in choices:
            return {key: token}
    for key, pattern, kind in (("calibration", r"cal(\d+)", int), ("seed", r"seed(\d+)", int),
                               ("recover_seconds", r"(\d+(?:\.\d+)?)s", float), ("multiple_of", r"multiple_of(\d+)", int)):
        m = re.fullmatch(pattern, token)
        if m:
            return {key: kind(m.group(1))}
    raise UsageError(f"recipe label {label!r}: cannot read {token!r}; give that knob as a flag or the recipe as its "
                     "recipe_config JSON")


def _from_label(label: str) -> dict:
    m = re.fullmatch(r"([^\[\]@]+)(?:\[([^\]]*)\])?(?:@([0-9.]+))?", label.strip())
    if not m:
        raise UsageError(f"recipe {label!r} is not a label such as heads+ffn@0.5 or heads+ffn[fisher,lstsq]@0.50")
    method, extras, sparsity = m.groups()
    spec = method_spec(method)
    keys: dict = {"method": method}
    if sparsity:
        keys["sparsity"] = float(sparsity)
    for token in filter(None, (x.strip() for x in (extras or "").split(","))):
        keys.update(_label_token(token, spec, label))
    return keys


def recipe_from(text: str | None, a: argparse.Namespace) -> PruneRecipe:
    """The recipe ``RECIPE`` (a label or recipe_config JSON) and the flags describe; a flag given wins."""
    keys: dict = {}
    if text and text.lstrip().startswith("{"):
        try:
            keys = dict(json.loads(text))
        except (ValueError, TypeError):
            raise UsageError(f"recipe {text[:60]!r} is not a JSON object; pass a record's recipe_config as written") from None
    elif text:
        keys = _from_label(text)
    flags = {"method": a.method, "sparsity": a.sparsity, "norm": a.norm, "allocation": a.allocation, "seed": a.seed,
             **recovery_keys(a)}
    keys.update({k: v for k, v in flags.items() if v is not None})
    if "method" not in keys:
        raise UsageError("no recipe given; pass a RECIPE such as heads+ffn@0.5 or --method M --sparsity S")
    return PruneRecipe.from_dict(keys)


def check_export(fmt: str, out: Path, inputs: dict[str, torch.Tensor], reference: torch.Tensor, dtype: str) -> ExportCheck:
    """Load the export in ``out`` through its format's own loader and judge its mean-pooled embeddings on
    ``inputs`` against ``reference`` (the variant's, float32) by the serving runtime's equality rule; a load
    that fails is a failed check."""
    runtime = get_runtime(formats.RUNTIME_OF[fmt])
    mask = inputs["attention_mask"]
    try:
        got = pooled(formats.load_outputs(fmt, out, inputs), mask)
    except Exception as exc:  # a corrupt or unloadable export: the check says so instead of crashing
        error = f"{formats.LOADERS[fmt]} could not load the export ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})"
        return ExportCheck(formats.LOADERS[fmt], runtime.name, dtype, len(mask), float("inf"), float("nan"), None, False, error)
    gate = equality_gate(runtime, f"the {fmt} export", dtype, got, reference, mask)
    cos = float(torch.nn.functional.cosine_similarity(got, reference, dim=1).min()) if got.shape == reference.shape else float("nan")
    return ExportCheck(formats.LOADERS[fmt], runtime.name, dtype, len(mask), gate.max_abs_diff, round(cos, 7), gate.tolerance,
                       gate.error is None, gate.error)


def export_model(loaded, recipe: PruneRecipe, fmt: str, out: Path,
                 dtype: str = "float32") -> tuple[ExportCheck, FreshCheck]:
    """Build ``recipe``'s variant of ``loaded`` (a ``bench.models.LoadedModel``), write it to ``out`` as ``fmt``
    in ``dtype`` with its standalone verifier, check it in this process and in a fresh one, and write
    ``out``/export.json; returns both checks."""
    from .calibrate import build_masked
    from .env import git_state
    from .models import sentences

    model = bake(build_masked(loaded, recipe)[0]).float().eval()
    texts = list(sentences()[:CHECK_SENTENCES])
    inputs = loaded.encode(texts, CHECK_SEQ_LEN)
    with torch.inference_mode():
        reference = pooled(model(**inputs).last_hidden_state, inputs["attention_mask"])
    try:
        formats.write(fmt, model, loaded.tokenizer, loaded.batch(2, 32), out, dtype, loaded.source)
    except Exception as exc:  # an exporter's failure on this model is a dead end for the user: one line
        raise ExportError(f"writing {loaded.name} as {fmt} failed ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); try another --to format") from None
    # the tolerance of the in-process check's rule (equality_gate: the serving runtime's, unscaled)
    write_verifier(fmt, out, inputs, reference, get_runtime(formats.RUNTIME_OF[fmt]).tolerance(dtype, reference), texts)
    check = check_export(fmt, out, inputs, reference, dtype)
    fresh = fresh_check(out)
    git = git_state()
    info = {"format": fmt, "dtype": dtype, "recipe": recipe.to_dict(), "recipe_label": recipe.label,
            "source_model": {"name": loaded.name, "source": loaded.source, "arch": loaded.arch, "weights": loaded.weights},
            "prunebench_git_sha": git["git_sha"], "prunebench_git_dirty": git["git_dirty"], "files": sorted(p.name for p in out.iterdir()),
            "versions": package_versions("torch", "transformers", formats.LOADERS[fmt]), "check": asdict(check),
            "fresh_process_check": asdict(fresh)}
    (out / "export.json").write_text(json.dumps(info, indent=1, allow_nan=True) + "\n")
    return check, fresh


def export_command(a: argparse.Namespace) -> int:
    """``prunebench export``: exit 0 when the export reproduces the variant, 1 when its check fails, 2 on bad input."""
    reason = formats.dtype_unsupported(a.to, a.dtype) or formats.format_unavailable(a.to)
    if reason:
        raise UsageError(reason)
    out = Path(a.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} already exists and is not an empty directory; pass a new --out directory")
    recipe = recipe_from(a.recipe, a)
    if recipe.spec.requires:
        import importlib.util

        if importlib.util.find_spec(recipe.spec.requires) is None:
            raise UsageError(f"method {recipe.method} needs the optional package {recipe.spec.requires!r}; pip install 'prunebench[peers]'")
    from .calibrate import check_calibration
    from .models import load_model

    check_calibration(recipe)
    loaded = load_model(a.model)
    out.mkdir(parents=True, exist_ok=True)
    check, fresh = export_model(loaded, recipe, a.to, out, a.dtype)
    verdict = "reproduces" if check.passed else "does NOT reproduce"
    print(f"prunebench: {recipe.label} of {loaded.name} -> {out} ({a.to}, {a.dtype})")
    print(f"  check: loaded by {check.loader}, {verdict} the variant on {check.sentences} sentences: max abs diff "
          f"{check.max_abs_diff:.2g} (tolerance {check.tolerance if check.tolerance is not None else 'n/a'}), "
          f"min cosine {check.min_cosine:.6f}")
    print(f"  fresh process: {fresh.output or fresh.error} ({fresh.command}, from {out})")
    if not check.passed:
        print(f"prunebench: export check failed: {check.error}; the files stay in {out}, export.json says why")
    if not fresh.passed:
        print(f"prunebench: fresh-process check failed: {fresh.error}; the files stay in {out}, export.json says why")
    return 0 if check.passed and fresh.passed else 1
