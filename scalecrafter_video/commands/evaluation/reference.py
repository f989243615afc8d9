"""True high-resolution references for the shapes demo model: its data set drawn at any size."""

from __future__ import annotations

import numpy as np
import torch

from ...models.shapes.data import render_at


def shapes_reference(n: int, width: int, height: int, seed: int = 0, batch: int = 64) -> np.ndarray:
    """n data-set images drawn directly at width x height, uint8 (n, H, W, 3), seeded."""
    generator = torch.Generator().manual_seed(seed)
    chunks = [render_at(min(batch, n - lo), height, width, generator) for lo in range(0, n, batch)]
    images = torch.cat(chunks).permute(0, 2, 3, 1).numpy()
    return np.rint(images * 255).astype(np.uint8)
