#!/usr/bin/env bash
# The GPU check, one command on a machine with a CUDA device and a CUDA build of torch (README.md, Set-up):
#   1. tools/bench_training.py on the GPU: SAC updates/s at point-robot and cheetah sizes, with the ratio to
#      the 2-core CPU figures of docs/benchmarks.md (269 and 106 updates/s; the target is >= 10x at cheetah
#      sizes), then MoSS and oracle CheetahVel epochs on the GPU;
#   2. the same SAC comparison on this machine's CPU, for scale;
#   3. a short MoSS CheetahVel training on the GPU (the initial episodes and 5 epochs): its env steps/s
#      overall and in collection, and its SAC updates per second of learner time;
#   4. tests/test_cuda.py.
# Each part prints its figures; nothing is written outside a temporary directory.
#   bash tools/gpu_check.sh            (PYTHON=... picks the interpreter; default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout, whatever the environment installed
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device (or a CPU build of torch)'; print('torch', torch.__version__, 'on', torch.cuda.get_device_name())"

echo "== 1. training benchmark on cuda"
"$PY" tools/bench_training.py --device cuda --cpu-baseline 269 106 --reps 5 --updates 300 --epochs 3
echo "== 2. the SAC comparison on this machine's CPU (one thread)"
"$PY" tools/bench_training.py --device cpu --skip-epochs --reps 3 --updates 150

echo "== 3. a short MoSS CheetahVel training on cuda"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$PY" -m runtime.cli train --config configs/moss/cheetah_vel.yaml --device cuda --out "$out/moss" \
  --total-steps 14000 --set train.eval_every=14000 --set train.checkpoint_every=14000 --no-progress >"$out/train.json"
"$PY" - "$out/moss/policy.pt" "$out/train.json" <<'EOF'
import json, sys
from agents.checkpoint import load_checkpoint
s = load_checkpoint(sys.argv[1]).stats
wall = json.loads(open(sys.argv[2]).read().splitlines()[-1])["wall_s"]
t, n = s["timing_s"], s["env_steps"]
u = s["updates"]
print(f"device {s['device']}: {n} env steps in {wall:.1f} s = {n / wall:.0f} env steps/s overall "
      f"({n / t['collect']:.0f}/s in collection); {u['sac']} SAC and {u['encoder']} encoder updates, "
      f"{u['sac'] / t['update']:.0f} SAC updates per second of learner time (encoder and relabel included)")
print(f"time split (s): {t}")
EOF

echo "== 4. tests/test_cuda.py"
"$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py
