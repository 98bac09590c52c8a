"""One test per planned case: equality gate, paired latency (``bench.measure.paired``; its rounds reach
pytest-benchmark's JSON through the plugin's hooks), size, memory, quality and FLOPs, all written to the
case's Record by the plugin."""

import pytest


def test_case(case, bench_session, record, timed_rounds):
    bench_session.describe(case, record)
    reason = bench_session.unavailable(case)
    if reason:
        record.reason = reason
        pytest.skip(reason)
    if bench_session.isolate:  # a case per subprocess: a crash, hang or OOM costs that case only
        from bench.launch.isolate import run_isolated

        timed_rounds.extend(run_isolated(bench_session, case, record))
    else:
        bench_session.run(case, record)
        timed_rounds.extend(bench_session.last_samples)
