"""One test per planned case: equality gate, paired latency (through pytest-benchmark), size,
memory, quality and FLOPs, all written to the case's Record by the plugin."""

import pytest


def test_case(case, benchmark, bench_session, record, isolated_rounds):
    bench_session.describe(case, record)
    reason = bench_session.unavailable(case)
    if reason:
        record.reason = reason
        pytest.skip(reason)
    if bench_session.isolate:  # a case per subprocess: a crash, hang or OOM costs that case only
        from bench.launch.isolate import run_isolated

        isolated_rounds.extend(run_isolated(bench_session, case, record))  # the plugin puts them in benchmark.json
    else:
        bench_session.run(case, record, benchmark)
