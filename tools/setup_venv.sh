#!/usr/bin/env bash
# Create .venv and install the project with its dev and ray extras (idempotent: skipped when pyproject.toml is unchanged).
# torch is pinned to the CPU 2.13 build first, so pip never pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q 'torch==2.13.0'
  .venv/bin/python -m pip install -q -e '.[dev,ray]'  # ray: core only, for tests/test_distributed.py
  rm -f .venv/.installed-*
  touch "$stamp"
fi
