#!/usr/bin/env bash
# Create .venv (if missing) with the CPU torch wheel first, then this package and its test extras.
# Usage: bash scripts/setup.sh        (idempotent; re-run after pulling)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
# Pin torch before anything else: an unpinned torch would pull a multi-GB CUDA build here.
python -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null \
  || pip install -q "torch==${TORCH_VERSION:-2.13.0}"
pip install -q -e ".[test]"
