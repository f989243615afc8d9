#!/usr/bin/env python
"""Train the shipped demo model: `python scripts/train_demo_model.py [--steps N] [--seed N]`.

Writes scalecrafter_video/demo/assets/shapes32.safetensors + shapes32.json (EMA weights, float16).
"""
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scalecrafter_video.demo.train import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
