"""A test-only runtime whose prepare raises: the case must be recorded as failed, the run go on."""

from bench.runtimes.base import cuda_unavailable

NAME = "broken"
HELP = "test only: always raises"
BASELINE = "torch-dense"
TOLERANCE = 1e-5
unavailable = cuda_unavailable


def prepare(variant, workdir, device):
    raise ValueError("planted failure in the broken runtime")
