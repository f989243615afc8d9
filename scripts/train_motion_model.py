#!/usr/bin/env python
"""Train the motion adapter of the video demo:
`python scripts/train_motion_model.py [--minutes M] [--device cuda|cpu]`.

The shipped shapes32 UNet stays frozen; only the motion modules (a diffusers MotionAdapter) train,
on seeded moving-shapes clips. Logs the loss per noise band and a coherence probe from step 0.
Writes scalecrafter_video/demo/assets/shapes32_motion.safetensors + .json (EMA weights, float16)
unless --out says otherwise.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scalecrafter_video.commands.demo.train_motion import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
