#!/usr/bin/env bash
# Train a matrix of (algorithm, env config, seed) runs one after another into runs/suite/<algo>_<cfg>_s<seed>,
# skipping finished runs (DONE marker) and resuming interrupted ones (checkpoint.pt present).
#
#   bash tools/run_suite.sh "pearl tcl cocoa moss oracle" "point_robot sparse_point_robot" "0 1 2" 64000
#
# Arguments: algorithms, config names under configs/<algo>/, seeds, total env steps per run. Logs go to
# runs/suite/<run>.log; the evaluation and tables are tools/meta_results.py. Environment: SUITE_DIR (default
# runs/suite) and SUITE_SET, space-separated KEY=VALUE overrides given to every new run as `--set` (a resumed
# run continues with the config.yaml it stored), e.g. SUITE_SET="sac.hidden=[128,128] sac.batch_size=128".
set -uo pipefail
cd "$(dirname "$0")/.."
algos=${1:?algorithms}; cfgs=${2:?configs}; seeds=${3:-0 1 2}; steps=${4:-64000}
out=${SUITE_DIR:-runs/suite}
mkdir -p "$out"
read -ra sets <<< "${SUITE_SET:-}"  # no globbing: values such as [128,128] stay as written
for seed in $seeds; do
  for cfg in $cfgs; do
    for algo in $algos; do
      run="$out/${algo}_${cfg}_s${seed}"
      [ -f "$run/DONE" ] && continue  # policy.pt alone is written at every checkpoint
      args=(--resume)
      if [ ! -f "$run/checkpoint.pt" ]; then args=(); for kv in "${sets[@]}"; do args+=(--set "$kv"); done; fi
      echo "$(date -u +%FT%TZ) start $run" >> "$out/suite.log"
      .venv/bin/runtime train --config "configs/$algo/$cfg.yaml" --out "$run" --seed "$seed" \
        --total-steps "$steps" --no-progress "${args[@]}" > "$run.log" 2>&1
      rc=$?; [ $rc -eq 0 ] && touch "$run/DONE"
      echo "$(date -u +%FT%TZ) done $run rc=$rc" >> "$out/suite.log"
    done
  done
done
