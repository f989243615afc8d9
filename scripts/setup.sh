#!/usr/bin/env bash
# Create .venv (if missing) with torch 2.13.0 first, then this package and its test extras.
# Usage: bash scripts/setup.sh        (idempotent; re-run after pulling)
# Which torch build pip installs is pip's choice from its index: from PyPI on Linux that is the
# CUDA build (several GB). For the CPU-only build: TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# bash scripts/setup.sh (or that index's cuXXX folder for a given CUDA version).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first and pinned, so the package's own `torch>=2.4` never upgrades it to another build. Its
# wheels (torch and its dependencies) are kept in .venv/wheels, so that scripts/wheel_smoke.sh installs
# the same build into its fresh venv without asking the index again (the CUDA build is several GB:
# rm -rf .venv/wheels frees them; the smoke then installs from the index).
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
if ! python -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('$TORCH_VERSION') else 1)" 2>/dev/null
then
  pip download -q -d .venv/wheels "torch==$TORCH_VERSION" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
  pip install -q --no-index --find-links .venv/wheels "torch==$TORCH_VERSION"
fi
pip install -q -e ".[test]"
