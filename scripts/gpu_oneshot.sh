#!/usr/bin/env bash
# The GPU run of issue 25, as the device machine runs it once (<= 8 min): from the repository root,
#     bash scripts/gpu_oneshot.sh             on the device: install, check, run bench/plans/gpu.toml, copy to $OUT
#     bash scripts/gpu_oneshot.sh --dry-run   anywhere (CPU): check the plan and the wheel list, print each step
# (PRUNEBENCH_GPU_DRY_RUN=1 is the same as --dry-run.) Before carrying the tree to the device, fill .whl/ with
# scripts/gpu_download_wheels.sh. What comes back under $OUT (8 files at most, one folder deep):
# records.jsonl, report.md, env.json, benchmark.json, plan.json, plots.tar, device.txt, log.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=0
[[ "${1:-}" == "--dry-run" || "${PRUNEBENCH_GPU_DRY_RUN:-0}" == 1 ]] && DRY=1
PY=${PYTHON:-python3}
SITE=${SITE:-/tmp/site}
RUN=${RUN:-/tmp/prunebench-gpu}
RUN_BUDGET_S=${RUN_BUDGET_S:-400}  # the run is stopped with SIGINT then (a partial report is written), so all fits in 8 min
PLAN=bench/plans/gpu.toml

step() {  # print a step; run it unless this is a dry run
    echo "+ $*"
    [[ $DRY == 1 ]] || eval "$@"
}

if [[ $DRY == 1 ]]; then
    echo "dry run: checking $PLAN and scripts/gpu_wheels.txt; the steps below are printed, not run"
    HF_HUB_OFFLINE=1 "$PY" scripts/gpu_check.py --plan "$PLAN"
else
    : "${OUT:?OUT must name the folder whose files come back}"
    ls .whl/*.whl >/dev/null || { echo "no wheels in .whl/; run scripts/gpu_download_wheels.sh here first" >&2; exit 2; }
fi
step "$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SITE .whl/*.whl"
step "$PY -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --upgrade --target $SITE ."
step "export PYTHONPATH=$SITE HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false"
step "$PY scripts/gpu_check.py --plan $PLAN --wheels .whl"
step "{ nvidia-smi; $PY -c 'import torch, onnxruntime as o; print(torch.__version__, torch.cuda.get_device_name(0), o.__version__, o.get_available_providers())'; } > \$OUT/device.txt 2>&1 || true"
step "rm -rf $RUN; rc=0; timeout -s INT -k 30 $RUN_BUDGET_S $PY -m bench.cli run --plan $PLAN --out $RUN > \$OUT/log.txt 2>&1 || rc=\$?; echo \"prunebench run exit \$rc\" | tee -a \$OUT/log.txt"
step "for f in records.jsonl report.md env.json benchmark.json plan.json; do [[ -f $RUN/\$f ]] && cp $RUN/\$f \$OUT/; done; true"
step "[[ ! -d $RUN/plots ]] || tar -C $RUN -cf \$OUT/plots.tar plots; tail -n 40 \$OUT/log.txt; ls -l \$OUT"
