"""One test per planned case: equality gate, paired latency (``bench.measure.paired``; its rounds reach
pytest-benchmark's JSON through the plugin's hooks), size, memory, quality and FLOPs, all written to the
case's Record by the plugin, with the roofline (achieved GFLOP/s against the run's measured matmul peaks)."""

import pytest

from bench.steps import roofline


def test_case(case, bench_session, record, timed_rounds, peaks):
    bench_session.describe(case, record)
    reason = bench_session.unavailable(case)
    if reason:
        record.reason = reason
        pytest.skip(reason)
    try:
        if bench_session.isolate:  # a case per subprocess: a crash, hang or OOM costs that case only
            from bench.launch.isolate import run_isolated

            timed_rounds.extend(run_isolated(bench_session, case, record))
        else:
            bench_session.run(case, record)
            timed_rounds.extend(bench_session.last_samples)
    finally:  # the roofline from what was measured (MACs, median latency) and the run's matmul peaks
        record.add(roofline(case, record, peaks))
