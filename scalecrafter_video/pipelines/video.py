"""Video front end: load a text-to-video pipeline, apply a method, write H.264 MP4s + JSON sidecars.

Models (``--model``):

- ``animatediff`` (default): SD 1.5 (``stable-diffusion-v1-5/stable-diffusion-v1-5``) + the motion
  adapter ``guoyww/animatediff-motion-adapter-v1-5-2`` through ``AnimateDiffPipeline`` (the UNet
  becomes a ``UNetMotionModel``). Any SD-1.5-layout base (alias, hub id, folder) works the same way,
  with ``--motion-adapter ID`` to pick the adapter.
- ``zeroscope`` (``cerspense/zeroscope_v2_576w``, 576x320) and ``modelscope``
  (``ali-vilab/text-to-video-ms-1.7b``, 256x256): ``UNet3DConditionModel`` through diffusers'
  ``TextToVideoSDPipeline``.
- ``tiny-video`` / ``tiny-video3d``: offline random pipelines (noise) for tests and smoke runs.

Only spatial 3x3 convs are re-dilated (the engine's layer rule); motion modules, temporal convs
and temporal attention run as trained. NDCFG acts on every frame through the engine's UNet hook.
Sampling stops at the latents; the VAE decode runs here, a few frames at a time (tiled for large
frames), so many 1024 px frames fit. Every video gets a motion statistic in its sidecar; with
``--compare`` the same seed is also sampled directly (``-direct`` MP4) and its motion recorded.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import outputs
from ..errors import ScaleCrafterError
from ..options import GenerateOptions

logger = logging.getLogger(__name__)

SD15_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_MOTION_ADAPTER = "guoyww/animatediff-motion-adapter-v1-5-2"
VIDEO_ALIASES: dict[str, str] = {  # alias -> repo id (its family: families.KNOWN_MODELS)
    "animatediff": SD15_ID,
    "sd15": SD15_ID,  # an SD 1.5 base with --video is AnimateDiff
    "zeroscope": "cerspense/zeroscope_v2_576w",
    "modelscope": "ali-vilab/text-to-video-ms-1.7b",
}
TINY_VIDEO_FAMILY = {"tiny-video": "animatediff", "tiny-video3d": "modelscope"}
UNET3D_FAMILIES = ("modelscope", "zeroscope")
NO_SDXL_VIDEO = (
    "SDXL video needs AnimateDiff's SDXL motion adapter, which scv does not support: use an SD 1.5 base "
    "(--model animatediff, the default) or --model zeroscope / modelscope"
)
DEFAULT_GUIDANCE = {"animatediff": 7.5, "modelscope": 9.0, "zeroscope": 9.0}
VIDEO_TILING_SIDE = 1024  # --vae-tiling auto: tile the VAE decode above this many pixels per side
DECODE_PIXELS = 8 * 512 * 512  # pixels decoded per VAE call (8 frames at 512 px, 2 at 1024 px)
# FreeU (Si et al. 2023): SD 1.5 values for AnimateDiff (the reference code's), the FreeU authors'
# ModelScope values for the UNet3D models
FREEU_PARAMS = {
    "animatediff": dict(b1=1.2, b2=1.4, s1=0.9, s2=0.2),
    "modelscope": dict(b1=1.5, b2=1.6, s1=0.9, s2=0.2),
    "zeroscope": dict(b1=1.5, b2=1.6, s1=0.9, s2=0.2),
}
MAX_FRAMES_3D = 128  # UNet3D has no hard limit; beyond this it is far outside anything trained


def text_to_video_pipeline_class():
    """diffusers' TextToVideoSDPipeline (ModelScope / Zeroscope). diffusers marks it deprecated;
    this is the one place that imports it, so its disappearance is one clear error."""
    try:
        from diffusers import TextToVideoSDPipeline
    except ImportError as e:  # pragma: no cover - depends on the installed diffusers
        import diffusers

        raise ScaleCrafterError(
            f"diffusers {diffusers.__version__} no longer ships TextToVideoSDPipeline (ModelScope/Zeroscope "
            "video); install a diffusers version that has it, e.g. pip install 'diffusers>=0.30,<=0.42.1'"
        ) from e
    return TextToVideoSDPipeline


# ---- finding weights without the network ------------------------------------------------------
@dataclass(frozen=True)
class VideoModelRef:
    name: str  # what the user passed
    kind: str  # "tiny" | "local" | "hub"
    location: str  # tiny name, folder or repo id
    family: str | None  # named (--family, tiny model, known hub id); None = decide from the UNet


def video_family_of_id(model_id: str) -> str | None:
    """The video family of a known hub id: an SD 1.5 base is sampled as AnimateDiff."""
    from ..families import family_of_model_id

    family = family_of_model_id(model_id)
    return "animatediff" if family == "sd15" else family if family in DEFAULT_GUIDANCE else None


def resolve_video_model(model: str, family: str | None = None) -> VideoModelRef:
    """Where `model` points and its family: `family` (--family) if given, else the tiny model's or
    the known hub id's; None leaves it to the UNet's architecture."""
    from .image import resolve_model
    from .tiny_video import is_tiny_video

    if is_tiny_video(model):
        return VideoModelRef(model, "tiny", model, family or TINY_VIDEO_FAMILY[model])
    if model == "sdxl":
        raise ScaleCrafterError(f"--video --model sdxl: {NO_SDXL_VIDEO}")
    if model in VIDEO_ALIASES:
        repo = VIDEO_ALIASES[model]
        return VideoModelRef(model, "hub", repo, family or video_family_of_id(repo))
    try:
        ref = resolve_model(model)
    except ScaleCrafterError:
        raise ScaleCrafterError(
            f"video model {model!r} is not an alias ({', '.join(list(VIDEO_ALIASES) + list(TINY_VIDEO_FAMILY))}), "
            "a local folder or a valid hub id (owner/name)"
        ) from None
    if ref.kind == "tiny":
        raise ScaleCrafterError(f"{model!r} is an image model; video test models are tiny-video and tiny-video3d")
    return VideoModelRef(model, ref.kind, ref.location, family or (video_family_of_id(ref.location) if ref.kind == "hub" else None))


def find_local(location: str, filename: str, what: str, *, local: bool = False, flag: str = "--model") -> Path | None:
    """The path of `filename` in a local folder or the HF cache, without any network access.

    Missing and offline (HF_HUB_OFFLINE set, or the hub unreachable within seconds): one-line
    ScaleCrafterError naming `what` and how to get it. Missing but online: None (download later).
    """
    from .image import _hub_offline, _hub_reachable, download_hint

    if local:
        folder = Path(location).expanduser()
        if not folder.is_dir():
            raise ScaleCrafterError(f"{what} folder {location!r} does not exist")
        path = folder / filename
        if not path.is_file():
            raise ScaleCrafterError(f"{what} folder {location!r} has no {filename}: it is not a diffusers folder")
        return path
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(location, filename)
    if isinstance(cached, str):
        return Path(cached)
    if _hub_offline():
        raise ScaleCrafterError(
            f"{what} {location!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: {download_hint(location, flag)}"
        )
    if not _hub_reachable():
        raise ScaleCrafterError(
            f"{what} {location!r} is not in the local Hugging Face cache and the hub is unreachable: {download_hint(location, flag)}"
        )
    return None


def _read_json(path: Path | None, what: str) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ScaleCrafterError(f"{what}: cannot read {Path(path).name}: {exc}") from None


def _is_local(location: str) -> bool:
    p = Path(location).expanduser()
    return p.exists() or location.startswith((".", "/", "~")) or location.count("/") > 1


@dataclass
class LoadedVideo:
    pipe: Any
    ref: VideoModelRef
    family: str  # animatediff | modelscope | zeroscope (the preset family)
    kind: str  # "animatediff" | "unet3d"
    motion_adapter: str | None
    max_frames: int | None
    tiny: bool = False


def _adapter_location(opts: GenerateOptions) -> str:
    return opts.motion_adapter or DEFAULT_MOTION_ADAPTER


def inspect_video_model(opts: GenerateOptions) -> tuple[VideoModelRef, dict[str, Any], dict[str, Any] | None]:
    """Everything knowable from config files alone: (ref, model_index, motion adapter config or None).

    Fails fast (seconds, no weights read) when the model or its motion adapter is missing offline.
    """
    ref = resolve_video_model(opts.model, opts.family)
    if opts.motion_adapter and (ref.kind == "tiny" or ref.family in UNET3D_FAMILIES):
        why = "brings its own tiny motion adapter" if ref.name == "tiny-video" else "is a UNet3D video model"
        raise ScaleCrafterError(
            f"--motion-adapter only applies to AnimateDiff models built from an SD 1.5 base; {opts.model!r} {why}"
        )
    if ref.kind == "tiny":
        return ref, {}, None
    index = _read_json(find_local(ref.location, "model_index.json", "model", local=ref.kind == "local"), "model")
    pipe_class = index.get("_class_name")
    unet_class = _unet_class(index)
    adapter_cfg = None
    if pipe_class == "StableDiffusionXLPipeline" or (index.get("text_encoder_2") or [None])[0]:
        raise ScaleCrafterError(f"model {opts.model!r} is SDXL: {NO_SDXL_VIDEO}")
    if unet_class == "UNet3DConditionModel":
        if opts.motion_adapter:
            raise ScaleCrafterError(
                f"--motion-adapter only applies to AnimateDiff (an SD 1.5 base); {opts.model!r} is a UNet3D video model"
            )
        if ref.family is None:
            _check_unet3d_family(ref)
    elif unet_class in (None, "UNet2DConditionModel") or (unet_class == "UNetMotionModel" and opts.motion_adapter):
        # an SD 1.5 base (or an AnimateDiff pipeline given another adapter): the adapter must be here too
        loc = _adapter_location(opts)
        path = find_local(loc, "config.json", "motion adapter", local=_is_local(loc), flag="--motion-adapter")
        adapter_cfg = _read_json(path, "motion adapter") if path is not None else {"_not_cached": True}
    elif unet_class != "UNetMotionModel":
        raise ScaleCrafterError(
            f"model {opts.model!r} ({pipe_class}, UNet {unet_class}) is not a supported video model: "
            "use an SD 1.5 base (AnimateDiff), an AnimateDiff pipeline, or a ModelScope/Zeroscope UNet3D pipeline"
        )
    return ref, index, adapter_cfg


def _check_unet3d_family(ref: VideoModelRef) -> None:
    """ModelScope and Zeroscope share one UNet3D layout: refuse before loading when the config says
    it is that layout and nothing names the family (checked again on the loaded UNet)."""
    from ..families import ambiguous_family_error, families_of_layout

    if ref.kind == "local":
        path = Path(ref.location).expanduser() / "unet" / "config.json"
        config = _read_json(path, "model") if path.is_file() else None
    else:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(ref.location, "unet/config.json")
        config = _read_json(Path(cached), "model") if isinstance(cached, str) else None
    candidates = families_of_layout("UNet3DConditionModel", config)
    if len(candidates) > 1:
        raise ambiguous_family_error("UNet3DConditionModel", candidates)


def _architecture_family(pipe, kind: str) -> str:
    """The family of a loaded video UNet nothing named: the one its layout fits, or for a layout of
    no family (e.g. a small fine-tune) the defaults of its kind, with its own base size."""
    from ..families import ambiguous_family_error, layout_families

    candidates = layout_families(pipe.unet)
    if len(candidates) > 1:
        raise ambiguous_family_error(type(pipe.unet).__name__, candidates)
    if candidates:
        return candidates[0]
    return "animatediff" if kind == "animatediff" else "modelscope"


def _unet_class(index: dict) -> str | None:
    unet = index.get("unet")
    return unet[1] if isinstance(unet, (list, tuple)) and len(unet) == 2 else None


def max_frames_of(ref: VideoModelRef, index: dict, adapter_cfg: dict | None) -> int | None:
    if ref.kind == "tiny":
        from .tiny_video import TINY_MAX_FRAMES

        return TINY_MAX_FRAMES if ref.name == "tiny-video" else MAX_FRAMES_3D
    if adapter_cfg and "motion_max_seq_length" in adapter_cfg:
        return int(adapter_cfg["motion_max_seq_length"])
    if _unet_class(index) == "UNet3DConditionModel":
        return MAX_FRAMES_3D
    return 32 if adapter_cfg is not None else None  # the AnimateDiff default when the config is unknown


def check_frames(frames: int, max_frames: int | None, what: str) -> None:
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ScaleCrafterError(f"frames must be a whole number of at least 1, got {frames!r}")
    if max_frames is not None and frames > max_frames:
        raise ScaleCrafterError(
            f"{frames} frames is more than {what} supports ({max_frames}: its motion modules' maximum sequence "
            f"length); use --frames {max_frames} or fewer"
        )


def load_video_pipeline(opts: GenerateOptions, device: str, dtype, inspected=None) -> LoadedVideo:
    """Load the video pipeline of `opts` (alias, hub id, folder, tiny name); one-line errors offline.
    `inspected`: what `inspect_video_model(opts)` returned, when the caller already has it."""
    import torch

    from .image import download_hint

    ref, index, adapter_cfg = inspected or inspect_video_model(opts)
    max_frames = max_frames_of(ref, index, adapter_cfg)
    if ref.kind == "tiny":
        from .tiny_video import tiny_video_pipeline

        pipe = tiny_video_pipeline(ref.name, dtype=dtype or torch.float32)
        kind = "animatediff" if ref.name == "tiny-video" else "unet3d"
        adapter = "tiny" if kind == "animatediff" else None
        if device != "cpu":
            pipe.to(device)
        return LoadedVideo(pipe, ref, ref.family, kind, adapter, max_frames, tiny=True)

    local_only = ref.kind == "local" or bool(index) or _offline()
    kwargs: dict[str, Any] = {"torch_dtype": dtype} if dtype is not None else {}
    source = str(Path(ref.location).expanduser()) if ref.kind == "local" else ref.location
    unet_class = _unet_class(index)
    adapter_name = None
    try:
        if unet_class == "UNet3DConditionModel":
            cls = text_to_video_pipeline_class()
            kind = "unet3d"
            pipe = cls.from_pretrained(source, local_files_only=local_only, **kwargs)
        else:
            from diffusers import AnimateDiffPipeline, MotionAdapter

            kind = "animatediff"
            if unet_class == "UNetMotionModel" and not opts.motion_adapter:
                pipe = AnimateDiffPipeline.from_pretrained(source, local_files_only=local_only, **kwargs)
                adapter_name = "(in the pipeline)"
            else:
                adapter_name = _adapter_location(opts)
                a_local = _is_local(adapter_name)
                a_src = str(Path(adapter_name).expanduser()) if a_local else adapter_name
                a_local_only = a_local or _offline() or not (adapter_cfg or {}).get("_not_cached")
                try:
                    adapter = MotionAdapter.from_pretrained(a_src, local_files_only=a_local_only, **kwargs)
                except (OSError, ValueError) as exc:
                    raise ScaleCrafterError(
                        f"motion adapter {adapter_name!r} could not be loaded ({_first_line(exc)}): "
                        f"{download_hint(adapter_name, '--motion-adapter')}"
                    ) from None
                pipe = AnimateDiffPipeline.from_pretrained(
                    source, motion_adapter=adapter, local_files_only=local_only, **kwargs
                )
                if unet_class != "UNetMotionModel":  # an image base: give it AnimateDiff's schedule
                    _animatediff_scheduler(pipe)
    except ScaleCrafterError:
        raise
    except (OSError, ValueError) as exc:
        raise ScaleCrafterError(
            f"video model {opts.model!r} ({ref.location}) could not be loaded ({_first_line(exc)}): "
            f"{download_hint(ref.location)}"
        ) from None
    family = ref.family or _architecture_family(pipe, kind)
    pipe.to(device)
    if kind == "animatediff":
        max_frames = int(getattr(pipe.unet.config, "motion_max_seq_length", max_frames or 32))
    return LoadedVideo(pipe, ref, family, kind, adapter_name, max_frames)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _offline() -> bool:
    from .image import _hub_offline

    return _hub_offline()


def _animatediff_scheduler(pipe) -> None:
    """AnimateDiff's motion modules were trained on the linear beta schedule (its inference config:
    beta 0.00085 -> 0.012 linear); SD 1.5's own scheduler says scaled_linear. Keep DDIM's leading
    spacing (steps_offset 1), on which the plans' reference steps are defined."""
    from diffusers import DDIMScheduler

    pipe.scheduler = DDIMScheduler.from_config(
        pipe.scheduler.config, beta_schedule="linear", clip_sample=False, steps_offset=1, timestep_spacing="leading"
    )


# ---- options ----------------------------------------------------------------------------------
def size_multiple_for(levels: int, vae_factor: int = 8) -> int:
    return vae_factor * 2 ** (levels - 1)


def validate_video_options(opts: GenerateOptions) -> None:
    """Checks that need no weights (sizes to 8 px, frames >= 1, fps, names, presets)."""
    from .image import validate_options

    validate_options(opts)
    if opts.family is not None and opts.family not in DEFAULT_GUIDANCE:
        raise ScaleCrafterError(f"--family {opts.family} is an image family; video families: {', '.join(DEFAULT_GUIDANCE)}")
    check_frames(opts.frames, None, "")
    if isinstance(opts.fps, bool) or not isinstance(opts.fps, int) or opts.fps < 1:
        raise ScaleCrafterError(f"fps must be a whole number of at least 1, got {opts.fps!r}")
    if opts.compare and opts.method == "direct":
        logger.warning("--compare compares a method with direct sampling; with --method direct it is ignored")


def video_targets(opts: GenerateOptions) -> list[dict[str, Any]]:
    """Every video of the job: prompt, index, seed and the paths it will write."""
    out_dir = Path(opts.out_dir)
    settings = opts.output_settings()
    jobs = []
    k = 0
    for prompt in opts.prompts:
        for j in range(opts.num_per_prompt):
            seed = opts.seed + k
            stem = outputs.output_stem(prompt, opts.width, opts.height, opts.method, seed, settings, extra=f"{opts.frames}f")
            job = {"prompt": prompt, "index": j, "seed": seed, "mp4": out_dir / f"{stem}.mp4"}
            job["frames_dir"] = out_dir / f"{stem}-frames" if opts.save_frames else None
            compare = opts.compare and opts.method != "direct"
            job["direct_mp4"] = out_dir / f"{stem}-direct.mp4" if compare else None
            job["direct_frames_dir"] = out_dir / f"{stem}-direct-frames" if compare and opts.save_frames else None
            jobs.append(job)
            k += 1
    return jobs


def job_paths(job: dict[str, Any]) -> list[Path]:
    """Every file and folder one video job writes."""
    paths = []
    for key in ("mp4", "direct_mp4"):
        if job[key] is not None:
            paths += [job[key], outputs.sidecar_path(job[key])]
    return paths + [job[key] for key in ("frames_dir", "direct_frames_dir") if job[key] is not None]


def _check_all_targets(jobs: list[dict[str, Any]], overwrite: bool) -> None:
    files = []
    for job in jobs:
        for key in ("mp4", "direct_mp4"):
            if job[key] is not None:
                files += [job[key], outputs.sidecar_path(job[key])]
    outputs.check_targets(files, overwrite)
    for job in jobs:
        for key in ("frames_dir", "direct_frames_dir"):
            d = job[key]
            if d is not None and d.exists() and not overwrite:
                raise ScaleCrafterError(f"output folder {str(d)!r} already exists; pass --overwrite or choose another --out")


def _check_preset_before_loading(opts: GenerateOptions, ref: VideoModelRef) -> None:
    """A named preset that does not fit the model (family, base, size) fails before any weights
    load where the base is known from the name alone (tiny models, aliases); elsewhere it fails
    when the plan is applied, still before sampling."""
    base = known_base(ref)
    if opts.method != "scalecrafter" or opts.force_preset or opts.preset == "auto" or base is None:
        return
    from ..presets import check_preset_fits, load_preset

    family, plan = load_preset(opts.preset)
    check_preset_fits(plan, family, family=ref.family, base=base, units="pixels", height=opts.height, width=opts.width)


def _known_configs(ref: VideoModelRef) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(UNet config, VAE config) from files already here (tiny constants, a folder, the HF cache)."""
    if ref.kind == "tiny":
        from .tiny import TINY_VAE_CONFIG
        from .tiny_video import TINY_VIDEO_UNET_CONFIG

        return dict(TINY_VIDEO_UNET_CONFIG), dict(TINY_VAE_CONFIG)
    from .image import _read_component_config

    folder = str(Path(ref.location).expanduser()) if ref.kind == "local" else ""
    return _read_component_config(ref, folder, "unet"), _read_component_config(ref, folder, "vae")


def wants_video_tiling(opts: GenerateOptions) -> bool:
    return opts.vae_tiling == "on" or (opts.vae_tiling == "auto" and max(opts.height, opts.width) > VIDEO_TILING_SIDE)


def check_video_memory(opts: GenerateOptions, unet_config: dict[str, Any], vae_config: dict[str, Any],
                       vae_factor: int, dtype, device: str) -> None:
    """Refuse a video whose memory estimate (`resources`) exceeds the device's free memory, unless forced."""
    from .. import resources

    estimate = resources.estimate_memory(
        unet_config, vae_config, height=opts.height, width=opts.width, dtype_bytes=dtype.itemsize,
        vae_factor=vae_factor, frames=opts.frames, cfg=opts.guidance is None or opts.guidance > 1,
        tiled=wants_video_tiling(opts), decode_frames=decode_chunk_frames(opts.height, opts.width),
    )
    resources.check_memory(estimate, device, force=opts.force_memory,
                           what=f"--res {opts.width}x{opts.height} with {opts.frames} frames")


# ---- sampling and decoding --------------------------------------------------------------------
def decode_chunk_frames(height: int, width: int) -> int:
    return max(1, DECODE_PIXELS // max(1, height * width))


def decode_latents(pipe, latents, *, chunk: int, progress: bool = False):
    """(B, C, F, h, w) latents -> (B, F, H, W, 3) float frames in [0, 1], `chunk` frames per VAE call."""
    import torch
    from tqdm.auto import tqdm

    vae = pipe.vae
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


def sample_video(pipe, opts: GenerateOptions, prompt: str, seed: int, guidance: float):
    """Run the pipeline to latents with a CPU generator seeded by `seed`."""
    import torch

    generator = torch.Generator("cpu").manual_seed(seed)
    out = pipe(
        prompt=prompt,
        negative_prompt=opts.negative_prompt,
        height=opts.height,
        width=opts.width,
        num_frames=opts.frames,
        num_inference_steps=opts.steps,
        guidance_scale=guidance,
        eta=opts.eta,
        generator=generator,
        output_type="latent",
    )
    latents = out.frames if hasattr(out, "frames") else out[0]
    if not hasattr(latents, "shape") or latents.ndim != 5:
        raise RuntimeError(f"{type(pipe).__name__} returned no 5-D latents for output_type='latent'")
    return latents


def known_base(ref: VideoModelRef) -> tuple[int, int] | None:
    """(height, width) in pixels the model was trained at, where it is known before loading: tiny
    models 64; a model whose family is named (--family, a known hub id or alias) its family's size
    (Zeroscope was tuned at 576x320, which a square UNet sample_size cannot say). None otherwise."""
    if ref.kind == "tiny":
        from .tiny_video import TINY_BASE_PX

        return (TINY_BASE_PX, TINY_BASE_PX)
    if ref.family is not None:
        from ..families import get_family

        fam = get_family(ref.family)
        return (fam.base_height, fam.base_width)
    return None


def base_size(loaded: LoadedVideo) -> tuple[int, int]:
    """(height, width) in pixels the model was trained at: `known_base`, else the UNet's
    sample_size times the VAE factor, so fine-tunes at other sizes get their own base."""
    known = known_base(loaded.ref)
    if known is not None:
        return known
    sample = loaded.pipe.unet.config.sample_size
    h, w = (sample, sample) if isinstance(sample, int) else tuple(sample)
    scale = int(getattr(loaded.pipe, "vae_scale_factor", 8))
    return (h * scale, w * scale)


class VideoMethod:
    """Apply the chosen method around one sampling call; the UNet is restored in `exit`.

    When the model's base size is its family's, the family goes to the engine (so "auto" finds the
    family's reference presets); otherwise the base goes, and "auto" becomes the plan derived for
    that base, so a 1024 px preset written for a 512 px base never lands on a 64 px model.
    """

    def __init__(self, loaded: LoadedVideo, opts: GenerateOptions, guidance: float):
        self.loaded, self.opts, self.guidance = loaded, opts, guidance
        self.meta: dict[str, Any] = {"plan": None}
        self.handle = None
        self.noticed = False  # the "nothing to do" notice is said once per job, not per video

    def _target(self) -> tuple[dict[str, Any], Any]:
        from ..families import get_family
        from ..plan import derive_plan
        from ..presets import preset_argument

        base = base_size(self.loaded)
        fam = get_family(self.loaded.family)
        preset = preset_argument(self.opts.preset, self.opts.force_preset)
        if base == (fam.base_height, fam.base_width):
            return {"family": self.loaded.family}, preset
        if preset == "auto":
            levels = len(self.loaded.pipe.unet.config.block_out_channels)
            preset = derive_plan(levels, base, (self.opts.height, self.opts.width))
        return {"family": self.loaded.family, "base": base}, preset

    def __enter__(self):
        opts, pipe = self.opts, self.loaded.pipe
        where, preset = self._target()
        if opts.method == "scalecrafter":
            from ..patch import apply_scalecrafter
            from ..plan import idle_notice

            self.handle = handle = apply_scalecrafter(
                pipe,
                height=opts.height,
                width=opts.width,
                preset=preset,
                ndcfg=opts.ndcfg,
                dispersion=opts.dispersion,
                progressive=opts.progressive,
                cfg=self.guidance > 1.0,  # TextToVideoSDPipeline has no do_classifier_free_guidance
                **where,
            )
            self.meta = {"plan": handle.plan.to_dict(), "patched_convs": handle.patched_convs,
                         "ndcfg_layout": handle.ndcfg_layout}
            notice = None if self.noticed else idle_notice(handle.plan)
            if notice:
                logger.warning("%s", notice)
            self.noticed = True
        elif opts.method == "attn-sf":
            from ..patch import apply_attn_sf

            n = apply_attn_sf(pipe, height=opts.height, width=opts.width, **where)
            self.meta = {"plan": None, "attn_sf_layers": n}
        return self.meta

    def __exit__(self, *exc):
        from ..patch import remove_attn_sf

        if self.handle is not None:
            self.handle.remove()
            self.meta.update(unet_calls=self.handle.unet_calls, damped_passes=self.handle.damped_passes)
        remove_attn_sf(self.loaded.pipe)
        return False


def _write_video(frames, fps: int, mp4: Path, frames_dir: Path | None, meta: dict, overwrite: bool) -> list[Path]:
    """Frames folder, MP4, sidecar; on failure remove what this call wrote (each write is atomic)."""
    import shutil

    from ..media import write_mp4, write_png_frames

    done: list[Path] = []
    try:
        if frames_dir is not None:
            write_png_frames(frames_dir, frames, overwrite=overwrite)
            done.append(frames_dir)
            meta["frames_dir"] = str(frames_dir)
        write_mp4(mp4, frames, fps, overwrite=overwrite)
        done.append(mp4)
        outputs.write_sidecar(mp4, meta)
    except BaseException:
        for p in done:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        raise
    return done


def generate_videos(opts: GenerateOptions) -> list[Path]:
    """Generate every video of `opts`; returns the MP4 paths (each has a .json sidecar next to it).

    Order: checks that need no weights (sizes, frames, names, presets, output collisions, a
    writable output folder), then the model's config files (fast offline failure; the frame limit
    of the motion modules; the memory estimate), then the weights; each video is sampled to
    latents with its own seed, decoded in frame chunks, and written atomically with its sidecar
    (and, with --compare, the direct video beside it). With `skip_existing`, videos whose files
    all exist are left as they are.
    """
    import torch
    from tqdm.auto import tqdm

    from ..media import motion_stats
    from .image import check_size, configure_scheduler, resolve_device, resolve_dtype

    validate_video_options(opts)
    jobs = video_targets(opts)
    if opts.skip_existing:
        jobs = outputs.skip_existing(jobs, job_paths, "videos")
    _check_all_targets(jobs, opts.overwrite)
    outputs.check_writable(Path(opts.out_dir))
    ref, index, adapter_cfg = inspect_video_model(opts)
    check_frames(opts.frames, max_frames_of(ref, index, adapter_cfg), f"{opts.model!r}")
    if ref.family is not None:  # the layout is known before loading: check sizes now (re-checked after)
        from ..families import get_family

        check_size(opts.height, opts.width, size_multiple_for(get_family(ref.family).levels))
    _check_preset_before_loading(opts, ref)

    device = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)
    unet_config, vae_config = _known_configs(ref)
    memory_checked = bool(unet_config and vae_config)
    if memory_checked:
        check_video_memory(opts, unet_config, vae_config, 8, dtype, device)
    if not jobs:
        return []
    t0 = time.perf_counter()
    loaded = load_video_pipeline(opts, device, dtype, (ref, index, adapter_cfg))
    pipe = loaded.pipe
    check_frames(opts.frames, loaded.max_frames, f"{opts.model!r}")
    levels = len(pipe.unet.config.block_out_channels)
    vae_factor = int(getattr(pipe, "vae_scale_factor", 8))
    check_size(opts.height, opts.width, size_multiple_for(levels, vae_factor))
    if not memory_checked:
        check_video_memory(opts, dict(pipe.unet.config), dict(pipe.vae.config), vae_factor, dtype, device)
    logger.info("loaded %s (%s, family %s) in %.1fs", loaded.ref.location, loaded.kind, loaded.family,
                time.perf_counter() - t0)

    if opts.scheduler != "ddim" or type(pipe.scheduler).__name__ != "DDIMScheduler":
        configure_scheduler(pipe, opts.scheduler)  # keeps the model's noise schedule (from_config)
    freeu = FREEU_PARAMS[loaded.family] if opts.freeu else None
    if freeu:
        pipe.enable_freeu(**freeu)
    else:
        pipe.disable_freeu()
    tiling = wants_video_tiling(opts)
    if tiling:
        pipe.vae.enable_tiling()
    else:
        pipe.vae.disable_tiling()
    chunk = decode_chunk_frames(opts.height, opts.width)
    guidance = opts.guidance if opts.guidance is not None else DEFAULT_GUIDANCE[loaded.family]
    pipe.set_progress_bar_config(disable=not opts.progress, leave=False, desc="denoise")

    outputs.prepare_out_dir(Path(opts.out_dir))
    base_meta: dict[str, Any] = {
        "tool": "scalecrafter_video",
        "kind": "video",
        "model": opts.model,
        "model_id": loaded.ref.location,
        "model_source": loaded.ref.kind,
        "motion_adapter": loaded.motion_adapter,
        "pipeline": type(pipe).__name__,
        "unet_class": type(pipe.unet).__name__,
        "family": loaded.family,
        "base_size": list(base_size(loaded)),  # (height, width) in pixels
        "method": opts.method,
        "preset": opts.preset if opts.method == "scalecrafter" else None,
        "ndcfg": opts.ndcfg if opts.method == "scalecrafter" else None,
        "dispersion": opts.dispersion if opts.method == "scalecrafter" else None,
        "progressive": opts.progressive if opts.method == "scalecrafter" else None,
        "force_preset": opts.force_preset if opts.method == "scalecrafter" else None,
        "width": opts.width,
        "height": opts.height,
        "frames": opts.frames,
        "fps": opts.fps,
        "steps": opts.steps,
        "guidance": guidance,
        "eta": opts.eta,
        "scheduler": opts.scheduler,
        "scheduler_class": type(pipe.scheduler).__name__,
        "beta_schedule": pipe.scheduler.config.get("beta_schedule"),
        "negative_prompt": opts.negative_prompt,
        "dtype": str(dtype).removeprefix("torch."),
        "device": device,
        "freeu": freeu,
        "vae_tiling": tiling,
        "decode_chunk_frames": chunk,
        "video_codec": "h264 (libx264), yuv420p, crf 18",
        "generator": "torch.Generator('cpu').manual_seed(seed)",
        "output_settings": opts.output_settings(),  # what the name's hash covers, with the prompt
    }
    if loaded.tiny:
        from .tiny_video import TINY_NOTE

        base_meta["note"] = TINY_NOTE
    base_meta["versions"] = outputs.versions()
    base_meta["command"] = opts.command

    written: list[Path] = []
    method = VideoMethod(loaded, opts, guidance)
    for job in tqdm(jobs, desc="videos", unit="video", disable=not opts.progress or len(jobs) == 1):
        start = time.perf_counter()
        with method as method_meta:
            latents = sample_video(pipe, opts, job["prompt"], job["seed"], guidance)
        frames = decode_latents(pipe, latents, chunk=chunk, progress=opts.progress)[0]
        motion = motion_stats(frames)
        meta = {"prompt": job["prompt"], "seed": job["seed"], "index": job["index"], **base_meta, **method_meta}
        meta["motion"] = motion
        meta["seconds"] = round(time.perf_counter() - start, 3)

        if job["direct_mp4"] is not None:
            d_start = time.perf_counter()
            d_latents = sample_video(pipe, opts, job["prompt"], job["seed"], guidance)
            d_frames = decode_latents(pipe, d_latents, chunk=chunk, progress=opts.progress)[0]
            d_motion = motion_stats(d_frames)
            d_meta = {"prompt": job["prompt"], "seed": job["seed"], "index": job["index"], **base_meta,
                      "method": "direct", "preset": None, "ndcfg": None, "dispersion": None, "progressive": None,
                      "force_preset": None, "plan": None,
                      "motion": d_motion, "compare_of": str(job["mp4"])}
            d_meta["seconds"] = round(time.perf_counter() - d_start, 3)
            d_meta["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            meta["compare"] = {
                "direct_mp4": str(job["direct_mp4"]),
                "direct_motion": d_motion,
                "motion_ratio": _ratio(motion["mean_abs_frame_diff"], d_motion["mean_abs_frame_diff"]),
                "coarse_motion_ratio": _ratio(motion["coarse_abs_frame_diff"], d_motion["coarse_abs_frame_diff"]),
            }
            _write_video(d_frames, opts.fps, job["direct_mp4"], job["direct_frames_dir"], d_meta, opts.overwrite)
        meta["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        _write_video(frames, opts.fps, job["mp4"], job["frames_dir"], meta, opts.overwrite)
        logger.info("wrote %s (motion %.4f)", job["mp4"], motion["mean_abs_frame_diff"])
        written.append(job["mp4"])
        if job["direct_mp4"] is not None:
            written.append(job["direct_mp4"])
    return written


def _ratio(a: float, b: float) -> float | None:
    return None if b == 0 or not math.isfinite(b) else round(a / b, 6)
