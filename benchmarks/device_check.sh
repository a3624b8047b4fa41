#!/usr/bin/env bash
# The GPU checks and timings, sized for a short lease on one GPU:
#   bash benchmarks/device_check.sh OUT_DIR [STEP ...]
# STEPs (default: all, in this order): checks scaling scaling-bf16
# scaling-4layer scaling-gps step recall. The step step times training steps on
# real molhiv batches (benchmarks/step_time.py --device cuda), with the raw data
# under $DATA_ROOT (default ../shared/datasets; the ogb package is needed). Three
# more steps, not in the default list, show where BRL's time goes at 1M nodes:
# the costliest operators of one fwd+bwd per model, then the same sizes with
# TF32 matmuls and with folded reservoir projections; at most 320 s, in a call
# of their own (profile is what showed the split token-node products at work):
#   bash benchmarks/device_check.sh OUT_DIR profile scaling-tf32 scaling-fold
# The tree step, also not in the default list, trains Tree-NeighborsMatch at r = 5 and 6
# (issue 12) in a call of its own; it writes long_range_gpu.json (rows that finished) and
# tree_rR.tar.part-* (the run folders, to resume on the next lease; see the step):
#   bash benchmarks/device_check.sh OUT_DIR tree
# The checks are the pytest tests marked
# cuda (tests/device); their --device-report is gpu_check.json. Writes
# gpu_check.json, scaling_gpu.json, step_time_gpu.json, causal_recall_gpu.json and
# device_check.log to OUT_DIR. Every step has its
# own time limit, so a slow one cannot starve the rest; the rows each step
# finished are kept (scaling rows are appended to one file).
set -u
out=${1:?usage: device_check.sh OUT_DIR [STEP ...]}
shift
steps=${*:-checks scaling scaling-bf16 scaling-4layer scaling-gps step recall}
data=${DATA_ROOT:-../shared/datasets}
mkdir -p "$out"
out=$(cd "$out" && pwd)  # OUT as given, relative to the caller, before the cd below
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
log="$out/device_check.log"
run_step() {  # run_step SECONDS CMD...: run with a time limit, log the exit status
  local limit=$1; shift
  echo "### $(date -u +%T) [$limit s] $*" | tee -a "$log"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$log"
  echo "### exit ${PIPESTATUS[0]}" | tee -a "$log"
}
scaling="python benchmarks/scaling.py --device cuda --json $out/scaling_gpu.json --append
         --max-seconds 40 --repeats 5 --warmup 2"
nvidia-smi -L 2>&1 | tee -a "$log"
for s in $steps; do
  case $s in
    checks) run_step 120 python -m pytest -q -p no:cacheprovider -m cuda tests/device \
              --device-report "$out/gpu_check.json" ;;
    scaling) run_step 130 $scaling --sizes 131072 1048576 4194304 --models mpnn brl ;;
    scaling-bf16) run_step 100 $scaling --sizes 1048576 4194304 --models mpnn brl --bf16 ;;
    scaling-4layer) run_step 60 $scaling --sizes 1048576 --models mpnn brl --layers 4 ;;
    scaling-gps) run_step 90 $scaling --sizes 131072 1048576 --models full performer ;;
    step) # the issue's model (batch norm, OGB encoders), then the shipped molhiv model
          run_step 90 python benchmarks/step_time.py --root "$data" --device cuda \
            --models brl mpnn full --json "$out/step_time_gpu.json"
          run_step 60 python benchmarks/step_time.py --root "$data" --device cuda \
            --pre-norm --pe rwse --fold --models brl mpnn --json "$out/step_time_gpu.json" ;;
    profile) run_step 120 $scaling --sizes 1048576 --models mpnn brl --profile 15 ;;
    scaling-tf32) run_step 100 $scaling --sizes 1048576 4194304 --models mpnn brl --tf32 ;;
    scaling-fold) run_step 100 $scaling --sizes 1048576 4194304 --models brl --fold ;;
    tree) # Tree-NeighborsMatch, published protocol (linear head), BRL at r = 5 and 6 side by
          # side for TREE_SECONDS (default 360; the lease's own limit must allow about 60 s
          # more, or nothing is packed), a checkpoint every 10 passes. The run folders live
          # under TREE_RUNS (default runs/tree_lease, git-ignored, relative to the repo),
          # not under OUT: a lease returns at most 8 files, none over two folders down. So
          # each run folder comes back as tree_rR.tar in parts of 15 MiB. For the next
          # lease, unpack them into runs/tree_lease (cat tree_rR.tar.part-* | tar -x -C
          # runs/tree_lease), carry that folder, and the runs resume. Rows that finish go to
          # OUT/long_range_gpu.json. TREE_DEVICE and TREE_SIZES exist to try it on a CPU.
          runs=${TREE_RUNS:-runs/tree_lease}
          device=${TREE_DEVICE:-cuda}
          suffix=-log10; [ "$device" = cpu ] || suffix="$suffix-${device//:/}"
          for r in ${TREE_SIZES:-5 6}; do
            run_step "${TREE_SECONDS:-360}" python experiments/long_range.py \
              --tasks tree-published --sizes "$r" --models brl --device "$device" \
              --tree-log-passes 10 --runs "$runs" --json "$out/long_range_gpu.json" &
          done
          wait
          rm -f "$out/long_range_gpu.json.lock"  # one file fewer to return
          for r in ${TREE_SIZES:-5 6}; do
            # this step's folder only (its log interval and device), not older runs beside it
            for d in "$runs"/tree-published-"$r"-brl-s0-*"$suffix"; do
              [ -d "$d" ] || continue
              rm -f "$out"/tree_r"$r".tar.part-*
              ( set -o pipefail
                tar -C "$runs" -cf - "$(basename "$d")" | split -b 15m - "$out/tree_r$r.tar.part-" ) \
                || echo "### packing $d failed" | tee -a "$log"
              ls -l "$out"/tree_r"$r".tar.part-* | tee -a "$log"
            done
          done ;;
    recall) run_step 150 python experiments/causal_recall.py --device cuda --threads 4 \
              --json "$out/causal_recall_gpu.json" ;;
    *) echo "unknown step '$s'" | tee -a "$log"; exit 2 ;;
  esac
done
echo "### $(date -u +%T) done" | tee -a "$log"
