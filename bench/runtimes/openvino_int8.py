"""openvino-int8: static int8 as optimum-intel ships it (sentence-transformers'
``export_static_quantized_openvino_model`` calls optimum-intel's ``OVQuantizer``, which calls NNCF): the
``openvino`` runtime's IR of the variant (dense, or pruned and baked) quantized by NNCF post-training
quantization, ``nncf.quantize(model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
subset_size=len(items))`` with NNCF's defaults otherwise (int8 weights and activations, the transformer
patterns left in float), then compiled at the CPU plugin's default precision like optimum-intel's models
(bf16 for what stays in float on CPUs with AMX / avx512_bf16, f32 elsewhere: the runner's info names it),
latency hint, one stream, the case's threads. The quantized IR directory is the artifact.

Calibration: every article of the corpus's *calibration split* (``bench.data.corpus.splits().calibration``,
the articles data-aware pruning and lstsq recovery read, never scored), title + first paragraph, one item per
article tokenized by the model's own tokenizer to at most ``bench.calibrate.SEQ_LEN`` tokens; never the
selection or report articles quality is chosen or reported on, nor the case's fixed timing batch.

A quantizing runtime: the gate is a quality floor (pooled cosine to the fp32 torch-masked outputs on the
fixed batch at least ``QUALITY_FLOOR``, as the other int8 runtimes), not an elementwise tolerance. nncf's
version is recorded next to openvino's. NNCF is in the optional extra ``pip install 'prunebench[openvino]'``;
without it (or openvino) the case is skipped with that hint. Baseline: dense fp32 torch.
"""

from __future__ import annotations

import importlib.util
import logging

import numpy as np

from ..calibrate import SEQ_LEN
from ..data import corpus
from .base import Variant, package_versions
from .int8 import QUALITY_FLOOR
from .openvino_fp32 import INSTALL_HINT, OpenVinoRuntime

__all__ = ["QUALITY_FLOOR", "RUNTIME", "OpenVinoInt8", "calibration_articles", "calibration_items", "quantize"]

log = logging.getLogger("bench.runtimes.openvino_int8")


def calibration_articles(seed: int = 0) -> tuple[corpus.Article, ...]:
    """The articles NNCF calibrates on: the corpus's calibration split (the seed ``bench.calibrate`` reads)."""
    return corpus.splits(seed).calibration


def calibration_items(loaded, input_names: list[str]) -> list[dict[str, np.ndarray]]:
    """One model input per calibration article (batch 1, its own length up to ``SEQ_LEN`` tokens, no padding),
    holding the IR's ``input_names`` only, as numpy arrays the CPU plugin takes."""
    max_len = min(SEQ_LEN, int(getattr(loaded.config, "max_position_embeddings", SEQ_LEN) or SEQ_LEN))
    items = []
    for article in calibration_articles():
        enc = loaded.encode([article.text], max_len)
        missing = [n for n in input_names if n not in enc]
        if missing:
            raise ValueError(f"the OpenVINO model needs input(s) {', '.join(missing)} that the tokenizer does not give")
        items.append({n: enc[n].numpy() for n in input_names})
    return items


def quantize(model, items: list[dict[str, np.ndarray]]):
    """``model`` (an ``openvino.Model``) quantized to int8 by NNCF post-training quantization on ``items``."""
    import nncf

    log.info("NNCF post-training quantization on %d calibration items", len(items))
    return nncf.quantize(model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(items))


class OpenVinoInt8(OpenVinoRuntime):
    name = "openvino-int8"
    help = (f"OpenVINO IR quantized by NNCF (static int8, calibrated on the corpus's calibration split), CPU plugin at "
            f"its default precision, quality-floor gate (optional: {INSTALL_HINT}), vs dense torch")
    quality_floor = QUALITY_FLOOR
    compute_dtype = "int8"  # its matmuls: the roofline's int8 peak
    uses_export = "quantizes"
    precision_hint = None
    info_prefix = "openvino CPU int8 (NNCF PTQ, ModelType.TRANSFORMER, calibration split)"

    def unavailable(self, device: str) -> str | None:
        reason = super().unavailable(device)
        if reason is None and importlib.util.find_spec("nncf") is None:
            reason = f"{self.name} quantizes with the optional nncf package, which is not installed ({INSTALL_HINT})"
        return reason

    def versions(self) -> dict[str, str | None]:
        return package_versions("openvino", "nncf")

    def ir(self, model, variant: Variant):
        """The converted IR quantized by NNCF on the calibration split."""
        return quantize(model, calibration_items(variant.loaded, [p.get_any_name() for p in model.inputs]))


RUNTIME = OpenVinoInt8()
