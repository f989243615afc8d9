#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite offline on the CPU, in two processes.
# Usage: bash scripts/test.sh [PYTEST ARGS]      e.g. -m "not slow and not browser"
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Two pytest-xdist workers for CI's 2 CPU cores (each test holds one core: one torch thread), whole
# files per worker so module fixtures are built once, in the order conftest.py gives them (files with
# slow tests first; xdist would otherwise start the files with the most tests first, and the 2-test
# file of multi-minute sweeps last). SCV_TEST_WORKERS=0: one process, no xdist.
python -m pytest -n "${SCV_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
