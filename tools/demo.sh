#!/usr/bin/env bash
# The main job, end to end on loopback: serve the bundled MoSS checkpoint, drive it with the simulator client
# through random task switches (non-stationary point robot), record the scenario, replay it through the
# encoder and draw the belief with the change points marked.
#   CKPT=path/to/policy.pt EPISODES=4 OUT=runs/demo bash tools/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_venv.sh
CKPT=${CKPT:-runtime/assets/moss_point_robot_ns.pt}
OUT=${OUT:-runs/demo}
EPISODES=${EPISODES:-4}
mkdir -p "$OUT"
rm -f "$OUT/scenario.msgpack"
PORT=$(.venv/bin/python -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
ADDR=tcp://127.0.0.1:$PORT

echo "== runtime serve --checkpoint $CKPT --bind $ADDR   (log: $OUT/server.log)"
.venv/bin/runtime serve --checkpoint "$CKPT" --bind "$ADDR" --json-logs > "$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  grep -q '"serving"' "$OUT/server.log" 2>/dev/null && break
  kill -0 $SERVER 2>/dev/null || { cat "$OUT/server.log"; echo "server failed to start" >&2; exit 1; }
  sleep 0.25
done

echo "== runtime client --server $ADDR --episodes $EPISODES --record $OUT/scenario.msgpack"
.venv/bin/runtime client --server "$ADDR" --episodes "$EPISODES" --record "$OUT/scenario.msgpack"

echo "== runtime replay $OUT/scenario.msgpack --checkpoint $CKPT --plot $OUT/belief.png"
.venv/bin/runtime replay "$OUT/scenario.msgpack" --checkpoint "$CKPT" --plot "$OUT/belief.png"
echo "== done: belief plot in $OUT/belief.png, scenario log in $OUT/scenario.msgpack"
