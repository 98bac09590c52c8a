"""Planted slowdowns, to check that the regression gate catches them.

:func:`plant_records` is the deterministic one the tests use: a copy of a run directory whose matching
cases carry a latency ratio (and its CI) worse by a stated factor, so a test cannot pass or fail by
machine load. The runtime below plants one in real timing, for checking the gate by hand.

It replaces ``torch-dense`` (same name, so case ids match a normal run's) with torch-dense plus extra
compute after every forward of a *pruned* variant, calibrated at prepare time to ``extra`` x that
forward's own CPU time: the paired latency ratio of each pruned case rises by about ``extra``, while
the dense baseline is untouched. It models a regression in how pruned variants execute (e.g.
hooks left on).
It never ships in the product's runtime list: ``install`` registers it, and so does this script:

    python tests/planted_slowdown.py 0.10 run --plan bench/plans/ci.toml --no-memory --out /tmp/planted10
    prunebench compare results/baseline /tmp/planted10
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # run as a script from a checkout: use that checkout's bench
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.runtimes import Runner, Variant
from bench.runtimes import torch_dense as _dense

MODULE = "bench.runtimes._planted_slowdown"
PRUNED_DENSE = "*/torch-dense/*"  # pattern of the cases the plants slow down (dense@ cases excluded below)


def plant_records(src: Path, dst: Path, factor: float, pattern: str = PRUNED_DENSE, ci: float | None = None) -> Path:
    """A copy of run directory ``src`` at ``dst`` whose pruned cases matching ``pattern`` have latency_ratio and
    its CI multiplied by ``factor`` (the latency they report, slower by construction). ``ci`` first sets every
    case's CI to ratio x (1 -+ ci), so the plant is judged the same whatever CI the source run measured."""
    shutil.copytree(src, dst)
    lines = (dst / "records.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines if x.strip()]
    for r in recs:
        if r.get("latency_ratio") is None:
            continue
        if ci is not None:
            r["latency_ratio_lo"], r["latency_ratio_hi"] = r["latency_ratio"] * (1 - ci), r["latency_ratio"] * (1 + ci)
        if fnmatch.fnmatchcase(r["case_id"], pattern) and "/dense@" not in r["case_id"]:
            for k in ("latency_ratio", "latency_ratio_lo", "latency_ratio_hi"):
                r[k] *= factor
    (dst / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return dst
EXTRA = 0.15  # fraction of each pruned forward's time spent in extra work


class SlowRunner(Runner):
    """torch-dense's runner, then extra compute of ``extra`` x the forward's own (CPU) cost.

    The extra work is real compute (small matmuls on the same threads), not a timed wait, so on a
    loaded machine it is stretched like the forward is.
    """

    def __init__(self, inner: Runner, extra: float):
        self.inner, self.extra = inner, extra
        self.device, self.artifact, self.model = inner.device, inner.artifact, inner.model
        gen = torch.Generator().manual_seed(0)
        self._a = torch.randn(32, 64, generator=gen).to(self.device)
        self._b = torch.randn(64, 64, generator=gen).to(self.device)
        self.units = 0
        self._calibrate()

    def _work(self, units: int) -> None:
        with torch.inference_mode():
            for _ in range(units):
                torch.mm(self._a, self._b)
        if self.device == "cuda":
            torch.cuda.synchronize()

    def _calibrate(self, pairs: int = 20) -> int:
        """Units of work whose CPU time is ``extra`` x the forward's (per torch thread; the small matmuls run
        on one). CPU time, unlike wall time, does not count the time other processes take the core, so
        the plant is the same amount of work on a quiet or a loaded machine."""
        threads = torch.get_num_threads()
        self.inner()
        self.units = 50
        for _ in range(2):
            ratios = []
            for _ in range(pairs):
                c0 = time.process_time()
                self.inner()
                c1 = time.process_time()
                self._work(self.units)
                ratios.append((time.process_time() - c1) / max((c1 - c0) / threads, 1e-9))
            self.units = max(1, round(self.units * self.extra / max(statistics.median(ratios), 1e-6)))
        return self.units

    def __call__(self) -> None:
        self.inner()
        self._work(self.units)

    def outputs(self, inputs: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        return self.inner.outputs(inputs)


class PlantedDense(_dense.TorchDense):
    """torch-dense (same name and tolerance) whose pruned variants run ``EXTRA`` slower."""

    help = "TEST ONLY: torch-dense with a planted slowdown of pruned variants"

    def prepare(self, variant: Variant, workdir: Path, device: str) -> Runner:
        runner = super().prepare(variant, workdir, device)
        return runner if variant.recipe.method == "dense" else SlowRunner(runner, EXTRA)


RUNTIME = PlantedDense()


def install(extra: float, monkeypatch=None):
    """Register this module as ``torch-dense`` with ``extra`` slowdown (through ``monkeypatch`` if given)."""
    from bench import runtimes

    spec = importlib.util.spec_from_file_location(MODULE, __file__)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.EXTRA = extra
    if monkeypatch is not None:
        monkeypatch.setitem(sys.modules, MODULE, mod)
        monkeypatch.setitem(runtimes.RUNTIMES, "torch-dense", MODULE.rsplit(".", 1)[1])
    else:
        sys.modules[MODULE] = mod
        runtimes.RUNTIMES["torch-dense"] = MODULE.rsplit(".", 1)[1]
    return mod


def main(argv: list[str]) -> int:
    """``planted_slowdown.py EXTRA <prunebench args>``: run prunebench with the slowdown planted."""
    if len(argv) < 2:
        print("usage: python tests/planted_slowdown.py EXTRA run [prunebench run options]", file=sys.stderr)
        return 2
    install(float(argv[0]))
    from bench import cli
    from bench.report import write_report

    rest = argv[1:]
    sys.argv = ["prunebench", *rest]
    code = cli.main(rest)
    if rest[0] == "run" and "--out" in rest:
        out = Path(rest[rest.index("--out") + 1])
        if (out / "records.jsonl").is_file():  # say in the report that this run was planted
            command = "python tests/planted_slowdown.py " + " ".join(shlex.quote(x) for x in argv)
            (out / "command.txt").write_text(command + "\n")
            write_report(out)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
