#!/usr/bin/env bash
# FOCAL++ Table 1: FOCAL and the FOCAL++ variants on the offline datasets, one run after another, into
# runs/focal_table/<variant>_<env>_s<seed> (finished runs, marked DONE, are skipped; interrupted ones resumed).
#
#   bash tools/run_focal_table.sh "sparse_point_robot point_robot_wind" "0 1 2"
#
# Needs the datasets (runtime collect --config configs/collect/<env>.yaml). Variants: focal (DML, mean
# encoder), contrastive (matrix-form momentum contrast, mean encoder), batch, sequence, parallel, series
# (contrast + attention). Results: python tools/focal_table.py.
set -uo pipefail
cd "$(dirname "$0")/.."
envs=${1:-sparse_point_robot point_robot_wind}; seeds=${2:-0 1 2}
variants=${VARIANTS:-focal contrastive batch sequence parallel series}
out=${TABLE_DIR:-runs/focal_table}
mkdir -p "$out"
for seed in $seeds; do
  for env in $envs; do
    for v in $variants; do
      run="$out/${v}_${env}_s${seed}"
      [ -f "$run/DONE" ] && continue  # policy.pt alone is written at every checkpoint
      if [ "$v" = focal ]; then args=(--config "configs/focal/$env.yaml")
      else a=$v; [ "$v" = contrastive ] && a=none; args=(--config "configs/focalpp/$env.yaml" --set "focal.attention=$a"); fi
      if [ -f "$run/checkpoint.pt" ]; then args=(--config "configs/focal/$env.yaml" --resume); fi
      echo "$(date -u +%FT%TZ) start $run" >> "$out/table.log"
      .venv/bin/runtime train "${args[@]}" --out "$run" --seed "$seed" --no-progress > "$run.log" 2>&1
      rc=$?; [ $rc -eq 0 ] && touch "$run/DONE"
      echo "$(date -u +%FT%TZ) done $run rc=$rc" >> "$out/table.log"
    done
  done
done
