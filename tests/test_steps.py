"""A case's steps return typed results; the Record is assembled from them (Record.from_parts), and what a step
measured before a later one failed stays in the record."""

from dataclasses import asdict, dataclass

import pytest

from bench import steps
from bench.engine import Session
from bench.plan import Case, Plan
from bench.records import Record
from pruning import PruneRecipe


@dataclass(frozen=True)
class _Part:
    values: dict

    def record_fields(self) -> dict:
        return self.values


def test_from_parts_sets_each_parts_fields_in_order():
    rec = Record.from_parts(_Part({"latency_ratio": 0.5, "rounds": 3}), _Part({"rounds": 7}), case_id="c")
    assert (rec.case_id, rec.latency_ratio, rec.rounds) == ("c", 0.5, 7)  # the later part wins
    assert rec.status == "ok" and rec.size_bytes is None


def test_a_part_naming_an_unknown_field_is_refused_by_name():
    with pytest.raises(TypeError, match=r"_Part.record_fields\(\) names latency_ratoi, not Record fields"):
        Record.from_parts(_Part({"latency_ratoi": 0.5}))


def _case(**kw) -> Case:
    return Case("tiny-bert", PruneRecipe("global-l1", 0.5), "torch-dense", batch=2, seq_len=16, threads=1, **kw)


@pytest.fixture
def session(tmp_path):
    s = Session(Plan((_case(),), memory=False, quality=True, time_cap_s=0.5, min_rounds=5), tmp_path / "run", "test")
    yield s
    s.close()


def test_the_record_of_a_run_is_its_steps_results(session):
    case = _case()
    rec = Record()
    session.describe(case, rec)
    session.run(case, rec)
    info = steps.describe("test", case)
    expect = Record.from_parts(info).__dict__
    got = asdict(rec)
    for name in ("case_id", "method", "recipe", "baseline", "tolerance", "fingerprint"):
        assert got[name] == expect[name]
    assert rec.recipe_config == {"method": "global-l1", "sparsity": 0.5, "scope": "linear", "norm": None,
                                 "allocation": None, "seed": 0} == case.recipe.to_dict()
    assert rec.sparsity_actual == 0.5 and rec.params > 0 and 0 < rec.flops_ratio <= 1
    assert rec.latency_ratio is not None and rec.efficiency == pytest.approx(rec.flops_ratio / rec.latency_ratio)
    assert rec.size_safetensors_ratio == pytest.approx(rec.size_bytes / rec.dense_safetensors_bytes)
    assert rec.quality_cosine is not None
    assert set(rec.phase_s) == {"build", "equality", "latency", "size", "quality"}
    assert rec.duration_s >= rec.phase_s["latency"]


def test_a_failing_step_keeps_what_the_steps_before_it_measured(session, monkeypatch):
    case = _case()

    def broken(*a, **k):
        raise RuntimeError("quality scorer broke")

    monkeypatch.setattr(session, "quality", broken)
    rec = Record()
    session.describe(case, rec)
    with pytest.raises(RuntimeError, match="quality scorer broke"):
        session.run(case, rec)
    assert rec.max_abs_diff is not None and rec.latency_ratio is not None  # equality and latency kept
    assert rec.size_bytes is not None  # the size ran beside the failed quality, and is kept too
    assert rec.quality_cosine is None and "quality" in rec.phase_s and rec.duration_s is not None


# -- the smoke budget and work the run does not need (issue 21) ---------------------------------------------------------

def test_the_baseline_artifact_is_sized_by_its_raw_bytes_and_only_the_cases_own_is_compressed(session):
    """Every size ratio divides by the baseline's raw bytes; gzip of the baseline is no figure, so only the case's
    own artifact is compressed (a dense MiniLM's gzip costs seconds)."""
    from bench.measure.size import SizeMeter, measure_size, raw_bytes

    compressed: list = []

    def counting(artifact):
        compressed.append(artifact)
        return measure_size(artifact)

    session.size_meter = SizeMeter(None, measure=counting)
    case, rec = _case(), Record()
    session.run(case, rec)
    base = session.baseline(case).artifact
    assert len(compressed) == 1 and compressed[0] != base
    assert rec.size_ratio == pytest.approx(rec.size_bytes / raw_bytes(base))
    assert rec.size_compressed_ratio == pytest.approx(rec.size_compressed_bytes / raw_bytes(base))


def test_memory_cases_measures_the_first_cases_and_the_others_say_why_not(tmp_path):
    from bench.measure.memory import Memory, MemoryMeter

    first, second = _case(), Case("tiny-bert", PruneRecipe("global-l1", 0.25), "torch-dense", batch=2, seq_len=16,
                                  threads=1)
    calls: list = []

    def fake(spec, **kw):
        calls.append(spec["path"])
        return Memory(100.0, 40.0, True)

    s = Session(Plan((first, second), memory_cases=1, quality=False, time_cap_s=0.5, min_rounds=5), tmp_path / "r", "t")
    s.memory_meter = MemoryMeter(measure=fake)
    try:
        a, b = Record(), Record()
        s.run(first, a)
        s.run(second, b)
    finally:
        s.close()
    assert a.peak_mem_mb == 100.0 and a.mem_aa_ratio == 1.0 and a.memory_skipped is None and "memory" in a.phase_s
    assert len(calls) == 3  # the variant, and its baseline twice (A/A)
    assert b.peak_mem_mb is None and b.mem_ratio is None and "memory" not in b.phase_s
    assert "memory_cases = 1" in b.memory_skipped and "first 1 of 2 cases" in b.memory_skipped
    assert b.size_bytes is not None and b.latency_ratio is not None  # every other phase still ran


def test_compress_cases_gzips_the_first_cases_and_the_others_keep_raw_sizes_and_say_why(tmp_path, monkeypatch):
    import bench.measure.size as size_mod

    first, second = _case(), Case("tiny-bert", PruneRecipe("global-l1", 0.25), "torch-dense", batch=2, seq_len=16,
                                  threads=1)
    gzipped: list = []
    real = size_mod._compressed
    monkeypatch.setattr(size_mod, "_compressed", lambda path: gzipped.append(path) or real(path))
    s = Session(Plan((first, second), compress_cases=1, memory=False, quality=False, cache=False, time_cap_s=0.5,
                     min_rounds=5), tmp_path / "r", "t")
    try:
        a, b = Record(), Record()
        s.run(first, a)
        s.run(second, b)
    finally:
        s.close()
    assert len(gzipped) == 1  # the first case's artifact only; the baseline is never gzipped
    assert a.size_compressed_bytes and a.size_compressed_ratio and a.compress_skipped is None
    assert b.size_compressed_bytes is None and b.size_compressed_ratio is None
    assert "compress_cases = 1" in b.compress_skipped and "first 1 of 2 cases" in b.compress_skipped
    assert b.size_bytes and b.size_ratio and b.latency_ratio is not None  # raw size and every other phase still ran


def test_the_memory_fork_server_starts_before_the_build_and_is_idle_before_anything_is_timed(tmp_path, monkeypatch):
    """Its imports (seconds) overlap the build of a case that measures memory, and never the timing; a case the
    plan measures no memory for starts nothing."""
    from bench.measure import memory
    from bench.measure.memory import Memory, MemoryMeter

    events: list = []
    monkeypatch.setattr(memory, "prestart", lambda: events.append("prestart"))
    monkeypatch.setattr(memory, "settle", lambda **kw: events.append("settle"))
    for name in ("build", "equality", "latency"):
        real = getattr(steps, name)
        monkeypatch.setattr(steps, name, lambda *a, _real=real, _name=name: (events.append(_name), _real(*a))[1])
    cases = (_case(), Case("tiny-bert", PruneRecipe("global-l1", 0.25), "torch-dense", batch=2, seq_len=16, threads=1))
    s = Session(Plan(cases, memory_cases=1, quality=False, time_cap_s=0.5, min_rounds=5), tmp_path / "r", "t")
    s.memory_meter = MemoryMeter(measure=lambda spec, **kw: Memory(100.0, 40.0, True))
    try:
        for case in cases:
            s.run(case, Record())
    finally:
        s.close()
    assert events == ["prestart", "build", "equality", "settle", "latency", "build", "equality", "latency"]
