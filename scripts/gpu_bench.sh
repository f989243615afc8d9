#!/usr/bin/env bash
# The GPU benchmark in one command (`scv bench --gpu-suite`) on a machine with one CUDA GPU:
# random-weight SD 1.5 2048x2048, SDXL 4096x4096 and AnimateDiff 16x1024x1024 pipelines in fp16,
# every variant per step, the NDCFG presets end to end with the VAE decode (DDIM 50), channels_last
# and, if the budget allows, regional torch.compile. Writes bench.json, bench.md and bench.log to
# OUT_DIR (default out/gpu-bench). Wheels in .whl/ (e.g. diffusers on a machine that cannot
# download) are installed to /tmp/site first. Extra arguments go to `scv bench`.
#
#   bash scripts/gpu_bench.sh "$OUT"            # e.g. --budget-s 400 to leave room for torch.compile
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-out/gpu-bench}"
shift || true
python="${PYTHON:-python3}"
if compgen -G ".whl/*.whl" >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
mkdir -p "$out"
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee "$out/bench.log"
"$python" -m scalecrafter_video bench --gpu-suite --out "$out" --no-progress "$@" 2>&1 | tee -a "$out/bench.log"
