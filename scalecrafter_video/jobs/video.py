"""Video front end: load a text-to-video pipeline, apply a method, write H.264 MP4s + JSON sidecars.

Models (``--model``):

- ``animatediff`` (default): SD 1.5 (``stable-diffusion-v1-5/stable-diffusion-v1-5``) + the motion
  adapter ``guoyww/animatediff-motion-adapter-v1-5-2`` through ``AnimateDiffPipeline`` (the UNet
  becomes a ``UNetMotionModel``). Any SD-1.5-layout base (alias, hub id, folder) works the same way,
  with ``--motion-adapter ID`` to pick the adapter.
- ``zeroscope`` (``cerspense/zeroscope_v2_576w``, 576x320) and ``modelscope``
  (``ali-vilab/text-to-video-ms-1.7b``, 256x256): ``UNet3DConditionModel`` through diffusers'
  ``TextToVideoSDPipeline``.
- ``tiny-video`` / ``tiny-video3d``: built-in random pipelines (noise) for tests and smoke runs.

Only spatial 3x3 convs are re-dilated (the engine's layer rule); motion modules, temporal convs
and temporal attention run as trained. NDCFG acts on every frame through the engine's UNet hook.
What is particular to video: the motion adapter, the frame limit of the temporal layers, sampling
to latents and decoding a few frames at a time (tiled for large frames, so many 1024 px frames
fit), MP4s, and a motion statistic in every sidecar; with ``--compare`` the same seed is also
sampled directly (``-direct`` MP4) and its motion recorded.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from huggingface_hub import try_to_load_from_cache

from ..engine.errors import ScaleCrafterError
from ..engine.families import FAMILIES
from ..engine.plan import derive_plan
from ..engine.presets import check_preset_fits, load_preset, preset_argument
from ..models.builtin import MAX_FRAMES_3D, text_to_video_pipeline_class
from . import runner
from .family import UNET3D_FAMILIES, job_family
from .frames import decode_chunk_frames, decode_latents, to_numpy
from .loading import (
    LoadedModel,
    ModelInfo,
    build_builtin,
    find_config,
    from_pretrained,
    hub_offline,
    index_unet_class,
    is_local_path,
    read_json,
    read_model_info,
)
from .method import MethodContext
from .options import GenerateOptions
from .registry import NO_SDXL_VIDEO, resolve_model
from .sampling import run_pipeline

logger = logging.getLogger(__name__)

DEFAULT_MOTION_ADAPTER = "guoyww/animatediff-motion-adapter-v1-5-2"
UNET3D = "UNet3DConditionModel"
MOTION_UNET = "UNetMotionModel"
VIDEO_CODEC = "h264 (libx264), yuv420p, crf 18"


# ---- the model and its motion adapter -------------------------------------------------------------
def inspect_video_model(opts: GenerateOptions) -> tuple[ModelInfo, dict[str, Any] | None]:
    """Everything knowable from config files alone: (the model's, the motion adapter's config or None).

    Fails fast (seconds, no weights read) when the model or its motion adapter is missing offline.
    """
    ref = resolve_model(opts.model, video=True, family=opts.family)
    if opts.motion_adapter and (ref.builtin is not None or ref.family in UNET3D_FAMILIES):
        why = (
            "brings its own motion adapter"
            if ref.builtin and ref.builtin.motion_adapter
            else "is a UNet3D video model"
        )
        raise ScaleCrafterError(
            f"--motion-adapter only applies to AnimateDiff models built from an SD 1.5 base; {opts.model!r} {why}"
        )
    try:
        info = read_model_info(ref)
    except ScaleCrafterError:
        both = _model_and_adapter_missing(opts, ref)
        if both:
            raise ScaleCrafterError(both) from None
        raise
    if ref.builtin is not None:
        return info, None
    index = info.index
    pipe_class, unet_class = index.get("_class_name"), index_unet_class(index)
    if pipe_class == "StableDiffusionXLPipeline" or (index.get("text_encoder_2") or [None])[0]:
        raise ScaleCrafterError(f"model {opts.model!r} is SDXL: {NO_SDXL_VIDEO}")
    adapter_cfg = None
    if unet_class == UNET3D:
        if opts.motion_adapter:
            raise ScaleCrafterError(
                f"--motion-adapter only applies to AnimateDiff (an SD 1.5 base); "
                f"{opts.model!r} is a UNet3D video model"
            )
        job_family(
            info.ref, UNET3D, info.unet_config, video=True, option=opts.family
        )  # ModelScope or Zeroscope: named or refused now
    elif unet_class in (None, "UNet2DConditionModel") or (unet_class == MOTION_UNET and opts.motion_adapter):
        # an SD 1.5 base (or an AnimateDiff pipeline given another adapter): the adapter must be here too
        adapter = _adapter_location(opts)
        what = f"motion adapter {adapter!r}"
        path = find_config(adapter, "config.json", what, local=is_local_path(adapter), flag="--motion-adapter")
        adapter_cfg = read_json(path, what) if path is not None else {"_not_cached": True}
    elif unet_class != MOTION_UNET:
        raise ScaleCrafterError(
            f"model {opts.model!r} ({pipe_class}, UNet {unet_class}) is not a supported video model: "
            "use an SD 1.5 base (AnimateDiff), an AnimateDiff pipeline, or a ModelScope/Zeroscope UNet3D pipeline"
        )
    return info, adapter_cfg


def _adapter_location(opts: GenerateOptions) -> str:
    return opts.motion_adapter or DEFAULT_MOTION_ADAPTER


def _model_and_adapter_missing(opts: GenerateOptions, ref) -> str | None:
    """One message naming both downloads, where an SD 1.5 base (AnimateDiff) and the motion adapter
    it needs are both missing offline; None where only the model is (its own error says so)."""
    if ref.builtin is not None or ref.kind == "local" or not (ref.family == "animatediff" or opts.motion_adapter):
        return None
    adapter = _adapter_location(opts)
    if isinstance(try_to_load_from_cache(ref.location, "model_index.json"), str) or is_local_path(adapter):
        return None  # the model is here (another problem), or the adapter is a folder (checked later)
    if isinstance(try_to_load_from_cache(adapter, "config.json"), str):
        return None
    reason = "HF_HUB_OFFLINE is set" if hub_offline() else "the hub is unreachable"
    return (
        f"{ref.describe()} and the motion adapter {adapter!r} it needs are not in the local Hugging Face cache "
        f"and {reason}: run `hf download {ref.location}` and `hf download {adapter}` on a connected machine "
        "and copy the ~/.cache/huggingface here, or pass --model and --motion-adapter local diffusers folders"
    )


def max_frames_of(info: ModelInfo, adapter_cfg: dict[str, Any] | None) -> int | None:
    """The most frames the model takes, as far as its config files tell before loading."""
    if info.ref.builtin is not None:
        return info.ref.builtin.max_frames
    if adapter_cfg and "motion_max_seq_length" in adapter_cfg:
        return int(adapter_cfg["motion_max_seq_length"])
    if index_unet_class(info.index) == UNET3D:
        return MAX_FRAMES_3D
    return 32 if adapter_cfg is not None else None  # the AnimateDiff default when the config is unknown


def check_frames(frames: int, max_frames: int | None, what: str) -> None:
    if max_frames is not None and frames > max_frames:
        raise ScaleCrafterError(
            f"{frames} frames is more than {what} supports ({max_frames}: its motion modules' maximum sequence "
            f"length); use --frames {max_frames} or fewer"
        )


def load_video_pipeline(opts: GenerateOptions, device: str, dtype, inspected=None) -> LoadedModel:
    """Load the video pipeline of `opts` (alias, hub id, folder, built-in name); one-line errors offline.
    `inspected`: what `inspect_video_model(opts)` returned, when the caller already has it."""
    info, adapter_cfg = inspected or inspect_video_model(opts)
    ref = info.ref
    if ref.builtin is not None:
        pipe = build_builtin(ref, device, dtype)
        adapter = ref.builtin.motion_adapter
    else:
        pipe, adapter = _from_pretrained(opts, info, adapter_cfg, dtype)
        pipe.to(device)
    unet_class = type(pipe.unet).__name__
    if unet_class == MOTION_UNET:
        max_frames = int(getattr(pipe.unet.config, "motion_max_seq_length", None) or 32)
    else:
        max_frames = max_frames_of(info, adapter_cfg) or MAX_FRAMES_3D
    return LoadedModel(
        pipe,
        ref,
        job_family(ref, unet_class, pipe.unet.config, video=True, option=opts.family),
        info.revision,
        adapter,
        max_frames,
    )


def _from_pretrained(opts: GenerateOptions, info: ModelInfo, adapter_cfg: dict[str, Any] | None, dtype):
    """(pipeline, what the sidecar records as its motion adapter) from a folder or the hub."""
    ref = info.ref
    load = dict(local=ref.kind == "local", cached=bool(info.index), dtype=dtype, progress=opts.progress)
    unet_class = index_unet_class(info.index)
    if unet_class == UNET3D:
        return from_pretrained(text_to_video_pipeline_class(), ref.location, ref.describe(), **load), None
    from diffusers import AnimateDiffPipeline, MotionAdapter

    if unet_class == MOTION_UNET and not opts.motion_adapter:
        return from_pretrained(AnimateDiffPipeline, ref.location, ref.describe(), **load), "(in the pipeline)"
    adapter = _adapter_location(opts)
    motion_adapter = from_pretrained(
        MotionAdapter,
        adapter,
        f"motion adapter {adapter!r}",
        local=is_local_path(adapter),
        cached=not (adapter_cfg or {}).get("_not_cached"),
        dtype=dtype,
        progress=opts.progress,
        flag="--motion-adapter",
    )
    pipe = from_pretrained(AnimateDiffPipeline, ref.location, ref.describe(), motion_adapter=motion_adapter, **load)
    if unet_class != MOTION_UNET:  # an image base: give it AnimateDiff's schedule
        _animatediff_scheduler(pipe)
    return pipe, adapter


def _animatediff_scheduler(pipe) -> None:
    """AnimateDiff's motion modules were trained on the linear beta schedule (its inference config:
    beta 0.00085 -> 0.012 linear); SD 1.5's own scheduler says scaled_linear. Keep DDIM's leading
    spacing (steps_offset 1), on which the plans' reference steps are defined."""
    from diffusers import DDIMScheduler

    pipe.scheduler = DDIMScheduler.from_config(
        pipe.scheduler.config, beta_schedule="linear", clip_sample=False, steps_offset=1, timestep_spacing="leading"
    )


def video_method(loaded: LoadedModel, opts: GenerateOptions, guidance: float) -> MethodContext:
    """The method around each video. When the model's base size is its family's, the family goes
    to the engine (so "auto" finds the family's reference presets); otherwise the base goes too,
    and "auto" becomes the plan derived for that base, so a 1024 px preset written for a 512 px
    base never lands on a 64 px model. TextToVideoSDPipeline does not say whether it runs CFG:
    the guidance scale does."""
    base, fam = loaded.base, FAMILIES.get(loaded.family)
    preset = preset_argument(opts.preset, opts.force_preset)
    cfg = guidance > 1.0
    if fam is not None and base == (fam.base_height, fam.base_width):
        return MethodContext(loaded.pipe, opts, preset=preset, family=loaded.family, cfg=cfg)
    if preset == "auto":
        levels = len(loaded.pipe.unet.config.block_out_channels)
        preset = derive_plan(levels, base, (opts.height, opts.width))
    family = loaded.family if fam is not None else None  # a family with reference presets
    return MethodContext(loaded.pipe, opts, preset=preset, family=family, base=base, cfg=cfg)


def _check_preset_before_loading(opts: GenerateOptions, info: ModelInfo) -> None:
    """A named preset that does not fit the model (family, base, size) fails before any weights
    load where the base is known from the name or the config files; elsewhere it fails when the
    plan is checked on the loaded pipeline, still before sampling."""
    base = info.base
    if opts.method != "scalecrafter" or opts.force_preset or opts.preset == "auto" or base is None:
        return
    family, plan = load_preset(opts.preset)
    check_preset_fits(
        plan, family, family=info.ref.family, base=base, units="pixels", height=opts.height, width=opts.width
    )


# ---- sampling and decoding --------------------------------------------------------------------
def sample_video(pipe, opts: GenerateOptions, prompt: str, seed: int, guidance: float):
    """Run the pipeline to latents with a CPU generator seeded by `seed`."""
    out = run_pipeline(pipe, opts, prompt, seed, guidance, num_frames=opts.frames, output_type="latent")
    latents = out.frames if hasattr(out, "frames") else out[0]
    if not hasattr(latents, "shape") or latents.ndim != 5:
        raise RuntimeError(f"{type(pipe).__name__} returned no 5-D latents for output_type='latent'")
    return latents


def _ratio(a: float, b: float) -> float | None:
    return None if b == 0 or not math.isfinite(b) else round(a / b, 6)


# ---- the video kind of job ---------------------------------------------------------------------
class VideoKind:
    """Videos: MP4s (and lossless PNG frames) from AnimateDiff, ModelScope/Zeroscope and the built-in video models."""

    name, noun, suffix = "video", "videos", ".mp4"

    def name_extra(self, opts: GenerateOptions) -> str:
        return f"{opts.frames}f"

    def inspect(self, opts: GenerateOptions) -> runner.Inspected:
        info, adapter_cfg = inspect_video_model(opts)
        check_frames(opts.frames, max_frames_of(info, adapter_cfg), f"{opts.model!r}")
        family = info.ref.family
        if info.configs_known:
            unet_class = UNET3D if index_unet_class(info.index) == UNET3D else MOTION_UNET
            family = job_family(info.ref, unet_class, info.unet_config, video=True, option=opts.family)
        return runner.Inspected(info, family, adapter_cfg)

    def check_plan(self, inspected: runner.Inspected, opts: GenerateOptions) -> None:
        _check_preset_before_loading(opts, inspected.info)

    def decode_frames(self, opts: GenerateOptions) -> int:
        return decode_chunk_frames(opts.height, opts.width)

    def load(self, opts: GenerateOptions, inspected: runner.Inspected, device: str, dtype) -> LoadedModel:
        return load_video_pipeline(opts, device, dtype, (inspected.info, inspected.extra))

    def check_loaded(self, loaded: LoadedModel, opts: GenerateOptions) -> None:
        check_frames(opts.frames, loaded.max_frames, f"{opts.model!r}")

    def method(self, loaded: LoadedModel, opts: GenerateOptions, guidance: float) -> MethodContext:
        return video_method(loaded, opts, guidance)

    def render(self, pipe, opts: GenerateOptions, prompt: str, seed: int, guidance: float):
        return sample_video(pipe, opts, prompt, seed, guidance)

    def decode(self, pipe, raw, opts: GenerateOptions):
        return decode_latents(pipe, raw, chunk=decode_chunk_frames(opts.height, opts.width), progress=opts.progress)[0]

    def from_frames(self, frames):
        return to_numpy(frames)

    def job_fields(self, loaded: LoadedModel, opts: GenerateOptions) -> dict[str, Any]:
        return {
            "motion_adapter": loaded.motion_adapter,
            "frames": opts.frames,
            "fps": opts.fps,
            "decode_chunk_frames": decode_chunk_frames(opts.height, opts.width),
            "video_codec": VIDEO_CODEC,
        }

    def output_fields(self, output, raw) -> dict[str, Any]:
        from ..outputs.media import motion_stats

        return {"motion": motion_stats(output)}

    def compare(self, sample: runner.Sample, direct: runner.Sample, direct_path: Path) -> dict[str, Any]:
        motion, d_motion = sample.fields["motion"], direct.fields["motion"]
        return {
            "direct_mp4": str(direct_path),
            "direct_motion": d_motion,
            "motion_ratio": _ratio(motion["mean_abs_frame_diff"], d_motion["mean_abs_frame_diff"]),
            "coarse_motion_ratio": _ratio(motion["coarse_abs_frame_diff"], d_motion["coarse_abs_frame_diff"]),
        }

    def write(self, output, path: Path, opts: GenerateOptions, overwrite: bool) -> None:
        from ..outputs.media import write_mp4

        write_mp4(path, output, opts.fps, overwrite=overwrite)


VIDEO = VideoKind()
