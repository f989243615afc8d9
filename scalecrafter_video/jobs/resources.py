"""Memory a generation job needs, estimated from config files before any weights load, and the
memory the device has.

The estimate counts what grows with the output size and leaves the weights out; its constants
are at or below what was measured, so it is meant as a floor (a refusal is not a false alarm):

- latents: the CFG batch of latents;
- UNet activations: a number of feature maps of the UNet's first level (batch x frames x
  first-level channels x latent height x width), the peak of one UNet call;
- VAE decode: the decoder's full-resolution stage for the frames decoded in one call (untiled),
  or one tile plus the blended tiles of the whole image (tiled);
- output: the decoded frames on the host while they are converted and written.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.errors import ScaleCrafterError

logger = logging.getLogger(__name__)

GIB = 1024**3
# Peak activations of one UNet call over one first-level feature map, by whether that level has
# attention (peak minus weights, perf-anchors.md, fp16 on an H200): SD 1.5 and AnimateDiff 24-25
# at 1024-4096 px, SDXL (no attention at its first level) 14 at 4096 px. On a CPU in fp32 the tiny
# models measure more: tiny-sd 36, tiny-sdxl 20 at 2048 px.
UNET_ACTIVATION_MAPS = {True: 24, False: 14}
# The untiled decoder's full-resolution stage holds about 3 maps of its second-to-last width and 2
# of its last per pixel (tiny VAE, fp32 CPU: 68-74 channel maps measured for 3*16 + 2*8 = 64).
DECODER_STAGE_MAPS = (2, 3)  # (last width, second-to-last width)
# Tiled decode: the overlapping decoded tiles, the blended rows and the joined image (tiny VAE,
# fp32 CPU: 17-21 maps per pixel measured at 1024-2048 px).
TILED_OUTPUT_MAPS = 14
OUTPUT_BYTES_PER_PIXEL = 40  # float32 RGB frames and their conversions (x255, rounded, uint8)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per part (`device`: what sits on the sampling device, `output`: on the host), and the
    job settings that decide which fixes can help."""

    latents: int
    unet: int
    decode: int
    output: int
    frames: int = 1
    tiled: bool = False
    dtype_bytes: int = 4

    @property
    def device(self) -> int:
        return self.latents + self.unet + self.decode

    @property
    def total(self) -> int:
        return self.device + self.output

    def describe(self) -> str:
        parts = (
            ("latents", self.latents),
            ("UNet activations", self.unet),
            ("VAE decode", self.decode),
            ("output", self.output),
        )
        return ", ".join(f"{name} {_gib(value)}" for name, value in parts)


def estimate_memory(
    unet_config: dict[str, Any],
    vae_config: dict[str, Any] | None,
    *,
    height: int,
    width: int,
    dtype_bytes: int,
    vae_factor: int = 8,
    frames: int = 1,
    cfg: bool = True,
    tiled: bool = False,
    decode_frames: int = 1,
) -> MemoryEstimate:
    """The floor estimate of one job (see the module docstring); sizes in pixels."""
    latent_px = (height // vae_factor) * (width // vae_factor)
    pixels = height * width
    batch = (2 if cfg else 1) * frames
    latents = batch * int(unet_config.get("in_channels", 4)) * latent_px * dtype_bytes
    attention_first = "Attn" in str((unet_config.get("down_block_types") or ["CrossAttnDownBlock2D"])[0])
    maps = UNET_ACTIVATION_MAPS[attention_first]
    unet = maps * batch * int(unet_config["block_out_channels"][0]) * latent_px * dtype_bytes
    decode_frames = min(decode_frames, frames)
    if vae_config is None:  # a pixel-space model: its samples are the output
        decode = 0
    elif tiled:
        tile = _side(vae_config.get("sample_size", 512))
        decode = (
            _decoder_stage_maps(vae_config) * min(tile * tile, pixels) + TILED_OUTPUT_MAPS * pixels * decode_frames
        ) * dtype_bytes
    else:
        decode = _decoder_stage_maps(vae_config) * pixels * decode_frames * dtype_bytes
    output = OUTPUT_BYTES_PER_PIXEL * pixels * frames
    return MemoryEstimate(latents, unet, decode, output, frames, tiled, dtype_bytes)


def _decoder_stage_maps(vae_config: dict[str, Any]) -> int:
    """Feature maps per output pixel held by the decoder's full-resolution stage."""
    channels = list(vae_config.get("block_out_channels") or (128, 256))
    last, before_last = channels[0], channels[min(1, len(channels) - 1)]
    return DECODER_STAGE_MAPS[0] * last + DECODER_STAGE_MAPS[1] * before_last


def available_memory(device: str) -> int | None:
    """Bytes free on `device` now: CUDA from the driver, CPU the kernel's available RAM; None if unknown."""
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    if device == "cpu":
        return _available_ram()
    return None


def _available_ram() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(estimate: MemoryEstimate, device: str, *, force: bool, what: str) -> None:
    """Refuse (one line naming the parts and the fixes) when the estimate exceeds what `device`
    and the host have free; with `force`, warn and go on."""
    checks = [(device, estimate.total if device == "cpu" else estimate.device)]
    if device != "cpu":
        checks.append(("cpu", estimate.output))
    for where, need in checks:
        have = available_memory(where)
        if have is None:
            logger.debug("free memory of %s unknown: no memory check", where)
            continue
        if need <= have:
            continue
        message = (
            f"{what} needs at least {_gib(need)} on {where} ({estimate.describe()}) but {where} has {_gib(have)} free"
        )
        if force:
            logger.warning("%s; going on (--force-memory)", message)
            continue
        fixes = ["a smaller --res"] + ["fewer --frames"] * (estimate.frames > 1)
        fixes += ["--vae-tiling on"] * (not estimate.tiled)
        fixes += ["--dtype float16"] * (estimate.dtype_bytes > 2 and where != "cpu")
        raise ScaleCrafterError(
            f"{message}: use {', '.join(fixes[:-1]) + ' or ' if len(fixes) > 1 else ''}{fixes[-1]}, "
            "or pass --force-memory to try anyway"
        )


def _side(sample_size) -> int:
    return int(max(sample_size)) if isinstance(sample_size, (list, tuple)) else int(sample_size)


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"
