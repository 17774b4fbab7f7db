#!/usr/bin/env bash
# The paper profile's cost on a GPU, in one short run (issue 4): seconds per iteration and peak
# GPU memory of every method at the paper's sizes, through the real training loop on synthetic
# data (training/benchmarks/step_cost.py), so the 30 000 / 6 000-iteration runs can be planned.
#
#   bash training/benchmarks/gpu_check.sh [OUT]       # default OUT: results/gpu_check
#
# On the lent device machine (its python3 has torch but neither monai nor SimpleITK), first put
# their wheels in .whl/ here (about 55 MB; see /work/.library/device/README.md):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl monai SimpleITK
# then run this script with carry [".whl"] and OUT=$OUT. The real datasets do not fit the
# device's 64 MiB transfer next to those wheels, so accuracy at the paper profile is not checked
# here. ITERATIONS (default 20) sets the timed iterations per method.
set -euo pipefail
out="${1:-${OUT:-results/gpu_check}}"
iterations="${ITERATIONS:-20}"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/training:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
work="$(mktemp -d)"  # phantom data and caches stay out of OUT (the device returns 8 files)
mkdir -p "$out"
run() {  # NAME STEP_COST_ARGS...: the table and JSON land in OUT as NAME.md, NAME.json
    local name="$1"; shift
    python3 training/benchmarks/step_cost.py "$@" --iterations "$iterations" --out "$work/$name"
    cp "$work/$name/step_cost.md" "$out/$name.md"
    cp "$work/$name/step_cost.json" "$out/$name.json"
}
paper() {  # DATASET -> the paper profile's dims, patch and batch as step_cost.py arguments
    python3 -c "from arcoseg.benchmarks.profiles import PROFILES
s = PROFILES['paper'].datasets['$1']
print('--dims', s.dims, '--patch', *s.patch, '--batch', s.batch)"
}
run acdc-paper $(paper ACDC)
run la-paper $(paper LA)
