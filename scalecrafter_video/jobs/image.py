"""Image front end: load a Stable Diffusion / SDXL pipeline, apply a method, write PNGs + sidecars.

Models are named by alias (sd15, sd21, sdxl), hub id, local diffusers folder, or a built-in model
(tiny-sd, tiny-sdxl); `loading` finds them without the network. What is particular to images:
the pipeline classes accepted, the plan checked on the UNet built on the meta device before any
weights load, and the sampling defaults taken from the UNet's configuration (never the model's
name), so fine-tunes and local copies behave like their base model.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ..engine.errors import ScaleCrafterError
from ..engine.families import defaults_family
from ..engine.presets import preset_argument
from ..outputs import files as outputs
from . import common
from .loading import (
    LoadedModel,
    ModelCache,
    ModelInfo,
    ModelRef,
    build_builtin,
    from_pretrained,
    index_unet_class,
    read_model_info,
    resolve_device,
    resolve_dtype,
)
from .options import GenerateOptions
from .registry import resolve_model

logger = logging.getLogger(__name__)

IMAGE_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionXLPipeline")
VIDEO_UNETS = ("UNetMotionModel", "UNet3DConditionModel", "UNetSpatioTemporalConditionModel")


# ---- models -----------------------------------------------------------------------------------
def inspect_model(model: str, family: str | None = None) -> ModelInfo:
    """Locate `model` and read its configs without loading weights; fails fast when it is missing
    offline or is no image pipeline."""
    info = read_model_info(resolve_model(model, family=family))
    _check_index(info.ref, info.index)
    return info


def _check_unet_class(ref: ModelRef, unet_class: str | None) -> None:
    if unet_class in VIDEO_UNETS:
        raise ScaleCrafterError(f"{ref.describe()} is a video model ({unet_class}): pass --video")
    if unet_class != "UNet2DConditionModel":
        raise ScaleCrafterError(
            f"{ref.describe()} has an unsupported UNet class {unet_class}: images need UNet2DConditionModel (SD 1.x/2.x, SDXL)"
        )


def _check_index(ref: ModelRef, index: dict[str, Any]) -> None:
    if not index:
        return
    pipe_class = index.get("_class_name", "?")
    unet_class = index_unet_class(index)
    if unet_class is None:
        raise ScaleCrafterError(f"{ref.describe()} ({pipe_class}) has no UNet: ScaleCrafter needs a UNet diffusion model")
    _check_unet_class(ref, unet_class)
    if pipe_class not in IMAGE_PIPELINES:
        raise ScaleCrafterError(f"{ref.describe()} is a {pipe_class}; supported image pipelines: {', '.join(IMAGE_PIPELINES)}")


def image_family(ref: ModelRef, unet_config, family: str | None = None) -> str:
    """`family` (--family) if given, else the one named for the model (a built-in model's, a known
    hub id's), else the one its UNet config suggests."""
    return family or ref.family or defaults_family(unet_config)


def load_pipeline(model: str | ModelInfo, *, device: str = "cpu", dtype=None, progress: bool = True,
                  family: str | None = None) -> LoadedModel:
    """Load `model` (alias, hub id, folder, built-in name or an inspected model) onto `device`."""
    info = model if isinstance(model, ModelInfo) else inspect_model(model, family)
    ref = info.ref
    if ref.builtin is not None:
        pipe = build_builtin(ref, device, dtype)
    else:
        from diffusers import DiffusionPipeline

        pipe = from_pretrained(DiffusionPipeline, ref.location, ref.describe(), local=ref.kind == "local",
                               cached=bool(info.index), dtype=dtype, progress=progress)
        pipe.to(device)
    unet = getattr(pipe, "unet", None)
    _check_unet_class(ref, type(unet).__name__ if unet is not None else None)
    return LoadedModel(pipe, ref, image_family(ref, pipe.unet.config, family), info.revision)


class _MetaPipeline:
    """Just enough of a pipeline for the engine to resolve and validate a plan: a meta-device UNet."""

    def __init__(self, unet, vae_scale_factor: int):
        self.unet = unet
        self.vae_scale_factor = vae_scale_factor


def check_plan(info: ModelInfo, opts: GenerateOptions) -> None:
    """Resolve and validate the ScaleCrafter plan on the model's UNet built on the meta device.

    Preset mistakes (layers the model lacks, a preset of another family) fail here, before any
    weights load. Skipped when the UNet config is not known yet (a hub model still to download).
    """
    if not info.unet_config:
        return
    from diffusers import UNet2DConditionModel

    config = {k: v for k, v in info.unet_config.items() if not k.startswith("_")}
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
    image_method(_MetaPipeline(unet, info.vae_scale_factor), opts).check()


def image_method(pipe, opts: GenerateOptions) -> common.MethodContext:
    """The method around each image; the engine decides the family from the UNet unless --family names it."""
    return common.MethodContext(pipe, opts, preset=preset_argument(opts.preset, opts.force_preset), family=opts.family)


# ---- generation -------------------------------------------------------------------------------
def image_targets(opts: GenerateOptions) -> list[tuple[str, int, int, Path]]:
    """(prompt, index within the prompt, seed, path) of every image of the job, in order."""
    out_dir, settings = Path(opts.out_dir), opts.output_settings()
    jobs = []
    for prompt, j, seed in common.job_samples(opts):
        stem = outputs.output_stem(prompt, opts.width, opts.height, opts.method, seed, settings)
        jobs.append((prompt, j, seed, out_dir / f"{stem}.png"))
    return jobs


def generate_images(opts: GenerateOptions, cache: ModelCache | None = None) -> list[Path]:
    """Generate every image of `opts`; returns the PNG paths (each has a .json sidecar next to it).
    `cache` keeps the loaded pipeline for the next job (`scv ui`).

    All checks run first (sizes, names, presets, output collisions, a writable output folder, the
    memory estimate), then the model loads (failing fast when it is missing offline), then each
    image is sampled with its own seed and written atomically together with its sidecar. With
    `skip_existing`, images whose PNG and sidecar both exist are left as they are.
    """
    from tqdm.auto import tqdm

    common.validate_options(opts)
    jobs = image_targets(opts)
    if opts.skip_existing:
        jobs = outputs.skip_existing(jobs, lambda job: [job[3], outputs.sidecar_path(job[3])], "images")
    outputs.check_targets([p for *_, p in jobs] + [outputs.sidecar_path(p) for *_, p in jobs], opts.overwrite)
    outputs.check_writable(Path(opts.out_dir))

    device = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)
    info = inspect_model(opts.model, opts.family)
    known_family = image_family(info.ref, info.unet_config, opts.family) if info.unet_config else opts.family
    common.check_model_options(opts, info.ref, known_family)
    common.check_size(opts.height, opts.width, info.size_multiple)
    if opts.method == "scalecrafter":
        check_plan(info, opts)
    if info.configs_known:
        common.check_memory(opts, info.unet_config, info.vae_config, info.vae_scale_factor, dtype, device,
                            known_family)
    if not jobs:
        return []
    t0 = time.perf_counter()
    loaded = common.load_cached(cache, opts, device, dtype, lambda: load_pipeline(
        info, device=device, dtype=dtype, progress=opts.progress, family=opts.family))
    pipe, family = loaded.pipe, loaded.family
    common.check_size(opts.height, opts.width, common.size_multiple(pipe))
    if not info.configs_known:
        common.check_memory(opts, dict(pipe.unet.config), dict(pipe.vae.config), int(pipe.vae_scale_factor), dtype,
                            device, family)
    logger.info("loaded %s (family %s) in %.1fs", loaded.ref.location, family, time.perf_counter() - t0)

    sampling = common.prepare_pipeline(pipe, opts, family)
    base_meta = common.job_sidecar(opts, loaded, sampling, device=device, dtype=dtype)
    base_meta["output_settings"] = opts.output_settings()  # what the name's hash covers, with the prompt

    method = image_method(pipe, opts)
    method.check()
    outputs.prepare_out_dir(Path(opts.out_dir))
    written: list[Path] = []
    for prompt, index, seed, path in tqdm(jobs, desc="images", unit="img", disable=not opts.progress):
        start = time.perf_counter()
        with method as method_meta:
            result = common.run_pipeline(pipe, opts, prompt, seed, sampling.guidance, output_type="pil")
        meta = {"prompt": prompt, "seed": seed, "index": index, **base_meta, **method_meta}
        meta["seconds"] = round(time.perf_counter() - start, 3)
        meta["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        nsfw = getattr(result, "nsfw_content_detected", None)
        if nsfw and nsfw[0]:
            meta["nsfw_content_detected"] = True
            logger.warning("%s: the safety checker blacked out this image", path.name)
        outputs.save_image(result.images[0], path)
        outputs.write_sidecar(path, meta)
        logger.info("wrote %s", path)
        written.append(path)
    return written
