#!/usr/bin/env bash
# One pass of the GPU checks and timings, sized for a short lease on one GPU:
#   bash benchmarks/device_check.sh OUT_DIR
# Writes gpu_check.json, scaling_gpu.json, causal_recall_gpu.json and a log to
# OUT_DIR. Every step has its own time limit, so a slow one cannot starve the
# rest; the rows each step finished are kept.
set -u
out=${1:?usage: device_check.sh OUT_DIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
log="$out/device_check.log"
step() {  # step SECONDS CMD...: run with a time limit, log the exit status
  local limit=$1; shift
  echo "### $(date -u +%T) [$limit s] $*" | tee -a "$log"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$log"
  echo "### exit ${PIPESTATUS[0]}" | tee -a "$log"
}
nvidia-smi -L 2>&1 | tee -a "$log"
step 150 python benchmarks/gpu_check.py --device cuda --json "$out/gpu_check.json"
s="python benchmarks/scaling.py --device cuda --json $out/scaling_gpu.json --append
   --max-seconds 45 --repeats 10 --warmup 3"
step 120 $s --sizes 131072 1048576 4194304 --models local brl
step 90  $s --sizes 131072 1048576 --models gps-multihead gps-performer
step 60  $s --sizes 1048576 4194304 --models local brl --bf16
step 45  $s --sizes 1048576 --models local brl --layers 4
step 150 python benchmarks/causal_recall.py --device cuda --threads 4 \
  --json "$out/causal_recall_gpu.json"
echo "### $(date -u +%T) done" | tee -a "$log"
