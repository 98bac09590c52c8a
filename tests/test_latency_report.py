"""The report's latency protocol lines: the run's median CI half-width and share of decided verdicts, and the
cases whose CIs do not overlap another run's (``prunebench report RUN_DIR --against OTHER``)."""

from __future__ import annotations

import json

from bench.report import render
from bench.report.reproduce import non_overlapping, protocol_summary


def _rec(case: str, ratio: float, lo: float, hi: float, decided: bool = True, status: str = "ok") -> dict:
    return {"case_id": case, "status": status, "model": "m", "recipe": case, "runtime": "torch-dense", "device": "cpu",
            "batch": 2, "seq_len": 16, "latency_ratio": ratio, "latency_ratio_lo": lo, "latency_ratio_hi": hi,
            "latency_half_width": (hi - lo) / 2 / ratio, "latency_decided": decided, "unstable": False}


RUN1 = [_rec("a", 0.50, 0.48, 0.52), _rec("b", 1.00, 0.98, 1.02), _rec("c", 0.90, 0.86, 0.94, decided=False),
        {**_rec("d", 0.7, 0.6, 0.8, status="failed"), "error": "boom"}]
RUN2 = [_rec("a", 0.56, 0.54, 0.58), _rec("b", 1.01, 0.99, 1.03), _rec("c", 0.91, 0.89, 0.93), _rec("d", 0.2, 0.1, 0.3)]


def test_cases_whose_cis_do_not_overlap_another_runs_are_listed():
    apart, both = non_overlapping(RUN1, RUN2)
    assert both == 3  # the failed case is not compared
    assert [(a["case_id"], b["case_id"]) for a, b in apart] == [("a", "a")]
    report = render(RUN1, against=("rerun", RUN2))
    assert "## Reproducibility against `rerun`" in report
    assert "2 of 3 ok cases timed in both runs have overlapping 95% CIs (67%" in report
    assert "| `a` | 0.500 [0.480, 0.520] | 0.560 [0.540, 0.580] |" in report
    assert "Reproducibility" not in render(RUN1)


def test_the_report_gives_the_median_half_width_and_the_share_of_decided_verdicts():
    assert protocol_summary(RUN1) == "Latency: median CI half-width ±4.0%; 2 of 3 verdicts decided (67%)."
    assert protocol_summary([{k: v for k, v in r.items() if k != "latency_decided"} for r in RUN1]) is None  # older runs
    assert "2 of 3 verdicts decided" in render(RUN1)


def test_report_against_a_directory_without_records_is_bad_input(tmp_path, capsys):
    from bench.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RUN1))
    assert main(["report", str(run), "--against", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope does not exist or holds no records.jsonl" in err and "Traceback" not in err
