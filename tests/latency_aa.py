"""A/A check of the paired latency protocol on a real model: dense torch eager against itself (the
alternatives plan's ``dense@0.00/torch-dense`` case, whose baseline is the same model), timed by today's
protocol and by the old default path's ordering, one after the other in this process.

The old ordering is reproduced here only (it is no longer in bench/): pytest-benchmark's
``pedantic(variant, setup=baseline)`` ran the baseline first in every round, with
``--benchmark-disable-gc`` switching GC off around the variant only; its figure was the median of
per-round ratios with a percentile bootstrap over rounds. An unbiased protocol reads 1.00 within its
CI; the old ordering's distance from 1.00 is its bias on this machine. Run on a quiet machine:

    HF_HUB_OFFLINE=1 .venv/bin/python tests/latency_aa.py [--time-cap 8] [--repeats 3] [--model minilm]
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":  # run as a script from a checkout: use that checkout's bench
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench import steps
from bench.engine import Session
from bench.measure.paired import measure_paired
from bench.plan import builtin_plan


def old_ordering(variant, baseline, time_cap_s: float) -> tuple[float, float, float, int]:
    """The old default path's ordering and interval: baseline first every round, GC off around the variant only,
    median of per-round ratios, percentile bootstrap 95% CI over rounds."""
    v, b, start = [], [], time.perf_counter()
    while time.perf_counter() - start < time_cap_s:
        b.append(baseline())
        gc.disable()
        try:
            v.append(variant())
        finally:
            gc.enable()
    r = np.asarray(v) / np.asarray(b)
    meds = np.median(r[np.random.default_rng(0).integers(0, r.size, size=(2000, r.size))], axis=1)
    lo, hi = np.quantile(meds, [0.025, 0.975])
    return float(np.median(r)), float(lo), float(hi), int(r.size)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm")
    p.add_argument("--time-cap", type=float, default=8.0, help="seconds of timing per protocol and repeat")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    plan = builtin_plan("alternatives", models=[a.model], time_cap_s=a.time_cap, memory=False, quality=False)
    case = next(c for c in plan.cases if c.recipe.method == "dense" and c.runtime == "torch-dense" and c.dtype == "float32")
    with tempfile.TemporaryDirectory() as tmp:
        session = Session(plan, Path(tmp), "latency-aa")
        built = steps.build(session, case)
        for i in range(a.repeats):
            lat = measure_paired(built.runner.timed, built.baseline.timed, time_cap_s=a.time_cap, warmup=plan.warmup,
                                 min_rounds=plan.min_rounds)
            print(f"[{i}] new: {lat.ratio:.4f} [{lat.ratio_lo:.4f}, {lat.ratio_hi:.4f}] {lat.rounds} rounds in "
                  f"{lat.blocks} blocks, verdict {lat.verdict} ({lat.stop}), covers 1: {lat.ratio_lo <= 1 <= lat.ratio_hi}")
            ratio, lo, hi, n = old_ordering(built.runner.timed, built.baseline.timed, a.time_cap)
            print(f"[{i}] old: {ratio:.4f} [{lo:.4f}, {hi:.4f}] {n} rounds, covers 1: {lo <= 1 <= hi}")
        session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
