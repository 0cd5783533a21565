#!/usr/bin/env bash
# Train a matrix of (algorithm, env config, seed) runs one after another into runs/suite/<algo>_<cfg>_s<seed>,
# skipping finished runs (DONE marker) and resuming interrupted ones (checkpoint.pt present).
#
#   bash tools/run_suite.sh "pearl tcl cocoa moss oracle" "point_robot sparse_point_robot" "0 1 2" 64000
#
# Arguments: algorithms, config names under configs/<algo>/, seeds, total env steps per run. Logs go to
# runs/suite/<run>.log; the evaluation and tables are tools/meta_results.py.
set -uo pipefail
cd "$(dirname "$0")/.."
algos=${1:?algorithms}; cfgs=${2:?configs}; seeds=${3:-0 1 2}; steps=${4:-64000}
out=${SUITE_DIR:-runs/suite}
mkdir -p "$out"
for seed in $seeds; do
  for cfg in $cfgs; do
    for algo in $algos; do
      run="$out/${algo}_${cfg}_s${seed}"
      [ -f "$run/DONE" ] && continue  # policy.pt alone is written at every checkpoint
      resume=""; [ -f "$run/checkpoint.pt" ] && resume="--resume"
      echo "$(date -u +%FT%TZ) start $run" >> "$out/suite.log"
      .venv/bin/runtime train --config "configs/$algo/$cfg.yaml" --out "$run" --seed "$seed" \
        --total-steps "$steps" --no-progress $resume > "$run.log" 2>&1
      rc=$?; [ $rc -eq 0 ] && touch "$run/DONE"
      echo "$(date -u +%FT%TZ) done $run rc=$rc" >> "$out/suite.log"
    done
  done
done
