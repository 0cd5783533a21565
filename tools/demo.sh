#!/usr/bin/env bash
# The main job, end to end on loopback: serve a bundled checkpoint, drive it with the simulator client through
# random task switches (non-stationary point robot), record the scenario, replay it through the agent's
# belief and draw the task it reads against the true one, the change points marked. By default three bundled
# agents: MoSS and the grid filter (ours, not MoSS) on the point robot whose goal may jump every 25 steps,
# and MoSS on the half cheetah whose running direction may flip every 100 steps (Cheetah-Dir-NS).
#   CKPT=path/to/policy.pt EPISODES=4 OUT=runs/demo bash tools/demo.sh     # one checkpoint of your own
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_venv.sh
CKPTS=${CKPT:-"runtime/assets/moss_point_robot_ns.pt runtime/assets/gridfilter_point_robot_ns.pt runtime/assets/moss_cheetah_dir_ns.pt"}
OUT=${OUT:-runs/demo}
EPISODES=${EPISODES:-4}
SERVER=
trap '[ -n "$SERVER" ] && { kill -TERM $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; }' EXIT

demo() {  # demo CHECKPOINT DIR
  local ckpt=$1 dir=$2 port addr
  mkdir -p "$dir"
  rm -f "$dir/scenario.msgpack"
  port=$(.venv/bin/python -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
  addr=tcp://127.0.0.1:$port

  echo "== runtime serve --checkpoint $ckpt --bind $addr   (log: $dir/server.log)"
  .venv/bin/runtime serve --checkpoint "$ckpt" --bind "$addr" --json-logs > "$dir/server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 120); do
    grep -q '"serving"' "$dir/server.log" 2>/dev/null && break
    kill -0 $SERVER 2>/dev/null || { cat "$dir/server.log"; echo "server failed to start" >&2; exit 1; }
    sleep 0.25
  done

  echo "== runtime client --server $addr --episodes $EPISODES --record $dir/scenario.msgpack"
  .venv/bin/runtime client --server "$addr" --episodes "$EPISODES" --record "$dir/scenario.msgpack"

  # a bundled oracle for the same env (runtime/assets/oracle_<env>.pt) adds its reward to the plot
  local ref=() oracle
  oracle="$(dirname "$ckpt")/oracle_$(basename "$ckpt" | cut -d_ -f2-)"
  [ -f "$oracle" ] && [ "$oracle" != "$ckpt" ] && ref=(--reference "$oracle")
  echo "== runtime replay $dir/scenario.msgpack --checkpoint $ckpt ${ref[*]} --plot $dir/belief.png"
  .venv/bin/runtime replay "$dir/scenario.msgpack" --checkpoint "$ckpt" "${ref[@]}" --plot "$dir/belief.png"
  kill -TERM $SERVER 2>/dev/null || true
  wait $SERVER 2>/dev/null || true
  SERVER=
  echo "== done: belief plot in $dir/belief.png, scenario log in $dir/scenario.msgpack"
  echo
}

set -- $CKPTS
if [ $# -eq 1 ]; then
  demo "$1" "$OUT"
else
  for ckpt in "$@"; do
    name=$(basename "$ckpt" .pt)
    demo "$ckpt" "$OUT/$name"
  done
fi
