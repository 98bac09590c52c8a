"""Measurements: paired latency statistics, size, quality, FLOPs, memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.measure.flops import macs
from bench.measure.latency import Latency, bootstrap_median_ci, measure_paired
from bench.measure.quality import fidelity
from bench.measure.size import measure_size
from pruning import PruneRecipe, apply, bake


def test_latency_ratio_is_the_median_of_paired_ratios():
    lat = Latency((2.0, 2.2, 1.8, 2.0), (1.0, 1.1, 0.9, 1.0), target=0.03)
    assert lat.ratio == pytest.approx(2.0)
    assert lat.ratio_lo == pytest.approx(2.0) and lat.ratio_hi == pytest.approx(2.0)
    assert not lat.unstable


def test_bootstrap_ci_covers_the_true_ratio():
    rng = np.random.default_rng(1)
    ratios = 0.8 * np.exp(rng.normal(0, 0.05, 200))
    lo, hi = bootstrap_median_ci(ratios)
    assert lo < 0.8 < hi and hi - lo < 0.05


def test_latency_refuses_unpaired_or_nonpositive_samples():
    with pytest.raises(ValueError):
        Latency((1.0, 2.0), (1.0,), target=0.03)
    with pytest.raises(ValueError):
        Latency((0.0,), (1.0,), target=0.03)


def _fake(times):
    it = iter(times)
    return lambda: next(it)


def test_paired_measurement_stops_when_the_ci_is_tight():
    rng = np.random.default_rng(0)
    base = 0.01 * np.exp(rng.normal(0, 0.01, 10_000))
    lat = measure_paired(_fake(list(0.5 * base)), _fake(list(base)), target=0.03, time_cap_s=5, warmup=1, min_rounds=8)
    assert lat.ratio == pytest.approx(0.5, rel=0.01)
    assert lat.half_width <= 0.03 and not lat.unstable
    assert 8 <= lat.rounds < 100


def test_paired_measurement_flags_noise_it_cannot_beat_within_the_cap():
    rng = np.random.default_rng(0)
    noisy = list(np.exp(rng.normal(-4, 0.6, 100_000)))
    lat = measure_paired(_fake(noisy), _fake(list(np.exp(rng.normal(-4, 0.6, 100_000)))), target=0.001,
                         time_cap_s=0.05, warmup=1, min_rounds=4, max_rounds=50)
    assert lat.unstable


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


def test_memory_is_measured_in_a_fresh_process(tmp_path):
    from bench.measure.memory import measure_memory
    from bench.plan import Case

    case = Case("tiny-bert", PruneRecipe("global-l1", 0.5), "torch-masked", batch=2, seq_len=16, threads=1)
    mem = measure_memory(case.to_dict(), tmp_path)
    assert mem.peak_mb > mem.floor_mb > 0
