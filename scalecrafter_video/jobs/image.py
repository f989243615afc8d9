"""Image jobs: what an image job does that a video job does not (the runner does the rest).

Models are named by alias (sd15, sd21, sdxl), hub id, local diffusers folder, or a built-in model
(tiny-sd, tiny-sdxl); `loading` finds them without the network. What is particular to images:
the pipeline classes accepted, the plan checked on the UNet built on the meta device before any
weights load, and the sampling defaults taken from the UNet's configuration (never the model's
name), so fine-tunes and local copies behave like their base model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ..engine.errors import ScaleCrafterError
from ..engine.families import FAMILIES
from ..engine.presets import preset_argument
from ..outputs import files as outputs
from . import runner
from .family import job_family
from .frames import to_pil
from .loading import (
    LoadedModel,
    ModelInfo,
    ModelRef,
    build_builtin,
    from_pretrained,
    index_unet_class,
    read_model_info,
)
from .method import MethodContext
from .options import GenerateOptions
from .registry import resolve_model
from .sampling import run_pipeline

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
            f"{ref.describe()} has an unsupported UNet class {unet_class}: "
            "images need UNet2DConditionModel (SD 1.x/2.x, SDXL)"
        )


def _check_index(ref: ModelRef, index: dict[str, Any]) -> None:
    if not index:
        return
    pipe_class = index.get("_class_name", "?")
    unet_class = index_unet_class(index)
    if unet_class is None:
        raise ScaleCrafterError(
            f"{ref.describe()} ({pipe_class}) has no UNet: ScaleCrafter needs a UNet diffusion model"
        )
    _check_unet_class(ref, unet_class)
    if pipe_class not in IMAGE_PIPELINES:
        raise ScaleCrafterError(
            f"{ref.describe()} is a {pipe_class}; supported image pipelines: {', '.join(IMAGE_PIPELINES)}"
        )


def load_pipeline(
    model: str | ModelInfo, *, device: str = "cpu", dtype=None, progress: bool = True, family: str | None = None
) -> LoadedModel:
    """Load `model` (alias, hub id, folder, built-in name or an inspected model) onto `device`."""
    info = model if isinstance(model, ModelInfo) else inspect_model(model, family)
    ref = info.ref
    if ref.builtin is not None:
        pipe = build_builtin(ref, device, dtype)
    else:
        from diffusers import DiffusionPipeline

        pipe = from_pretrained(
            DiffusionPipeline,
            ref.location,
            ref.describe(),
            local=ref.kind == "local",
            cached=bool(info.index),
            dtype=dtype,
            progress=progress,
        )
        pipe.to(device)
    unet = getattr(pipe, "unet", None)
    _check_unet_class(ref, type(unet).__name__ if unet is not None else None)
    return LoadedModel(
        pipe,
        ref,
        job_family(ref, type(pipe.unet).__name__, pipe.unet.config, video=False, option=family),
        info.revision,
    )


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


def image_method(pipe, opts: GenerateOptions) -> MethodContext:
    """The method around each image; the engine decides the family from the UNet unless --family names it."""
    family = opts.family if opts.family in FAMILIES else None  # a family with reference presets
    return MethodContext(pipe, opts, preset=preset_argument(opts.preset, opts.force_preset), family=family)


# ---- the image kind of job ---------------------------------------------------------------------
class ImageKind:
    """Images: PNGs from StableDiffusionPipeline / StableDiffusionXLPipeline and the built-in image models."""

    name, noun, suffix = "image", "images", ".png"

    def name_extra(self, opts: GenerateOptions) -> str:
        return ""

    def inspect(self, opts: GenerateOptions) -> runner.Inspected:
        info = inspect_model(opts.model, opts.family)
        unet_class = index_unet_class(info.index) or "UNet2DConditionModel"
        family = (
            job_family(info.ref, unet_class, info.unet_config, video=False, option=opts.family)
            if info.unet_config
            else info.ref.family
        )
        return runner.Inspected(info, family)

    def check_plan(self, inspected: runner.Inspected, opts: GenerateOptions) -> None:
        check_plan(inspected.info, opts)

    def decode_frames(self, opts: GenerateOptions) -> None:
        return None

    def load(self, opts: GenerateOptions, inspected: runner.Inspected, device: str, dtype) -> LoadedModel:
        return load_pipeline(inspected.info, device=device, dtype=dtype, progress=opts.progress, family=opts.family)

    def check_loaded(self, loaded: LoadedModel, opts: GenerateOptions) -> None:
        return None

    def method(self, loaded: LoadedModel, opts: GenerateOptions, guidance: float) -> MethodContext:
        return image_method(loaded.pipe, opts)

    def render(self, pipe, opts: GenerateOptions, prompt: str, seed: int, guidance: float):
        return run_pipeline(pipe, opts, prompt, seed, guidance, output_type="pil")

    def decode(self, pipe, raw, opts: GenerateOptions):
        return raw.images[0]

    def from_frames(self, frames):
        return to_pil(frames)[0]

    def job_fields(self, loaded: LoadedModel, opts: GenerateOptions) -> dict[str, Any]:
        return {}

    def output_fields(self, output, raw) -> dict[str, Any]:
        nsfw = getattr(raw, "nsfw_content_detected", None)
        if nsfw and nsfw[0]:
            logger.warning("the safety checker blacked out an image")
            return {"nsfw_content_detected": True}
        return {}

    def compare(self, sample, direct, direct_path: Path) -> dict[str, Any]:
        raise ScaleCrafterError("--compare writes a direct video beside each video; images have no --compare")

    def write(self, output, path: Path, opts: GenerateOptions, overwrite: bool) -> None:
        outputs.save_image(output, path)


IMAGE = ImageKind()
