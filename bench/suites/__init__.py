"""pytest-benchmark suites over the plan's cases: ``pytest --pyargs bench.suites``."""
