#!/usr/bin/env bash
# What a user of the built package gets: build the wheel, install it (not editable) into a fresh
# venv, and from a folder outside the checkout run `scv` and the engine (scripts/wheel_smoke.py).
# Run by .ci/run after the test suite. Usage: bash scripts/wheel_smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"${PYTHON:-python3}" -m venv "$WORK/venv"
PY="$WORK/venv/bin/python"
SCV="$WORK/venv/bin/scv"
# torch first, as scripts/setup.sh does (TORCH_INDEX_URL picks a build, e.g. PyTorch's CPU wheel index)
# --no-compile: byte-compiling torch and transformers is minutes on 2 cores, for a throwaway venv
"$PY" -m pip install -q --no-compile "torch==${TORCH_VERSION:-2.13.0}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
rm -rf "$ROOT/build"  # a stale setuptools build folder would leak old files into the wheel
"$PY" -m pip wheel -q --no-deps -w "$WORK/dist" "$ROOT"
"$PY" -m pip install -q --no-compile "$WORK"/dist/scalecrafter_video-*.whl
echo "wheel-smoke: installed in ${SECONDS}s"
rm -rf "$ROOT/build"
cp "$ROOT/scripts/wheel_smoke.py" "$WORK/"
cd "$WORK"
"$SCV" presets > presets.txt
"$SCV" plan --family sd15 --res 2048x2048 --steps 50 --json > plan.json
"$SCV" generate --model tiny-sd --res 128x128 --steps 2 --no-progress --out out/image > image.txt
"$SCV" generate --video --model tiny-video --res 128x128 --frames 4 --steps 2 --no-progress --out out/video > video.txt
"$SCV" demo --samples 1 --steps 2 --out out/demo > demo.txt
# the shipped trained models from the installed package data: shapes32, and its motion adapter
"$SCV" generate --model shapes32 --prompt circle --res 64x64 --steps 2 --no-progress --out out/shapes > shapes.txt
"$SCV" generate --video --model shapes32-motion --prompt square --res 64x64 --frames 4 --steps 2 --no-progress --out out/shapes-video > shapes-video.txt
"$SCV" demo --video --samples 1 --steps 1 --frames 4 --scales 2 --out out/demo-video --no-progress > demo-video.txt
printf "a red fox\n" > prompts.txt
"$SCV" sweep --model tiny-sd --prompts prompts.txt --res 128x128 --base --steps 2 --out out/sweep --device cpu --no-progress > sweep.txt
printf "circle\n" > classes.txt
"$SCV" sweep --video --model shapes32-motion --prompts classes.txt --res 64x64 --base --steps 1 --save-frames \
      --out out/video-sweep --device cpu --no-progress > video-sweep.txt
ls out/video-sweep/scalecrafter/64x64/*-frames/frame_0007.png out/video-sweep/direct/32x32/*.mp4 > /dev/null
# without the extras (matplotlib, gradio) the plot and the app refuse in one line, exit 2
rc=0; "$SCV" plan --family sd15 --res 1024x1024 --plot plan.png 2> plot-error.txt || rc=$?; [[ $rc == 2 ]]
rc=0; "$SCV" ui 2> ui-error.txt || rc=$?; [[ $rc == 2 ]]
echo "wheel-smoke: scv commands done at ${SECONDS}s"
"$PY" wheel_smoke.py "$ROOT"
