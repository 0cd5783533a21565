#!/usr/bin/env bash
# FOCAL++ Table 1: FOCAL and the FOCAL++ variants on the offline datasets, into
# runs/focal_table/<variant>_<env>_s<seed> (finished runs, marked DONE, are skipped; interrupted ones resumed).
#
#   bash tools/run_focal_table.sh "sparse_point_robot point_robot_wind" "0 1 2"
#
# Envs: sparse_point_robot (FOCAL's sparse reward), sparse_point_robot_pearl (the same env and data under
# PEARL's reward, 1 - d inside the radius), point_robot_wind. Needs the datasets:
#   runtime collect --config configs/collect/sparse_point_robot.yaml
#   runtime collect --config configs/collect/sparse_point_robot.yaml --set env.kwargs.sparse=pearl --out datasets/sparse_point_robot_pearl
#   runtime collect --config configs/collect/point_robot_wind.yaml
# Variants: focal (DML, mean encoder), contrastive (matrix-form momentum contrast, mean encoder), batch,
# sequence, parallel, series (contrast + attention). JOBS=2 trains two runs at a time (each on one torch thread, `train.threads`).
# Results: python tools/focal_table.py.
set -uo pipefail
cd "$(dirname "$0")/.."
envs=${1:-sparse_point_robot point_robot_wind}; seeds=${2:-0 1 2}
variants=${VARIANTS:-focal contrastive batch sequence parallel series}
out=${TABLE_DIR:-runs/focal_table}; data=${DATASETS:-datasets}; jobs=${JOBS:-1}
python=${PYTHON:-.venv/bin/python}
mkdir -p "$out"

one() {  # variant env seed
  local v=$1 env=$2 seed=$3 run="$out/$1_$2_s$3" base=$2 args
  [ -f "$run/DONE" ] && return 0  # policy.pt alone is written at every checkpoint
  [ "$env" = sparse_point_robot_pearl ] && base=sparse_point_robot
  if [ -f "$run/checkpoint.pt" ]; then
    args=(--config "configs/focal/$base.yaml" --resume)  # its stored config.yaml is what it continues with
  else
    if [ "$v" = focal ]; then args=(--config "configs/focal/$base.yaml")
    else local a=$v; [ "$v" = contrastive ] && a=none; args=(--config "configs/focalpp/$base.yaml" --set "focal.attention=$a"); fi
    args+=(--seed "$seed" --set "offline.dataset=$data/$env/train.npz" --set "offline.context_dataset=$data/$env/test.npz")
    [ "$env" = sparse_point_robot_pearl ] && args+=(--set env.kwargs.sparse=pearl)
  fi
  echo "$(date -u +%FT%TZ) start $run" >> "$out/table.log"
  "$python" -m runtime.cli train "${args[@]}" --out "$run" --no-progress > "$run.log" 2>&1
  local rc=$?; [ $rc -eq 0 ] && touch "$run/DONE"
  echo "$(date -u +%FT%TZ) done $run rc=$rc" >> "$out/table.log"
}

for seed in $seeds; do for env in $envs; do for v in $variants; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
  one "$v" "$env" "$seed" &
done; done; done
wait
