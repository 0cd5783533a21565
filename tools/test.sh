#!/usr/bin/env bash
# The test command: installs what it needs into .venv, lints, runs the default (fast) test tier.
# Extra arguments go to pytest (e.g. `bash tools/test.sh -m slow` for the long tier).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_venv.sh
.venv/bin/ruff check envs agents runtime tests tools
.venv/bin/python -m pytest -q "$@"
