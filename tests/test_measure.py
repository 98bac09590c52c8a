"""Measurements: paired latency statistics, size, quality, FLOPs, memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.measure.flops import macs
from bench.measure.latency import Latency, sample_stats
from bench.measure.quality import fidelity
from bench.measure.size import measure_size
from pruning import PruneRecipe, apply, bake


def test_latency_ratio_is_the_geometric_mean_of_block_ratios():
    lat = Latency((2.0, 2.2, 1.8, 2.0), (1.0, 1.1, 0.9, 1.0), target=0.03)
    assert lat.block_ratios == pytest.approx((2.0, 2.0)) and lat.ratio == pytest.approx(2.0)
    assert lat.ratio_lo == pytest.approx(2.0) and lat.ratio_hi == pytest.approx(2.0)
    assert not lat.unstable


def test_latency_ci_is_a_t_interval_over_blocks_so_drift_between_blocks_widens_it():
    """The same 8 pair ratios: alternating 0.9 / 1.1 inside each block (one block is as good as another) give
    a tight CI; 0.9 in the first blocks and 1.1 in the last (the ratio drifted) give a wide one."""
    within = Latency((0.9, 1.1) * 4, (1.0,) * 8, block_pairs=2)
    drifted = Latency((0.9,) * 4 + (1.1,) * 4, (1.0,) * 8, block_pairs=2)
    assert within.ratio == pytest.approx(drifted.ratio)
    assert within.half_width == pytest.approx(0.0, abs=1e-9)
    assert drifted.half_width > 0.15 and drifted.ratio_lo < 0.9 * drifted.ratio


def test_latency_refuses_unpaired_or_nonpositive_samples():
    with pytest.raises(ValueError):
        Latency((1.0, 2.0), (1.0,), target=0.03)
    with pytest.raises(ValueError):
        Latency((0.0,), (1.0,), target=0.03)


def test_sample_stats_summarise_rounds_with_pytest_benchmarks_keys():
    st = sample_stats([0.004, 0.001, 0.003, 0.002, 0.1])  # 0.1 lies beyond q3 + 1.5 IQR = 0.007
    assert st["data"] == [0.004, 0.001, 0.003, 0.002, 0.1]  # in timing order, as pytest-benchmark keeps them
    assert (st["rounds"], st["iterations"], st["min"], st["max"], st["median"]) == (5, 1, 0.001, 0.1, 0.003)
    assert (st["q1"], st["q3"]) == pytest.approx((0.002, 0.004))
    assert st["total"] == pytest.approx(0.11) and st["ops"] == pytest.approx(5 / 0.11)
    assert st["mean"] == pytest.approx(0.022) and st["stddev"] == pytest.approx(np.std(st["data"], ddof=1))
    assert (st["iqr_outliers"], st["ld15iqr"], st["hd15iqr"]) == (1, 0.001, 0.004)
    assert sample_stats([0.5])["stddev"] == 0.0
    with pytest.raises(ValueError, match="at least one sample"):
        sample_stats([])


def test_compressed_size_shrinks_with_zeros(tmp_path):
    dense = torch.randn(256, 256)
    sparse = dense * (torch.rand_like(dense) > 0.9)
    torch.save(dense, tmp_path / "d.pt")
    torch.save(sparse, tmp_path / "s.pt")
    d, s = measure_size(tmp_path / "d.pt"), measure_size(tmp_path / "s.pt")
    assert d.raw_bytes == s.raw_bytes
    assert s.compressed_bytes < 0.4 * d.compressed_bytes


def test_fidelity_of_identical_embeddings_is_perfect_and_drops_with_noise():
    e = torch.randn(50, 16)
    assert fidelity(e, e).cosine == pytest.approx(1.0)
    assert fidelity(e, e).knn_agreement == 1.0
    noisy = fidelity(e, e + torch.randn_like(e))
    assert noisy.cosine < 0.9 and noisy.knn_agreement < 1.0


def test_flops_count_nonzero_linear_weights_and_attention(tiny_models):
    loaded = tiny_models["tiny-bert"]
    dense = macs(loaded.model, batch=2, seq_len=16, nonzero=False)
    # per token: 2 layers x (4 x 32*32 + 2 x 32*64) linear MACs + 2 layers x 2 x 16 x 32 attention MACs
    assert dense == 2 * 16 * (2 * (4 * 32 * 32 + 2 * 32 * 64) + 2 * 2 * 16 * 32)
    pruned = bake(apply(loaded.fresh(), PruneRecipe("global-l1", 0.5)))
    linear = 2 * (4 * 32 * 32 + 2 * 32 * 64)
    assert macs(pruned, 2, 16) == 2 * 16 * (linear // 2 + 2 * 2 * 16 * 32)


def _runner(loaded, method: str, runtime: str, tmp_path, sparsity: float = 0.5, tag: str = ""):
    from bench.runtimes import Variant, get_runtime

    recipe = PruneRecipe(method, sparsity) if method != "dense" else PruneRecipe("dense")
    work = tmp_path / f"{method}-{runtime}{tag}"
    work.mkdir()
    return get_runtime(runtime).prepare(Variant(loaded, recipe, loaded.batch(2, 16)), work, "cpu")


def test_memory_is_measured_in_a_fresh_process(tmp_path, tiny_models):
    """The parent holds 1 GiB the variant never needs: measured in-process, the floor and peak would hold it."""
    from bench.measure.memory import _status_mb, measure_memory

    runner = _runner(tiny_models["tiny-bert"], "global-l1", "torch-masked", tmp_path)
    ballast = torch.ones(2**28)  # 1 GiB, touched
    parent = _status_mb("VmRSS")
    mem = measure_memory(runner, tmp_path, threads=1)
    assert ballast.sum() > 0
    assert 0 < mem.floor_mb < mem.peak_mb < parent - 900, (mem, parent)


@pytest.mark.minilm
def test_memory_of_identical_tensors_agrees_within_3_percent_and_masks_cost_more(tmp_path, minilm):
    """A/A: dense and baked global-l1@0.5 hold tensors of identical shapes and dtypes; masked holds more."""
    from bench.measure.memory import measure_memory

    dense = measure_memory(_runner(minilm, "dense", "torch-dense", tmp_path), tmp_path, threads=1)
    dense2 = measure_memory(_runner(minilm, "dense", "torch-dense", tmp_path, tag="-again"), tmp_path, threads=1)
    baked = measure_memory(_runner(minilm, "global-l1", "torch-dense", tmp_path), tmp_path, threads=1)
    masked = measure_memory(_runner(minilm, "global-l1", "torch-masked", tmp_path), tmp_path, threads=1)
    assert dense.model_mb > 80  # the 90 MB of weights are in the figure
    assert dense2.model_mb / dense.model_mb == pytest.approx(1.0, abs=0.03)
    assert baked.model_mb / dense.model_mb == pytest.approx(1.0, abs=0.03)
    assert masked.model_mb / dense.model_mb > 1.3
