"""Check, before the device machine spends its minutes, that the GPU run can go: the plan parses (every case
resolvable, >= MIN_CUDA_CASES cuda cases, 2:4 on torch-semi24 among them), its estimated time fits the
budget, and the wheel list carries every package the run imports that the device image lacks (and, with
``--wheels DIR``, that DIR holds a cp312/py3 wheel for each). Used by scripts/gpu_oneshot.sh, in its
--dry-run on a CPU machine (the tests run it) and before the real run on the device.

Exit 0: ready; 2: not, with one line per problem naming it and the fix.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIN_CUDA_CASES = 20
BUDGET_S = 480  # the device runs the script once, within 8 minutes
# Seconds each part costs on an H100 (estimates from the runtimes' work: build, equality, a latency cap of
# time_cap_s, memory in a fresh process, quality), install and this check included in FIXED_S.
FIXED_S = 60
PER_CASE_S = 5.0  # besides the latency cap
COMPILE_S = 30.0  # inductor compile of one case
RECOVERY_S = 15.0  # one lstsq re-fit on the CPU (the variant is cached across batch sizes)
# Distributions in the device image (/work/.library/device/KINDS.md, "Python packages already there"), by
# the names prunebench's pyproject uses; anything else the run imports comes from the wheel list.
DEVICE_HAS = {"torch", "transformers", "safetensors", "numpy", "pandas", "tabulate", "matplotlib", "psutil", "pytest",
              "pytest-benchmark", "pytest-timeout", "scikit-learn", "onnx", "onnxscript", "setuptools", "wheel"}
# A plan runtime -> the distribution it needs on cuda beyond DEVICE_HAS (the image's onnxruntime is the CPU build).
RUNTIME_NEEDS = {"onnxruntime": "onnxruntime-gpu"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def wheel_list(path: Path) -> dict[str, str]:
    """``name -> requirement`` of each line of the wheel list (comments and blank lines skipped)."""
    out = {}
    for line in path.read_text().splitlines():
        req = line.split("#", 1)[0].strip()
        if req:
            out[_name(req)] = req
    return out


def needed(pyproject: Path, runtimes: set[str]) -> set[str]:
    """The distributions the run imports: prunebench's dependencies, its onnx extra where the plan runs
    onnxruntime, and the GPU builds ``RUNTIME_NEEDS`` names, less what the device image has."""
    project = tomllib.loads(pyproject.read_text())["project"]
    deps = {_name(d) for d in project["dependencies"]}
    if "onnxruntime" in runtimes:
        deps |= {_name(d) for d in project["optional-dependencies"]["onnx"]} - {"onnxruntime"}
    deps |= {RUNTIME_NEEDS[r] for r in runtimes if r in RUNTIME_NEEDS}
    return deps - DEVICE_HAS


def estimate_s(plan) -> float:
    """Seconds the plan should take on the device, install included."""
    total, recovered = float(FIXED_S), set()
    for c in plan.cases:
        total += PER_CASE_S + plan.time_cap_s
        total += COMPILE_S if c.runtime == "torch-compile" else 0.0
        if c.recipe.recover not in (None, "none") and (c.model, c.recipe) not in recovered:
            recovered.add((c.model, c.recipe))
            total += RECOVERY_S
    return total


def _has_wheel(folder: Path, name: str) -> bool:
    stem = name.replace("-", "_")
    return any(w.name.lower().startswith(stem + "-") and ("cp312" in w.name or "py3" in w.name)
               for w in folder.glob("*.whl"))


def check(plan_path: Path, wheels_txt: Path, wheels_dir: Path | None) -> list[str]:
    """The problems that stop the GPU run (empty: ready)."""
    from bench.plan import PlanError, load_plan

    try:
        plan = load_plan(plan_path)
    except (PlanError, ValueError) as exc:
        return [f"{plan_path}: {exc}"]
    problems = []
    cuda = [c for c in plan.cases if c.device == "cuda"]
    if len(cuda) < MIN_CUDA_CASES:
        problems.append(f"{plan_path} has {len(cuda)} cuda cases; give at least {MIN_CUDA_CASES} (devices = [\"cuda\"])")
    if not any(c.runtime == "torch-semi24" and c.recipe.method == "2:4" for c in cuda):
        problems.append(f"{plan_path} has no 2:4 case on torch-semi24; add a recipe method = \"2:4\", runtimes = [\"torch-semi24\"]")
    est = estimate_s(plan)
    print(f"plan {plan.name}: {len(plan.cases)} cases, {len(cuda)} on cuda, estimated {est / 60:.1f} min "
          f"(budget {BUDGET_S / 60:.0f} min)")
    if est > BUDGET_S:
        problems.append(f"{plan_path} is estimated at {est:.0f} s, over the {BUDGET_S} s budget; drop cases or lower time_cap_s")
    listed = wheel_list(wheels_txt)
    for dist in sorted(needed(ROOT / "pyproject.toml", {c.runtime for c in plan.cases}) - set(listed)):
        problems.append(f"{wheels_txt} does not carry {dist}, which the run imports and the device image lacks; add a line for it")
    if wheels_dir is not None:
        for dist in sorted(listed):
            if not _has_wheel(wheels_dir, dist):
                problems.append(f"{wheels_dir} has no cp312 wheel of {dist}; run scripts/gpu_download_wheels.sh")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", type=Path, default=ROOT / "bench" / "plans" / "gpu.toml")
    ap.add_argument("--wheel-list", type=Path, default=ROOT / "scripts" / "gpu_wheels.txt")
    ap.add_argument("--wheels", type=Path, help="also check that this folder holds each listed wheel")
    a = ap.parse_args(argv)
    problems = check(a.plan, a.wheel_list, a.wheels)
    for p in problems:
        print(f"gpu_check: {p}", file=sys.stderr)
    if not problems:
        print("gpu_check: ready")
    return 2 if problems else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
