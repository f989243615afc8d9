#!/usr/bin/env bash
# What a user of the built package gets: build the wheel, install it (not editable) into a fresh
# venv, and from a folder outside the checkout run `scv` and the engine (scripts/wheel_smoke.py).
# Run by .ci/run after the test suite. Usage: bash scripts/wheel_smoke.sh
# The suite covers each command's options; this runs each kind of command once on the installed
# wheel (tiny and shipped models, package data), with the fewest steps and sizes that still do so.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"${PYTHON:-python3}" -m venv "$WORK/venv"
PY="$WORK/venv/bin/python"
SCV="$WORK/venv/bin/scv"
# torch first, as scripts/setup.sh does. --no-compile: byte-compiling torch and transformers is
# minutes on 2 cores, for a throwaway venv. The torch wheels scripts/setup.sh installed .venv from
# (it keeps them in .venv/wheels): the same build, installed without asking an index again; without
# them, pip's choice from its index (TORCH_INDEX_URL picks a build, e.g. PyTorch's CPU wheel index).
TORCH="torch==${TORCH_VERSION:-2.13.0}"
if compgen -G "$ROOT/.venv/wheels/torch-${TORCH_VERSION:-2.13.0}*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-compile --no-index --find-links "$ROOT/.venv/wheels" "$TORCH"
else
  "$PY" -m pip install -q --no-compile "$TORCH" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
echo "wheel-smoke: torch installed at ${SECONDS}s"
rm -rf "$ROOT/build"  # a stale setuptools build folder would leak old files into the wheel
"$PY" -m pip wheel -q --no-deps -w "$WORK/dist" "$ROOT"
"$PY" -m pip install -q --no-compile "$WORK"/dist/scalecrafter_video-*.whl
echo "wheel-smoke: installed at ${SECONDS}s"
rm -rf "$ROOT/build"
cp "$ROOT/scripts/wheel_smoke.py" "$WORK/"
cd "$WORK"

# run a command (an scv command: its output redirected by the caller), then say on fd 3 (the
# script's stderr) how long it took; its exit status is the command's
exec 3>&2
timed() {
  local start=$SECONDS rc=0 command="$*"
  "$@" || rc=$?
  echo "wheel-smoke: $((SECONDS - start))s  scv ${command#"$SCV "}" | cut -c1-110 >&3
  return $rc
}
# The commands are independent (each writes its own files): two lanes at once, one per core.
# Each lane stops at its first failure (set -e holds in the background subshell).
lane_tiny() {
  timed "$SCV" presets > presets.txt
  timed "$SCV" plan --family sd15 --res 2048x2048 --steps 50 --json > plan.json
  timed "$SCV" generate --model tiny-sd --res 128x128 --steps 2 --no-progress --out out/image > image.txt
  timed "$SCV" generate --video --model tiny-video --res 128x128 --frames 4 --steps 2 --no-progress \
    --out out/video > video.txt
  # without the extras (matplotlib, gradio) the plot and the app refuse in one line, exit 2
  local rc=0
  timed "$SCV" plan --family sd15 --res 1024x1024 --plot plan.png 2> plot-error.txt || rc=$?
  [[ $rc == 2 ]]
  rc=0
  timed "$SCV" ui 2> ui-error.txt || rc=$?
  [[ $rc == 2 ]]
}
lane_shipped() {
  # the demo at 2x only (its 4x cases sample 128 px for minutes on 2 cores; the suite runs them)
  timed "$SCV" demo --samples 1 --steps 2 --scales 2 --out out/demo --no-progress > demo.txt
  # the shipped trained models from the installed package data: shapes32, and its motion adapter
  timed "$SCV" generate --model shapes32 --prompt circle --res 64x64 --steps 2 --no-progress --out out/shapes \
    > shapes.txt
  timed "$SCV" generate --video --model shapes32-motion --prompt square --res 64x64 --frames 4 --steps 2 \
    --no-progress --out out/shapes-video > shapes-video.txt
  # a sweep: the video one on the shipped motion model, with its lossless frames
  printf "circle\n" > classes.txt
  timed "$SCV" sweep --video --model shapes32-motion --prompts classes.txt --res 64x64 --base --steps 1 \
    --save-frames --out out/video-sweep --device cpu --no-progress > video-sweep.txt
  ls out/video-sweep/scalecrafter/64x64/*-frames/frame_0007.png out/video-sweep/direct/32x32/*.mp4 > /dev/null
}
lane_tiny & tiny=$!
lane_shipped & shipped=$!
failed=0
wait "$tiny" || { failed=1; echo "wheel-smoke: FAILED in the tiny-model commands (presets .. ui)" >&2; }
wait "$shipped" || { failed=1; echo "wheel-smoke: FAILED in the shipped-model commands (demo .. sweep)" >&2; }
[[ $failed == 0 ]]
echo "wheel-smoke: scv commands done at ${SECONDS}s"
"$PY" wheel_smoke.py "$ROOT"
echo "wheel-smoke: done in ${SECONDS}s"
