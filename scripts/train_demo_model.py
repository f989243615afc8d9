#!/usr/bin/env python
"""Train the shipped demo model: `python scripts/train_demo_model.py [--device cuda|cpu] [--steps N]`.

The defaults are the shipped checkpoint's recipe (2913 steps of batch 256, constant LR 1e-3 after
200 warm-up steps, EMA 0.999, seed 0): 150 s on an NVIDIA H200; on a 2-core CPU about 3.5 s per
step, i.e. hours. Writes scalecrafter_video/demo/assets/shapes32.safetensors + shapes32.json
(EMA weights, float16) unless --out says otherwise.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scalecrafter_video.commands.demo.train import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
