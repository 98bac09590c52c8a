"""Each distinct thing is measured once: an artifact's size by its bytes, its memory by what the child loads,
quality embeddings by the network's weights and the inputs; a different thing is measured, never served from a
cache. Counting fakes stand in for the slow measurements, so every assertion is about calls, not time."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from bench.measure.embed_cache import EmbedCache, network_digest
from bench.measure.memory import Memory, MemoryMeter
from bench.measure.quality import embed_texts
from bench.measure.size import SizeMeter, measure_size
from pruning import PruneRecipe


class _Counting:
    """Wraps a measurement and counts its calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_the_second_identical_artifact_is_not_compressed_again_and_a_different_one_is(tmp_path):
    fake = _Counting(measure_size)
    meter = SizeMeter(None, measure=fake)
    a = meter.measure(_write(tmp_path / "a.bin", b"x" * 5000))
    b = meter.measure(_write(tmp_path / "b.bin", b"x" * 5000))  # another file, the same bytes
    assert fake.calls == 1 and a == b == measure_size(tmp_path / "a.bin")
    c = meter.measure(_write(tmp_path / "c.bin", b"x" * 4999 + b"y"))  # one byte differs
    assert fake.calls == 2 and c == measure_size(tmp_path / "c.bin")


def test_sizes_persist_on_disk_only_when_a_cache_directory_is_given(tmp_path):
    art = _write(tmp_path / "a.bin", bytes(range(256)) * 100)
    first = SizeMeter(tmp_path / "cache")
    size = first.measure(art)
    fake = _Counting(measure_size)
    assert SizeMeter(tmp_path / "cache", measure=fake).measure(art) == size and fake.calls == 0  # a later run
    (tmp_path / "cache2").mkdir()
    SizeMeter(None, measure=fake).measure(art)
    assert fake.calls == 1 and not any((tmp_path / "cache2").iterdir())


def test_a_damaged_size_cache_file_is_a_miss(tmp_path):
    art = _write(tmp_path / "a.bin", b"abc" * 1000)
    SizeMeter(tmp_path / "cache").measure(art)
    for f in (tmp_path / "cache" / "sizes").iterdir():
        f.write_text("{not json")
    fake = _Counting(measure_size)
    assert SizeMeter(tmp_path / "cache", measure=fake).measure(art) == measure_size(art) and fake.calls == 1


class _Runner:
    """What MemoryMeter needs of a runner: serving_files writes a self-contained torch artifact."""

    def __init__(self, payload: bytes):
        self.payload = payload

    def serving_files(self, directory):
        path = directory / "serve.pt"
        path.write_bytes(self.payload)
        return {"kind": "torch", "path": str(path), "imports": [], "device": "cpu"}


def test_memory_is_measured_once_per_distinct_artifact_and_the_baselines_aa_pair_twice(tmp_path):
    fake = _Counting(lambda spec, **_: Memory(100.0 + fake.calls, 50.0, True))
    meter = MemoryMeter(measure=fake)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    first = meter.measure(_Runner(b"weights"), tmp_path / "a", 2)
    assert meter.measure(_Runner(b"weights"), tmp_path / "b", 2) == first and fake.calls == 1
    meter.measure(_Runner(b"other weights"), tmp_path / "a", 2)
    assert fake.calls == 2
    meter.measure(_Runner(b"weights"), tmp_path / "a", 1)  # other threads: another measurement
    assert fake.calls == 3
    base, aa = meter.baseline("dense", _Runner(b"dense"), tmp_path / "b", 2)
    assert fake.calls == 5 and aa != 1.0  # the A/A pair: two fresh children, never one figure twice
    assert meter.baseline("dense", _Runner(b"dense"), tmp_path / "b", 2) == (base, aa) and fake.calls == 5


def test_the_baselines_aa_pair_reads_one_artifact_written_once(tmp_path):
    """Both children of the A/A pair load the same file: serializing the baseline again (seconds for a masked
    MiniLM) would write the same bytes."""
    class Writes(_Runner):
        written = 0

        def serving_files(self, directory):
            Writes.written += 1
            return super().serving_files(directory)

    paths: list = []
    meter = MemoryMeter(measure=lambda spec, **_: (paths.append(spec["path"]), Memory(100.0, 50.0, True))[1])
    assert meter.baseline("dense", Writes(b"dense"), tmp_path, 2)[1] == 1.0
    assert Writes.written == 1 and len(paths) == 2 and paths[0] == paths[1]


def test_memory_of_artifacts_that_are_not_one_file_is_always_measured(tmp_path):
    class Onnx(_Runner):
        def serving_files(self, directory):
            return {**super().serving_files(directory), "kind": "onnx", "inputs": str(directory / "in.pt")}

    fake = _Counting(lambda spec, **_: Memory(100.0, 50.0, True))
    meter = MemoryMeter(measure=fake)
    meter.measure(Onnx(b"w"), tmp_path, 2)
    meter.measure(Onnx(b"w"), tmp_path, 2)
    assert fake.calls == 2


@pytest.fixture
def tiny(tiny_models):
    return tiny_models["tiny-bert"]


TEXTS = ("the first text about markets", "a second one, on football", "and a third")


def test_embeddings_are_computed_once_per_weight_set_and_again_for_other_weights(tiny):
    fake = _Counting(embed_texts)
    cache = EmbedCache(None, embed=fake)
    net = tiny.model
    first = cache.embed_texts(net, tiny.encode, TEXTS, 16)
    twin = copy.deepcopy(net)  # another object, the same weights
    assert torch.equal(cache.embed_texts(twin, tiny.encode, TEXTS, 16), first) and fake.calls == 1
    with torch.no_grad():
        twin.encoder.layer[0].attention.self.query.weight[0, 0] += 1e-3  # one weight differs
    changed = cache.embed_texts(twin, tiny.encode, TEXTS, 16)
    assert fake.calls == 2 and torch.equal(changed, embed_texts(twin, tiny.encode, TEXTS, 16))
    cache.embed_texts(net, tiny.encode, TEXTS[:2], 16)  # other texts
    cache.embed_texts(net, tiny.encode, TEXTS, 8)  # another max_len
    assert fake.calls == 4


def test_masked_and_baked_variants_are_told_apart_by_their_state(tiny):
    """A masked variant holds weight_orig and weight_mask: its key is not the dense model's."""
    from bench.runtimes import Variant

    masked = Variant(tiny, PruneRecipe("global-l1", 0.5), {}).masked()
    assert network_digest(masked) not in (None, network_digest(tiny.model))
    assert network_digest(Variant(tiny, PruneRecipe("global-l1", 0.5), {}).masked()) == network_digest(masked)


def test_embeddings_persist_on_disk_and_a_served_network_is_never_cached(tmp_path, tiny):
    first = EmbedCache(tmp_path / "cache").embed_texts(tiny.model, tiny.encode, TEXTS, 16)
    fake = _Counting(embed_texts)
    later = EmbedCache(tmp_path / "cache", embed=fake)  # a later run
    assert torch.equal(later.embed_texts(tiny.model, tiny.encode, TEXTS, 16), first)
    assert fake.calls == 0 and later.loaded == 1

    class Served(torch.nn.Module):  # a runtime's outputs (ONNX, int8): nothing to key them by
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, **inputs):
            return self.net(**inputs)

    later.embed_texts(Served(tiny.model), tiny.encode, TEXTS, 16)
    later.embed_texts(Served(tiny.model), tiny.encode, TEXTS, 16)
    assert fake.calls == 2


def test_without_a_directory_nothing_is_written_and_a_damaged_file_is_recomputed(tmp_path, tiny):
    EmbedCache(None).embed_texts(tiny.model, tiny.encode, TEXTS, 16)
    assert not any(tmp_path.iterdir())
    EmbedCache(tmp_path).embed_texts(tiny.model, tiny.encode, TEXTS, 16)
    files = list(tmp_path.rglob("*.pt"))
    assert len(files) == 1
    files[0].write_bytes(b"garbage")
    fake = _Counting(embed_texts)
    EmbedCache(tmp_path, embed=fake).embed_texts(tiny.model, tiny.encode, TEXTS, 16)
    assert fake.calls == 1


def test_a_plan_with_cache_false_gives_the_session_no_disk_cache(tmp_path):
    from bench.engine import Session
    from bench.plan import PlanError, plan_from_dict

    d = {"models": ["tiny-bert"], "recipes": [{"method": "global-l1", "sparsity": 0.5}]}
    off = Session(plan_from_dict({**d, "cache": False}), tmp_path / "out", "r", cache_dir=tmp_path / "c")
    on = Session(plan_from_dict(d), tmp_path / "out", "r", cache_dir=tmp_path / "c")
    try:
        assert off.size_meter.directory is None and off.embed_cache.directory is None
        assert on.embed_cache.directory == tmp_path / "c" / "embeddings"
    finally:
        off.close()
        on.close()
    with pytest.raises(PlanError, match="cache must be true or false"):
        plan_from_dict({**d, "cache": "no"})


def test_the_runs_last_lines_give_the_harness_overhead_as_wall_minus_the_measured_phases():
    """Build, equality and latency follow each other; size, memory and quality run side by side (the longest
    counts): 10 + 2 + 3 + max(4, 6, 1) = 21 s measured, so a 30 s wall leaves 9 s of harness overhead."""
    from bench.report.markdown import measured_s, time_spent

    records = [{"phase_s": {"build": 10.0, "equality": 2.0, "latency": 3.0, "size": 4.0, "memory": 6.0, "quality": 1.0},
                "duration_s": 21.5}]
    assert measured_s(records) == pytest.approx(21.0)
    assert "harness overhead 9 s" in time_spent(records, 30.0) and "Wall 30 s" in time_spent(records, 30.0)
    assert "overhead" not in time_spent(records)


def test_data_aware_variants_are_kept_across_runs_only_for_the_same_code_weights_and_threads(tmp_path, monkeypatch):
    from bench import variant_cache

    first = variant_cache.variant_dir(tmp_path, ["tiny-bert"], {1})
    assert variant_cache.variant_dir(tmp_path, ["tiny-bert"], {1}) == first and first.parent == tmp_path / "variants"
    assert variant_cache.variant_dir(tmp_path, ["tiny-bert"], {2}) != first
    assert variant_cache.variant_dir(tmp_path, ["tiny-bert", "tiny-roberta"], {1}) != first
    monkeypatch.setattr(variant_cache, "_sources_digest", lambda: "pruning code changed")
    assert variant_cache.variant_dir(tmp_path, ["tiny-bert"], {1}) != first


def test_a_session_keeps_data_aware_variants_on_disk_unless_the_plan_says_cache_false(tmp_path):
    import os

    from bench.calibrate import CACHE_ENV
    from bench.engine import Session
    from bench.plan import plan_from_dict

    d = {"models": ["tiny-bert"], "recipes": [{"method": "heads+ffn", "sparsity": 0.5, "importance": "fisher",
                                               "calibration": 16}]}
    for cache, inside in ((True, tmp_path / "c" / "variants"), (False, None)):
        session = Session(plan_from_dict({**d, "cache": cache}), tmp_path / "out", "r", cache_dir=tmp_path / "c")
        try:
            where = Path(os.environ[CACHE_ENV])
            assert (where.parent == inside) if cache else where.is_relative_to(session._tmp)
        finally:
            session.close()
