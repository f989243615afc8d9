"""Image preparation for FID/KID: clean-fid's "clean" resize and random full-resolution crops."""

from __future__ import annotations

import numpy as np
from PIL import Image

FID_SIZE = 299  # Inception v3's input side


def clean_resize(image: np.ndarray, size: int = FID_SIZE) -> np.ndarray:
    """clean-fid's "clean" mode: each channel resized as a float32 PIL image with bicubic filtering,
    clipped to [0, 255]. Rounded to uint8 at the end because torchmetrics' Inception takes 8-bit
    input (clean-fid keeps the floats; the difference is at most half a grey level)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    channels = [
        np.asarray(Image.fromarray(image[:, :, c].astype(np.float32)).resize((size, size), Image.BICUBIC))
        for c in range(3)
    ]
    return np.rint(np.stack(channels, axis=2).clip(0, 255)).astype(np.uint8)


def random_crops(image: np.ndarray, size: int, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`count` size x size windows of `image` at its full resolution (nothing is resized here)."""
    h, w = image.shape[:2]
    if h < size or w < size:
        raise ValueError(f"a {size}x{size} crop does not fit in a {w}x{h} image")
    ys = rng.integers(0, h - size + 1, count)
    xs = rng.integers(0, w - size + 1, count)
    return [image[y : y + size, x : x + size] for y, x in zip(ys, xs)]
