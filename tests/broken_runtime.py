"""A test-only runtime whose prepare raises: the case must be recorded as failed, the run go on."""

from bench.runtimes.base import Runtime


class Broken(Runtime):
    name = "broken"
    help = "test only: always raises"
    baseline_runtime = "torch-dense"
    fp32_tolerance = 1e-5

    def prepare(self, variant, workdir, device):
        raise ValueError("planted failure in the broken runtime")


RUNTIME = Broken()
