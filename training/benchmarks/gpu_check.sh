#!/usr/bin/env bash
# The paper profile's cost on a GPU, in one short run (issues 4 and 16): seconds per iteration,
# ratio to mean teacher, peak GPU memory, host synchronisations per step and the profiler's top
# operations of every method (supervised, mean_teacher, arco-ns/sg/sag) in 2D (ACDC sizes) and
# 3D (LA sizes), through the real training loop on synthetic data (step_cost.py). Sized to finish
# within 6 minutes on one GPU: ITERATIONS timed iterations in 2D (default 10), ITERATIONS_3D in
# 3D (default 5), 2 warm-up iterations each; most of the time is the ten processes' start-up.
#
#   bash training/benchmarks/gpu_check.sh [OUT]       # default OUT: results/gpu_check
#   AMP=1 CHANNELS_LAST=1 bash training/benchmarks/gpu_check.sh   # with --amp --channels-last
#   PROFILE=smoke DEVICE=cpu bash training/benchmarks/gpu_check.sh /tmp/check  # CPU dry run
#
# PROFILE (default paper) picks the sizes from arcoseg.benchmarks.profiles; smoke is tiny, to
# check the script on a CPU. On the lent device machine (its python3 has torch but neither monai
# nor SimpleITK), first put their wheels in .whl/ here (about 55 MB; see
# /work/.library/device/README.md):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl monai SimpleITK
# then run this script with carry [".whl"] and OUT=$OUT. The real datasets do not fit the
# device's 64 MiB transfer next to those wheels, so accuracy at the paper profile is not checked
# here.
set -euo pipefail
out="${1:-${OUT:-results/gpu_check}}"
profile="${PROFILE:-paper}"
device="${DEVICE:-auto}"
python="${PYTHON:-python3}"
extra=()
[ -n "${AMP:-}" ] && extra+=(--amp)
[ -n "${CHANNELS_LAST:-}" ] && extra+=(--channels-last)
if compgen -G ".whl/*.whl" > /dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/training:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
work="$(mktemp -d)"  # phantom data and caches stay out of OUT (the device returns few files)
mkdir -p "$out"
run() {  # NAME STEP_COST_ARGS...: the table and JSON land in OUT as NAME.md, NAME.json
    local name="$1"; shift
    "$python" training/benchmarks/step_cost.py "$@" --device "$device" --warmup 2 \
        --profile-ops 8 ${extra[@]+"${extra[@]}"} --out "$work/$name"
    cp "$work/$name/step_cost.md" "$out/$name.md"
    cp "$work/$name/step_cost.json" "$out/$name.json"
}
sizes() {  # DATASET -> the profile's dims, patch and batch as step_cost.py arguments
    "$python" -c "from arcoseg.benchmarks.profiles import PROFILES
p = PROFILES['$profile']
s = p.datasets.get('$1') or p.generic[2 if '$1' == 'ACDC' else 3]
print('--dims', s.dims, '--patch', *s.patch, '--batch', s.batch)"
}
start=$SECONDS
run acdc-$profile $(sizes ACDC) --iterations "${ITERATIONS:-10}"
run la-$profile $(sizes LA) --iterations "${ITERATIONS_3D:-5}"
cat "$out/acdc-$profile.md" "$out/la-$profile.md"
echo "gpu_check.sh: $((SECONDS - start)) s"
