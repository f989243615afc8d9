#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the main job on the model shipped in the package:
# the repetition benchmark `scv demo` (no download, no GPU). Extra arguments go to `scv demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
scv demo --out out/demo "$@"
