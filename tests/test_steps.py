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
