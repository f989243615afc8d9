"""Frames between pipelines, files and the cascade: latents decoded a few frames per VAE call, and
the one in-memory form the cascade resizes, (N, 3, H, W) floats in [0, 1] (N frames of a clip, 1 for
an image), to and from what pipelines return and writers take."""

from __future__ import annotations

import numpy as np
import torch

DECODE_PIXELS = 8 * 512 * 512  # pixels decoded per VAE call (8 frames at 512 px, 2 at 1024 px)


def decode_chunk_frames(height: int, width: int) -> int:
    """Frames of `height` x `width` pixels decoded per VAE call."""
    return max(1, DECODE_PIXELS // max(1, height * width))


def decode_latents(pipe, latents, *, chunk: int, progress: bool = False):
    """(B, C, F, h, w) latents -> (B, F, H, W, 3) float frames in [0, 1], `chunk` frames per VAE call.
    A pixel-space pipeline (no VAE) samples the frames themselves, in [-1, 1]."""
    from tqdm.auto import tqdm

    vae = getattr(pipe, "vae", None)
    if vae is None:
        return ((latents.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 4, 1).cpu().numpy()
    b, c, f, h, w = latents.shape
    flat = latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w) / vae.config.scaling_factor
    pieces = []
    starts = range(0, b * f, chunk)
    with torch.no_grad():
        for s in tqdm(starts, desc="decode", unit="chunk", disable=not progress, leave=False):
            part = flat[s : s + chunk].to(dtype=vae.dtype)
            img = vae.decode(part, return_dict=False)[0]
            pieces.append((img.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu())
    frames = torch.cat(pieces).nan_to_num(0.0)
    return frames.reshape(b, f, *frames.shape[1:]).numpy()


def as_frames(value) -> torch.Tensor:
    """A PIL image, a list of PIL images, (F, H, W, 3) / (H, W, 3) arrays (uint8, or floats in [0, 1])
    or an (N, 3, H, W) tensor in [0, 1] -> (N, 3, H, W) float32 in [0, 1] on the CPU."""
    if isinstance(value, torch.Tensor):
        x = value.detach().float().cpu()
        if x.ndim == 3:
            x = x.unsqueeze(0)
        return x.clamp(0, 1)
    if isinstance(value, (list, tuple)):
        return torch.cat([as_frames(v) for v in value])
    a = np.asarray(value.convert("RGB") if hasattr(value, "convert") else value)
    if a.ndim == 3:
        a = a[None]
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).clamp(0, 1)


def to_numpy(frames: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [0, 1] -> (N, H, W, 3) float32 numpy, the form the video writers take."""
    return frames.permute(0, 2, 3, 1).float().cpu().numpy()


def to_pil(frames: torch.Tensor) -> list:
    """(N, 3, H, W) in [0, 1] -> N PIL images, rounded as diffusers' `numpy_to_pil` rounds."""
    from PIL import Image

    a = (to_numpy(frames) * 255).round().astype(np.uint8)
    return [Image.fromarray(f) for f in a]


def _matched(frames: torch.Tensor, reference: torch.Tensor, transform) -> torch.Tensor:
    """`transform(x, ref)` on `frames` and `reference` (same shape) in float64, clamped to [0, 1],
    back in `frames`' dtype."""
    if frames.shape != reference.shape:
        raise ValueError(f"frames {tuple(frames.shape)} and reference {tuple(reference.shape)} differ")
    return transform(frames.double(), reference.double()).clamp(0, 1).to(frames.dtype)


def _adain(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    mean, std = x.mean(dim=(2, 3), keepdim=True), x.std(dim=(2, 3), keepdim=True).clamp_min(1e-4)
    return (x - mean) / std * ref.std(dim=(2, 3), keepdim=True) + ref.mean(dim=(2, 3), keepdim=True)


def match_colors(frames: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """`frames` (N, 3, H, W) in [0, 1] with each frame's per-channel mean and standard deviation
    made those of the same frame of `reference` (same shape), clamped to [0, 1]: the AdaIN colour
    fix of diffusion upscalers (StableSR), which keeps a refined frame's detail and its input's colours."""
    return _matched(frames, reference, _adain)


WAVELET_LEVELS = 4  # blurs of dilation 1, 2, 4, 8: the low band holds what is coarser than about 30 pixels


def _blur(x: torch.Tensor, dilation: int) -> torch.Tensor:
    kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], dtype=x.dtype) / 16
    kernel = kernel.expand(x.shape[1], 1, 3, 3)
    padded = torch.nn.functional.pad(x, (dilation,) * 4, mode="replicate")
    return torch.nn.functional.conv2d(padded, kernel, groups=x.shape[1], dilation=dilation)


def low_band(frames: torch.Tensor, levels: int = WAVELET_LEVELS) -> torch.Tensor:
    """What `levels` a-trous blurs (3x3 binomial, dilation 1, 2, 4, ...) leave of (N, C, H, W) frames."""
    for level in range(levels):
        frames = _blur(frames, 2**level)
    return frames


def match_low_band(frames: torch.Tensor, reference: torch.Tensor, levels: int = WAVELET_LEVELS) -> torch.Tensor:
    """`frames` (N, 3, H, W) in [0, 1] with their low band replaced by that of the same frame of
    `reference` (same shape), clamped to [0, 1]: the wavelet colour fix of diffusion upscalers
    (StableSR), which keeps a refined frame's detail and its input's colours and coarse layout."""
    return _matched(frames, reference, lambda x, ref: x - low_band(x, levels) + low_band(ref, levels))


# The colour fixes by name (`options.COLOR_FIXES`, `--color-fix`): "none" keeps the frames as they are.
COLOR_FIXERS = {"adain": match_colors, "wavelet": match_low_band, "none": lambda frames, reference: frames}


def fix_colors(frames: torch.Tensor, reference: torch.Tensor, how: str) -> torch.Tensor:
    """`frames` with the colour fix named `how` (a key of `COLOR_FIXERS`) against `reference`.

    Raises:
        ValueError: an unknown name.
    """
    fixer = COLOR_FIXERS.get(how)
    if fixer is None:
        raise ValueError(f"unknown colour fix {how!r}: choose one of {', '.join(COLOR_FIXERS)}")
    return fixer(frames, reference)


def resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of (N, 3, H, W) frames in [0, 1] to `size` = (height, width), clamped to [0, 1]
    (bicubic overshoots at edges); antialiased where a side shrinks."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    x = torch.nn.functional.interpolate(
        frames.float(), size=tuple(size), mode="bicubic", align_corners=False, antialias=True
    )
    return x.clamp(0, 1)
