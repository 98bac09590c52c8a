"""``prunebench advise``: a candidate below the floor is never timed, the budget stops the timing, a re-run with
the same --out skips what is recorded, a floor nothing meets exits 1 naming the closest candidate, bad input
exits 2 with one line; stages are driven with planted quality figures, a fake clock and a fake launcher (so
nothing depends on this machine's speed), and one end-to-end run on tiny-bert goes through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.advise import Search, confirm, expected_speedup, grid, select, time_survivors
from bench.advise_report import closest, pareto
from bench.frontier import parse_floor
from bench.measure.stats import Estimate
from bench.records import SCHEMA

FLOOR = parse_floor("cosine>=0.9")


def planted_score(calls: list):
    """Cosine 0.5 (below the floor) for every recipe at sparsity >= 0.5 and for int8, 1.0 otherwise."""
    def score(c):
        calls.append(c.key)
        bad = c.recipe.sparsity >= 0.5 or "int8" in c.runtime
        return {"cosine": Estimate(0.5 if bad else 1.0, 0, 1)}
    return score


class FakeLaunch:
    """Runs nothing: writes an ok record per candidate not yet recorded (as ``execute --resume`` would), with a
    latency ratio fixed by construction, and advances the fake clock by ``cost`` seconds per case run."""

    def __init__(self, out: Path, clock: list, cost: float = 100.0):
        self.out, self.clock, self.cost, self.ran = out, clock, cost, []
        (out / "timed").mkdir(parents=True, exist_ok=True)
        self.path = out / "timed" / "records.jsonl"

    def records(self) -> list[dict]:
        return [json.loads(x) for x in self.path.read_text().splitlines()] if self.path.is_file() else []

    def __call__(self, cands):
        have = {r["case_id"] for r in self.records()}
        with self.path.open("a") as fh:
            for c in cands:
                if c.key in have:
                    continue
                self.ran.append(c.key)
                self.clock[0] += self.cost
                fh.write(json.dumps({"schema": SCHEMA, "case_id": c.key, "status": "ok", "recipe": c.recipe.label, "runtime": c.runtime,
                                     "dtype": c.dtype, "recipe_config": c.recipe.to_dict(),
                                     "latency_ratio": 1 / expected_speedup(c), "quality_cosine": 1.0,
                                     "quality_cosine_lo": 1.0, "quality_cosine_hi": 1.0}) + "\n")
        return self.records()


def _search(out: Path, budget: float, clock: list) -> Search:
    return Search(out, budget, clock=lambda: clock[0], say=print)


def test_a_candidate_below_the_floor_is_never_timed(tmp_path):
    cands = grid(["heads+ffn", "layers"], ["torch-dense", "onnxruntime-int8"])
    clock, calls = [0.0], []
    search = _search(tmp_path, 1e9, clock)
    survivors = select(search, cands, FLOOR, planted_score(calls))
    launch = FakeLaunch(tmp_path, clock)
    time_survivors(search, survivors, launch, first_estimate_s=1)
    below = {c.key for c in cands if c.recipe.sparsity >= 0.5 or "int8" in c.runtime}
    assert below and len(survivors) == len(cands) - len(below)
    assert not below & set(launch.ran) and len(launch.ran) == len(survivors)
    # an int8/bf16 candidate whose fp32 weight set fails is counted as failing without being scored
    unscored = {c.key for c in cands if c.served and c.recipe.sparsity >= 0.5}
    assert unscored and set(calls) == {c.key for c in cands} - unscored
    assert all(search.selection[k]["scored"].startswith("not scored") and not search.selection[k]["passes"]
               for k in unscored)


def test_the_budget_stops_the_timing_with_a_progress_line(tmp_path, capsys):
    """Each timed case costs 100 fake seconds: a 350 s budget times three and stops before the fourth."""
    cands = grid(["heads+ffn", "layers"], ["torch-dense"])
    clock = [0.0]
    search = _search(tmp_path, 350, clock)
    survivors = select(search, cands, FLOOR, planted_score([]))
    launch = FakeLaunch(tmp_path, clock)
    time_survivors(search, survivors, launch, first_estimate_s=100)
    assert len(survivors) > 3 and len(launch.ran) == 3
    out = capsys.readouterr().out
    assert f"advise: 3/{len(survivors)} candidates timed, 50 s left" in out and "budget reached" in out


def test_the_quality_stage_stops_at_its_share_of_the_budget(tmp_path):
    cands = grid(["layers"], ["torch-dense"])
    clock, calls = [0.0], []

    def slow(c):
        clock[0] += 30
        return planted_score(calls)(c)

    select(_search(tmp_path, 100, clock), cands, FLOOR, slow)
    assert len(calls) == 2  # 30 s each: the third would start past half of 100 s


def test_a_rerun_with_the_same_out_skips_what_is_recorded(tmp_path):
    cands = grid(["heads+ffn", "layers"], ["torch-dense"])
    clock, calls = [0.0], []
    search = _search(tmp_path, 350, clock)
    survivors = select(search, cands, FLOOR, planted_score(calls))
    first = FakeLaunch(tmp_path, clock)
    time_survivors(search, survivors, first, first_estimate_s=100)
    clock2, calls2 = [0.0], []
    again = _search(tmp_path, 1e9, clock2)
    assert select(again, cands, FLOOR, planted_score(calls2)) == survivors and calls2 == []
    second = FakeLaunch(tmp_path, clock2)
    records = time_survivors(again, survivors, second, first_estimate_s=100)
    assert not set(first.ran) & set(second.ran) and len(first.ran) + len(second.ran) == len(survivors)
    assert len(records) == len(survivors)


def test_confirmation_reads_the_report_split_and_the_front_keeps_the_undominated(tmp_path):
    base = {"status": "ok", "recipe": "layers@0.50", "runtime": "torch-dense", "dtype": "float32", "size_ratio": 0.5}
    fast_bad = {**base, "recipe": "layers@0.67", "latency_ratio": 0.3, "quality_cosine": 0.8, "quality_cosine_lo": 0.7,
                "quality_cosine_hi": 0.9}
    ok = {**base, "latency_ratio": 0.5, "quality_cosine": 0.95, "quality_cosine_lo": 0.9, "quality_cosine_hi": 0.99}
    worse = {**ok, "recipe": "layers@0.34", "latency_ratio": 0.6, "size_ratio": 0.7}
    rows = confirm([worse, fast_bad, ok], FLOOR)
    assert [r["advise_passes"] for r in rows] == [False, True, True]  # fastest first; 0.8 fails on the report split
    assert [r["recipe"] for r in pareto(rows)] == ["layers@0.67", "layers@0.50"]


def test_closest_names_the_candidate_nearest_the_floor():
    sel = {"a/torch-dense/float32": {"passes": False, "figures": {"cosine>=0.9": 0.7}},
           "b/torch-dense/float32": {"passes": False, "figures": {"cosine>=0.9": 0.85}}}
    assert closest(sel, [], FLOOR) == "b/torch-dense/float32 with cosine +0.8500"


def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "bench.cli", "advise", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("args, says", [
    (["--floor", "cosine>=0.9", "--budget", "5x"], "--budget '5x' is not a positive duration"),
    (["--floor", "bleu>=1"], "unknown floor metric 'bleu'"),
    (["--floor", "cosine>=0.9", "--methods", "magic"], "not 'magic'"),
    (["--floor", "r@1>=-0.02", "--model", "tiny-bert"], "no quality task for floor r@1>=-0.02 on tiny-bert"),
    (["--floor", "cosine>=0.9", "--model", "/nonexistent/encoder"], "/nonexistent/encoder"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, says):
    p = _cli(*args, "--out", str(tmp_path / "a"), timeout=300)
    assert p.returncode == 2, p.stderr
    assert says in p.stderr and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert not (tmp_path / "a").exists()


TINY = ["--model", "tiny-bert", "--methods", "layers", "--runtimes", "torch-dense", "--no-memory", "--time-cap", "0.3"]


def test_a_floor_no_candidate_meets_exits_1_naming_the_closest(tmp_path):
    p = _cli("--floor", "cosine>=1.01", "--budget", "5m", *TINY, "--out", str(tmp_path / "a"))
    assert p.returncode == 1, p.stderr[-2000:]
    assert "no candidate meets cosine>=1.01; closest: " in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "a" / "timed" / "records.jsonl").exists()  # nothing below the floor was timed


def test_end_to_end_on_tiny_bert_with_a_tiny_budget(tmp_path):
    out = tmp_path / "a"
    p = _cli("--floor", "cosine>=0.5", "--budget", "75", *TINY, "--out", str(out))
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "s left" in p.stdout and "## Recommendation" in p.stdout
    advice = (out / "advice.md").read_text()
    assert "peer: not measured" in advice and "batch 8 x seq_len 128" in advice
    records = [json.loads(x) for x in (out / "timed" / "records.jsonl").read_text().splitlines()]
    assert records and all(r["baseline"] and r["quality_cosine"] is not None for r in records)
    if "ship the dense model" not in advice:
        assert "prunebench export " in advice and "prunebench run --model tiny-bert" in advice
    selection = json.loads((out / "selection.json").read_text())
    assert set(selection) >= {f"{r['recipe']}/{r['runtime']}/{r['dtype']}" for r in records}


LABELS = "".join(f"{t}\t{lab}\n" for lab, words in (("sport", "goal match team win"), ("money", "bank shares price profit"),
                                                    ("tech", "phone chip software web")) for t in words.split())


@pytest.fixture(scope="module")
def own_encoder(tmp_path_factory) -> tuple[Path, Path]:
    """A user's own encoder (tiny-roberta saved as a local HF directory) and their own labelled eval file."""
    from bench.models import load_model

    root = tmp_path_factory.mktemp("own")
    loaded = load_model("tiny-roberta")
    loaded.model.save_pretrained(str(root / "enc"))
    loaded.tokenizer.save_pretrained(str(root / "enc"))
    (root / "labels.tsv").write_text(LABELS)
    return root / "enc", root / "labels.tsv"


def test_own_encoder_and_eval_file_a_floor_no_candidate_meets_names_the_closest(own_encoder, tmp_path, capsys):
    from bench.cli import main

    enc, ev = own_encoder
    code = main(["advise", "--floor", "probe>=0.5", "--model", str(enc), "--eval", str(ev), "--methods", "layers",
                 "--runtimes", "torch-dense", "--no-memory", "--budget", "5m", "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert code == 1 and "no candidate meets probe>=0.5; closest: " in err and " with probe " in err
    assert json.loads((tmp_path / "a" / "selection.json").read_text())  # scored on the user's file


def test_own_eval_file_without_the_floor_metric_exits_2(own_encoder, tmp_path, capsys):
    from bench.cli import main

    enc, ev = own_encoder
    code = main(["advise", "--floor", "r@1>=-0.02", "--model", str(enc), "--eval", str(ev), "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "your labels eval file gives no r@1" in err


def test_openvino_as_shipped_is_searched_and_scored_on_what_it_serves():
    """openvino-auto picks bf16 on AMX by itself, openvino-int8 quantizes: both are in the grid, and neither is
    ever scored on the fp32 weights' embeddings (a bf16 row scored as fp32 would read cosine 1.0)."""
    from bench.advise import grid

    cands = {(c.recipe.label, c.runtime, c.dtype): c for c in grid(methods=["layers"])}
    for rt in ("openvino-auto", "openvino-int8"):
        c = cands[("layers[lstsq]@0.50", rt, "float32")]
        assert c.served, rt
    assert not cands[("layers[lstsq]@0.50", "openvino", "float32")].served  # forced f32: the fp32 numbers


def test_a_candidate_that_cannot_be_scored_is_recorded_as_failed_and_the_search_goes_on(tmp_path):
    """A peer row whose child fails to load crashed the whole advise with a traceback (results/advise-xeon, first
    try): now that candidate is recorded as failed with its error and every other one is still scored."""
    cands = grid(["layers"], ["torch-dense"])
    clock, calls = [0.0], []
    score = planted_score(calls)
    broken = cands[1].key

    def flaky(c):
        if c.key == broken:
            raise RuntimeError("the peer child failed 'load': planted")
        return score(c)

    search = _search(tmp_path, 1e9, clock)
    survivors = select(search, cands, FLOOR, flaky)
    got = search.selection[broken]
    assert got["passes"] is False and got["scored"] == "failed" and "planted" in got["error"]
    assert all(c.key in search.selection for c in cands) and broken not in {c.key for c in survivors}


def test_the_peer_child_gets_an_absolute_workdir(tmp_path, monkeypatch):
    """The child runs with its workdir as cwd: a relative workdir (advise's results/advise-x/work/...) made the
    model path relative to itself, which sentence-transformers then read as a hub repo id."""
    import bench.runtimes.st_peer as st_peer

    seen = {}

    class FakePopen:
        def __init__(self, cmd, **kw):
            seen["cwd"] = kw["cwd"]

    monkeypatch.chdir(tmp_path)
    (tmp_path / "rel").mkdir()
    monkeypatch.setattr(st_peer.subprocess, "Popen", FakePopen)
    child = st_peer.PeerChild(Path(sys.executable), Path("peer_child.py"), Path("rel"))
    child._log.close()
    assert child.workdir == tmp_path / "rel" and Path(seen["cwd"]).is_absolute()
