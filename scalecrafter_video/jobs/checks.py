"""The checks of a job, in the order the runner makes them: options that need no model, what the
model takes (class prompts, FreeU), sizes and steps, and the memory estimate, each a one-line
`ScaleCrafterError` naming the problem and the fix."""

from __future__ import annotations

import logging
from typing import Any

from ..engine import families, sizing
from ..engine.errors import ScaleCrafterError
from ..engine.schema import is_number
from .family import IMAGE_FAMILIES, VIDEO_FAMILIES, sampling_defaults
from .options import (
    DTYPES,
    MAX_SIDE,
    MAX_STEPS,
    METHODS,
    SCHEDULERS,
    VAE_TILING,
    GenerateOptions,
)

logger = logging.getLogger(__name__)

SAFE_MULTIPLE = 64  # pixels per side every supported model accepts (SD: 64, SDXL: 32, video: 64)


def check_size(height: int, width: int, multiple: int | None = None) -> None:
    """Positive, at most MAX_SIDE and divisible by `multiple` pixels per side, else a one-line error.

    `multiple` is what the model needs; None when its configs are not read yet: then multiples of
    8 pass (every VAE needs them) and the suggested sizes are multiples of SAFE_MULTIPLE, which
    every supported model accepts, so a suggestion never fails the model's own check later.
    """
    sizing.check_size(height, width)
    for side, value in (("height", height), ("width", width)):
        if value > MAX_SIDE:
            raise ScaleCrafterError(f"{side} {value} is larger than the maximum of {MAX_SIDE} pixels")
    need, step = (multiple, multiple) if multiple else (8, SAFE_MULTIPLE)
    bad = [(s, v) for s, v in (("width", width), ("height", height)) if v % need]
    if bad:
        side, value = bad[0]
        lower, upper = value // step * step, (value // step + 1) * step
        nearest = " or ".join(str(v) for v in (lower, upper) if 0 < v <= MAX_SIDE)
        why = (
            f"this model needs multiples of {multiple} pixels"
            if multiple
            else "every model needs multiples of 8 pixels"
        )
        raise ScaleCrafterError(f"{side} {value} is not divisible by {need} ({why}): use {nearest}")


def check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ScaleCrafterError(f"steps must be between 1 and {MAX_STEPS}, got {steps}")


def size_multiple(pipe) -> int:
    """Pixels per side a loaded pipeline needs (`engine.families.size_multiple` of its UNet and VAE)."""
    return families.size_multiple(len(pipe.unet.config.block_out_channels), sizing.pixels_per_sample(pipe))


def validate_options(opts: GenerateOptions) -> None:
    """Every check of a job that needs no model: run before loading or writing anything."""
    if not opts.prompts:
        raise ScaleCrafterError("no prompt given: pass --prompt TEXT or --prompts FILE")
    if any(not isinstance(p, str) or not p.strip() for p in opts.prompts):
        raise ScaleCrafterError("empty prompt: every prompt needs some text")
    if opts.skip_existing and opts.overwrite:
        raise ScaleCrafterError(
            "--skip-existing keeps existing outputs and --overwrite replaces them: pass one of them"
        )
    check_size(opts.height, opts.width)
    if opts.method not in METHODS:
        raise ScaleCrafterError(f"unknown method {opts.method!r}: choose one of {', '.join(METHODS)}")
    if opts.scheduler not in SCHEDULERS:
        raise ScaleCrafterError(f"unknown scheduler {opts.scheduler!r}: choose one of {', '.join(SCHEDULERS)}")
    if opts.dtype not in DTYPES:
        raise ScaleCrafterError(f"unknown dtype {opts.dtype!r}: choose one of {', '.join(DTYPES)}")
    if opts.vae_tiling not in VAE_TILING:
        raise ScaleCrafterError(f"unknown --vae-tiling {opts.vae_tiling!r}: choose one of {', '.join(VAE_TILING)}")
    check_steps(opts.steps)
    if not isinstance(opts.num_per_prompt, int) or opts.num_per_prompt < 1:
        raise ScaleCrafterError(f"num-per-prompt must be at least 1, got {opts.num_per_prompt}")
    if opts.guidance is not None and not (0 <= opts.guidance <= 100):
        raise ScaleCrafterError(f"guidance must be between 0 and 100, got {opts.guidance}")
    if not (0 <= opts.eta <= 1):
        raise ScaleCrafterError(f"eta must be between 0 and 1, got {opts.eta}")
    if not (0 <= opts.seed < 2**63):
        raise ScaleCrafterError(f"seed must be between 0 and 2**63-1, got {opts.seed}")
    if opts.family is not None and sampling_defaults(opts.family).video != opts.video:
        if opts.video:
            raise ScaleCrafterError(
                f"--family {opts.family} is an image family; video families: {', '.join(VIDEO_FAMILIES)}"
            )
        raise ScaleCrafterError(
            f"--family {opts.family} is a video family: pass --video, or an image family ({', '.join(IMAGE_FAMILIES)})"
        )
    if opts.video:
        if isinstance(opts.frames, bool) or not isinstance(opts.frames, int) or opts.frames < 1:
            raise ScaleCrafterError(f"frames must be a whole number of at least 1, got {opts.frames!r}")
        fps = opts.fps  # whole for `scv generate`; an upscaled clip keeps its own, 29.97 too
        if not is_number(fps) or fps <= 0:
            raise ScaleCrafterError(f"fps must be a positive number, got {fps!r}")
        if opts.compare and opts.method == "direct":
            logger.warning("--compare compares a method with direct sampling; with --method direct it is ignored")
    if isinstance(opts.max_scale, bool) or not isinstance(opts.max_scale, (int, float)) or not opts.max_scale >= 1:
        raise ScaleCrafterError(f"max-scale must be a number of at least 1, got {opts.max_scale!r}")
    if opts.cascade:
        _check_cascade(opts)
    if opts.method == "scalecrafter":
        _check_preset(opts.preset)
    elif opts.preset != "auto" or opts.dispersion or not opts.ndcfg or opts.progressive is not None:
        logger.warning(
            "--preset, --dispersion, --no-ndcfg and --no-progressive only apply to --method scalecrafter; ignored"
        )


def check_model_options(opts: GenerateOptions, ref, family: str | None) -> None:
    """What the model itself takes, checked before it loads: a class-conditional built-in model
    draws only its class names and has no negative prompt (its null class is the unconditional
    one); FreeU only where the family has tuned parameters."""
    classes = ref.builtin.classes if ref.builtin is not None else None
    if classes:
        unknown = [p for p in opts.prompts if p not in classes]
        if unknown:
            raise ScaleCrafterError(
                f"{ref.name} draws one of {', '.join(classes)}: {unknown[0]!r} is not one of its classes"
            )
        if opts.negative_prompt is not None:
            raise ScaleCrafterError(
                f"{ref.name} is class-conditional and takes no --negative-prompt "
                "(its null class is the unconditional prompt)"
            )
    if family is not None:
        check_freeu(opts, family)


def check_freeu(opts: GenerateOptions, family: str) -> None:
    if opts.freeu and sampling_defaults(family).freeu is None:
        raise ScaleCrafterError(f"--freeu has no tuned parameters for {family} models: drop --freeu")


def _check_cascade(opts: GenerateOptions) -> None:
    from .cascade import CascadeConfig

    CascadeConfig.of(opts)
    if opts.method != "scalecrafter":
        raise ScaleCrafterError(
            f"--cascade sets the method of each stage with --stage-plan (full, restrained, none); "
            f"drop --method {opts.method}"
        )


def _check_preset(preset: str) -> None:
    """Unknown preset names and unreadable preset files fail here, before any weights load."""
    from ..engine.presets import load_preset

    if preset != "auto":
        load_preset(preset)


def check_memory(
    opts: GenerateOptions,
    unet_config: dict[str, Any],
    vae_config: dict[str, Any] | None,
    vae_factor: int,
    dtype,
    device: str,
    family: str,
    *,
    decode_frames: int | None = None,
) -> None:
    """Refuse a job whose memory estimate (`resources`) exceeds the device's free memory, unless forced.
    `decode_frames`: video frames decoded per VAE call."""
    from . import resources
    from .sampling import wants_vae_tiling

    frames = opts.frames if opts.video else None
    estimate = resources.estimate_memory(
        unet_config,
        vae_config,
        height=opts.height,
        width=opts.width,
        dtype_bytes=dtype.itemsize,
        vae_factor=vae_factor,
        cfg=opts.guidance is None or opts.guidance > 1,
        tiled=wants_vae_tiling(opts.vae_tiling, family, opts.height, opts.width),
        **({"frames": frames, "decode_frames": decode_frames} if frames else {}),
    )
    what = f"--res {opts.width}x{opts.height}" + (f" with {frames} frames" if frames else "")
    resources.check_memory(estimate, device, force=opts.force_memory, what=what)
