"""Image front end: load a Stable Diffusion / SDXL pipeline, apply a method, write PNGs + sidecars.

Models are named by alias (sd15, sd21, sdxl), hub id, local diffusers folder, or one of the tiny
offline pipelines (tiny-sd, tiny-sdxl). Loading checks the local cache first and fails within
seconds with a one-line `ScaleCrafterError` when weights are missing and the hub is out of reach.
The model family (and with it the sampling defaults) comes from the UNet's configuration, never
from the model's name, so fine-tunes and local copies behave like their base model.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .. import outputs
from ..errors import ScaleCrafterError
from ..options import GenerateOptions
from .tiny import TINY_NOTE, TINY_UNET_CONFIGS, TINY_VAE_CONFIG, TINY_VAE_SCALE_FACTOR, is_tiny, tiny_pipeline

logger = logging.getLogger(__name__)

MODEL_ALIASES: dict[str, str] = {
    "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd21": "stabilityai/stable-diffusion-2-1-base",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
}
VIDEO_MODEL_NAMES = ("animatediff", "zeroscope", "modelscope", "tiny-video", "tiny-video3d")  # pipelines/video.py
IMAGE_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionXLPipeline")
VIDEO_UNETS = ("UNetMotionModel", "UNet3DConditionModel", "UNetSpatioTemporalConditionModel")
METHODS = ("scalecrafter", "direct", "attn-sf")
SCHEDULERS: dict[str, str] = {
    "ddim": "DDIMScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
    "pndm": "PNDMScheduler",
    "unipc": "UniPCMultistepScheduler",
}
# PNDM as the Stable Diffusion pipelines ship it: PLMS steps only (its Runge-Kutta warm-up needs
# more steps than asked and breaks with few).
SCHEDULER_OVERRIDES: dict[str, dict[str, Any]] = {"pndm": {"skip_prk_steps": True}}
DTYPES = ("auto", "float32", "float16", "bfloat16")
VAE_TILING = ("auto", "on", "off")
# FreeU (Si et al. 2023) parameters the reference code uses per family.
FREEU_PARAMS: dict[str, dict[str, float]] = {
    "sd15": dict(b1=1.2, b2=1.4, s1=0.9, s2=0.2),
    "sd21": dict(b1=1.1, b2=1.2, s1=0.9, s2=0.2),
    "sdxl": dict(b1=1.1, b2=1.2, s1=0.6, s2=0.4),
}
DEFAULT_GUIDANCE = {"sd15": 7.5, "sd21": 7.5, "sdxl": 5.0}
MAX_SIDE = 16384
MAX_STEPS = 1000  # the training timesteps of every supported model
SAFE_MULTIPLE = 64  # pixels per side every supported model accepts (SD: 64, SDXL: 32, video: 64)
TILING_SIDE = 1536  # full VAE decode above this many pixels per side (1024 for SDXL) is tiled
HUB_PROBE_TIMEOUT_S = 3.0


# ---- sizes ----------------------------------------------------------------------------------
def check_size(height: int, width: int, multiple: int | None = None) -> None:
    """Positive, at most MAX_SIDE and divisible by `multiple` pixels per side, else a one-line error.

    `multiple` is what the model needs; None when its configs are not read yet: then multiples of
    8 pass (every VAE needs them) and the suggested sizes are multiples of SAFE_MULTIPLE, which
    every supported model accepts, so a suggestion never fails the model's own check later.
    """
    for side, value in (("height", height), ("width", width)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ScaleCrafterError(f"{side} must be a whole number of pixels, got {value!r}")
        if value <= 0:
            raise ScaleCrafterError(f"{side} must be positive, got {value}")
        if value > MAX_SIDE:
            raise ScaleCrafterError(f"{side} {value} is larger than the maximum of {MAX_SIDE} pixels")
    need, step = (multiple, multiple) if multiple else (8, SAFE_MULTIPLE)
    bad = [(s, v) for s, v in (("width", width), ("height", height)) if v % need]
    if bad:
        side, value = bad[0]
        lower, upper = value // step * step, (value // step + 1) * step
        nearest = " or ".join(str(v) for v in (lower, upper) if 0 < v <= MAX_SIDE)
        why = f"this model needs multiples of {multiple} pixels" if multiple else "every model needs multiples of 8 pixels"
        raise ScaleCrafterError(f"{side} {value} is not divisible by {need} ({why}): use {nearest}")


def check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ScaleCrafterError(f"steps must be between 1 and {MAX_STEPS}, got {steps}")


def size_multiple(pipe) -> int:
    """Pixels per side the model needs: the VAE factor times one 2x per UNet downsampling level."""
    levels = len(pipe.unet.config.block_out_channels)
    return int(pipe.vae_scale_factor) * 2 ** (levels - 1)


# ---- models ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelRef:
    """Where a --model value points: a tiny pipeline, a local folder or a hub repository."""

    name: str  # what the user passed
    kind: str  # "tiny" | "local" | "hub"
    location: str  # tiny name, folder path or repo id


def resolve_model(model: str) -> ModelRef:
    if not model or not model.strip():
        raise ScaleCrafterError("--model is empty: pass an alias (sd15, sd21, sdxl), a hub id or a local folder")
    if is_tiny(model):
        return ModelRef(model, "tiny", model)
    if model in VIDEO_MODEL_NAMES:
        raise ScaleCrafterError(f"model {model!r} is a video model: pass --video")
    if model in MODEL_ALIASES:
        return ModelRef(model, "hub", MODEL_ALIASES[model])
    path = Path(model).expanduser()
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model:
        return ModelRef(model, "local", str(path))
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(model)
    except HFValidationError:
        raise ScaleCrafterError(
            f"model {model!r} is not an alias ({', '.join(list(MODEL_ALIASES) + ['tiny-sd', 'tiny-sdxl'])}), "
            "a local folder or a valid hub id (owner/name)"
        ) from None
    return ModelRef(model, "hub", model)


def _describe(ref: ModelRef) -> str:
    return f"model {ref.name!r}" + (f" ({ref.location})" if ref.location != ref.name else "")


def _hub_offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return constants.HF_HUB_OFFLINE or env in {"1", "ON", "YES", "TRUE"}


def _hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _read_model_index(ref: ModelRef) -> tuple[str, dict[str, Any]]:
    """Find model_index.json without touching the network: (local folder or "", index or {} if not cached yet)."""
    if ref.kind == "local":
        folder = Path(ref.location)
        if not folder.exists():
            raise ScaleCrafterError(f"{_describe(ref)}: folder does not exist")
        if folder.is_file():
            raise ScaleCrafterError(
                f"{_describe(ref)} is a single file; pass a diffusers folder (with model_index.json), "
                "e.g. one saved by `pipe.save_pretrained(DIR)`"
            )
        index = folder / "model_index.json"
        if not index.is_file():
            raise ScaleCrafterError(f"{_describe(ref)} has no model_index.json: it is not a diffusers pipeline folder")
        return str(folder), _load_json(index, ref)
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(ref.location, "model_index.json")
    if isinstance(cached, str):
        return "", _load_json(Path(cached), ref)
    how = download_hint(ref.location)
    if _hub_offline():
        raise ScaleCrafterError(
            f"{_describe(ref)} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: {how}"
        )
    if not _hub_reachable():
        raise ScaleCrafterError(f"{_describe(ref)} is not in the local Hugging Face cache and the hub is unreachable: {how}")
    return "", {}


def download_hint(repo: str, flag: str = "--model") -> str:
    """How to get a missing hub repository (model or motion adapter), for image and video alike."""
    return (
        f"run `hf download {repo}` on a connected machine and copy its ~/.cache/huggingface here, "
        f"or pass {flag} /path/to/a/local/diffusers/folder"
    )


def _load_json(path: Path, ref: ModelRef) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ScaleCrafterError(f"{_describe(ref)}: cannot read {path.name}: {exc}") from None


def _check_unet_class(ref: ModelRef, unet_class: str | None) -> None:
    if unet_class in VIDEO_UNETS:
        raise ScaleCrafterError(f"{_describe(ref)} is a video model ({unet_class}): pass --video")
    if unet_class != "UNet2DConditionModel":
        raise ScaleCrafterError(
            f"{_describe(ref)} has an unsupported UNet class {unet_class}: images need UNet2DConditionModel (SD 1.x/2.x, SDXL)"
        )


def _check_index(ref: ModelRef, index: dict[str, Any]) -> None:
    if not index:
        return
    pipe_class = index.get("_class_name", "?")
    unet_entry = index.get("unet")
    unet_class = unet_entry[1] if isinstance(unet_entry, (list, tuple)) and len(unet_entry) == 2 else None
    if unet_class is None:
        raise ScaleCrafterError(f"{_describe(ref)} ({pipe_class}) has no UNet: ScaleCrafter needs a UNet diffusion model")
    _check_unet_class(ref, unet_class)
    if pipe_class not in IMAGE_PIPELINES:
        raise ScaleCrafterError(
            f"{_describe(ref)} is a {pipe_class}; supported image pipelines: {', '.join(IMAGE_PIPELINES)}"
        )


def defaults_family(unet_config) -> str:
    """The family whose sampling defaults (guidance, FreeU) suit any SD-like fine-tune: sdxl when the
    UNet takes "text_time" added conditioning, else sd21 (1024-d text) or sd15. Loose on purpose;
    `families.detect_family` is the strict check of which reference presets apply."""
    get = unet_config.get if isinstance(unet_config, dict) else lambda k, d=None: getattr(unet_config, k, d)
    if get("addition_embed_type", None) == "text_time":
        return "sdxl"
    return "sd21" if get("cross_attention_dim", None) == 1024 else "sd15"


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ScaleCrafterError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ScaleCrafterError(f"device {device!r} requested but CUDA is not available: use --device cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ScaleCrafterError(f"device {device!r} does not exist ({torch.cuda.device_count()} CUDA device(s))")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ScaleCrafterError(f"device {device!r} requested but MPS is not available: use --device cpu or auto")
    if dev.type not in {"cpu", "cuda", "mps"}:
        raise ScaleCrafterError(f"unsupported device {device!r}: use auto, cpu, cuda, cuda:N or mps")
    return str(dev)


def resolve_dtype(dtype: str, device: str):
    """auto: float16 on CUDA, float32 elsewhere."""
    import torch

    if dtype not in DTYPES:
        raise ScaleCrafterError(f"unknown dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    if dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    if dtype == "float16" and device == "cpu":
        logger.warning("float16 on CPU is slow and some ops may be missing; float32 is the CPU default")
    return getattr(torch, dtype)


@dataclass(frozen=True)
class ModelInfo:
    """What is known about a model before its weights load (read from small config files)."""

    ref: ModelRef
    folder: str  # local folder ("" for tiny and hub models)
    index: dict[str, Any]  # model_index.json ({} when not cached yet)
    unet_config: dict[str, Any] | None
    vae_scale_factor: int = 8
    revision: str | None = None  # commit of the cached hub snapshot
    vae_config: dict[str, Any] | None = None

    @property
    def size_multiple(self) -> int | None:
        """Pixels per side the model needs, when the UNet config is known before loading."""
        channels = (self.unet_config or {}).get("block_out_channels")
        return self.vae_scale_factor * 2 ** (len(channels) - 1) if channels else None


@dataclass
class LoadedModel:
    pipe: Any
    ref: ModelRef
    family: str


def inspect_model(model: str) -> ModelInfo:
    """Locate `model` and read its configs without loading weights; fails fast when it is missing offline."""
    ref = resolve_model(model)
    if ref.kind == "tiny":
        return ModelInfo(ref, "", {}, dict(TINY_UNET_CONFIGS[ref.location]), TINY_VAE_SCALE_FACTOR,
                         vae_config=dict(TINY_VAE_CONFIG))
    folder, index = _read_model_index(ref)
    _check_index(ref, index)
    unet_config = _read_component_config(ref, folder, "unet")
    vae_config = _read_component_config(ref, folder, "vae") or {}
    vae_levels = len(vae_config.get("block_out_channels") or (0, 0, 0, 0))
    return ModelInfo(ref, folder, index, unet_config, 2 ** (vae_levels - 1), _cached_revision(ref), vae_config or None)


def _cached_revision(ref: ModelRef) -> str | None:
    if ref.kind != "hub":
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(ref.location, "model_index.json")
    return Path(cached).parent.name if isinstance(cached, str) else None


def _read_component_config(ref: ModelRef, folder: str, component: str) -> dict[str, Any] | None:
    if folder:
        path = Path(folder) / component / "config.json"
        return _load_json(path, ref) if path.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(ref.location, f"{component}/config.json")
    return _load_json(Path(cached), ref) if isinstance(cached, str) else None


def image_family(ref: ModelRef, unet_config, family: str | None = None) -> str:
    """`family` (--family) if given, else a known hub id's, else the one its UNet config suggests."""
    from ..families import family_of_model_id

    return family or (family_of_model_id(ref.location) if ref.kind == "hub" else None) or defaults_family(unet_config)


def load_pipeline(model: str | ModelInfo, *, device: str = "cpu", dtype=None, progress: bool = True,
                  family: str | None = None) -> LoadedModel:
    """Load `model` (alias, hub id, folder, tiny name or an inspected model) onto `device`."""
    info = model if isinstance(model, ModelInfo) else inspect_model(model)
    ref = info.ref
    if ref.kind == "tiny":
        pipe = tiny_pipeline(ref.location)
    else:
        pipe = _from_pretrained(ref, info.folder, info.index, dtype, progress)
    unet = getattr(pipe, "unet", None)
    unet_class = type(unet).__name__ if unet is not None else None
    _check_unet_class(ref, unet_class)
    if dtype is not None:
        pipe.to(device=device, dtype=dtype)
    else:
        pipe.to(device)
    return LoadedModel(pipe, ref, image_family(ref, pipe.unet.config, family))


_LOAD_ERRORS = (OSError, ValueError, TypeError, KeyError, AttributeError, ImportError, RuntimeError)


def _from_pretrained(ref: ModelRef, folder: str, index: dict[str, Any], dtype, progress: bool = True):
    from diffusers import DiffusionPipeline

    source = folder or ref.location
    kwargs: dict[str, Any] = {"torch_dtype": dtype} if dtype is not None else {}
    local_only = bool(folder) or bool(index) or _hub_offline()
    with _loading_output(progress):
        try:
            return DiffusionPipeline.from_pretrained(source, local_files_only=local_only, **kwargs)
        except _LOAD_ERRORS as exc:
            if type(exc).__name__ == "OutOfMemoryError":
                raise
            error = exc
        if local_only and not folder and not _hub_offline():
            logger.info("cached copy of %s is incomplete (%s); downloading the rest", ref.location, error)
            try:
                return DiffusionPipeline.from_pretrained(source, **kwargs)
            except _LOAD_ERRORS as exc:
                if type(exc).__name__ == "OutOfMemoryError":
                    raise
                error = exc
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    how = "pass a complete diffusers folder (e.g. saved with `pipe.save_pretrained(DIR)`)" if folder else download_hint(ref.location)
    raise ScaleCrafterError(f"{_describe(ref)} could not be loaded ({first}): {how}") from error


@contextmanager
def _loading_output(progress: bool):
    """Hide the libraries' loading bars unless progress is wanted, and a deprecation notice we cannot act on."""
    import warnings

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    states = [(mod, mod.is_progress_bar_enabled()) for mod in (diffusers_logging, transformers_logging)]
    if not progress:
        for mod, _ in states:
            mod.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            # `torch_dtype` works on every supported diffusers; newer ones only rename it to `dtype`.
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            yield
    finally:
        for mod, enabled in states:
            if enabled:
                mod.enable_progress_bar()
            else:
                mod.disable_progress_bar()


def make_scheduler(name: str, config):
    """Scheduler `name` on the noise schedule `config`: the one factory behind `generate` and `scv plan`."""
    import diffusers

    if name not in SCHEDULERS:
        raise ScaleCrafterError(f"unknown scheduler {name!r}: choose one of {', '.join(SCHEDULERS)}")
    return getattr(diffusers, SCHEDULERS[name]).from_config(config, **SCHEDULER_OVERRIDES.get(name, {}))


def configure_scheduler(pipe, name: str) -> None:
    """Swap the pipeline's scheduler for `name`, keeping the model's noise schedule."""
    pipe.scheduler = make_scheduler(name, pipe.scheduler.config)


def wants_vae_tiling(mode: str, family: str, height: int, width: int) -> bool:
    if mode not in VAE_TILING:
        raise ScaleCrafterError(f"unknown --vae-tiling {mode!r}: choose one of {', '.join(VAE_TILING)}")
    if mode != "auto":
        return mode == "on"
    limit = 1024 if family == "sdxl" else TILING_SIDE
    return max(height, width) > limit


# ---- generation -----------------------------------------------------------------------------
def validate_options(opts: GenerateOptions) -> None:
    """Every check that needs no weights: run before loading anything or writing anything."""
    if not opts.prompts:
        raise ScaleCrafterError("no prompt given: pass --prompt TEXT or --prompts FILE")
    if any(not isinstance(p, str) or not p.strip() for p in opts.prompts):
        raise ScaleCrafterError("empty prompt: every prompt needs some text")
    if opts.skip_existing and opts.overwrite:
        raise ScaleCrafterError("--skip-existing keeps existing outputs and --overwrite replaces them: pass one of them")
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
    if opts.family is not None:
        from ..families import get_family

        if not opts.video and get_family(opts.family).video:
            raise ScaleCrafterError(f"--family {opts.family} is a video family: pass --video, or an image family "
                                    f"({', '.join(DEFAULT_GUIDANCE)})")
    if opts.method == "scalecrafter":
        _check_preset(opts.preset)
    elif opts.preset != "auto" or opts.dispersion or not opts.ndcfg or opts.progressive is not None:
        logger.warning("--preset, --dispersion, --no-ndcfg and --no-progressive only apply to --method scalecrafter; ignored")


def _check_preset(preset: str) -> None:
    """Unknown preset names and unreadable preset files fail here, before any weights load."""
    from ..presets import load_preset

    if preset != "auto":
        load_preset(preset)


def image_targets(opts: GenerateOptions) -> list[tuple[str, int, int, Path]]:
    """(prompt, index within the prompt, seed, path) of every image of the job, in order."""
    out_dir = Path(opts.out_dir)
    settings = opts.output_settings()
    jobs = []
    k = 0
    for prompt in opts.prompts:
        for j in range(opts.num_per_prompt):
            seed = opts.seed + k
            stem = outputs.output_stem(prompt, opts.width, opts.height, opts.method, seed, settings)
            jobs.append((prompt, j, seed, out_dir / f"{stem}.png"))
            k += 1
    return jobs


def generate_images(opts: GenerateOptions) -> list[Path]:
    """Generate every image of `opts`; returns the PNG paths (each has a .json sidecar next to it).

    All checks run first (sizes, names, presets, output collisions, a writable output folder, the
    memory estimate), then the model loads (failing fast when it is missing offline), then each
    image is sampled with its own seed and written atomically together with its sidecar. With
    `skip_existing`, images whose PNG and sidecar both exist are left as they are.
    """
    import torch
    from tqdm.auto import tqdm

    validate_options(opts)
    jobs = image_targets(opts)
    if opts.skip_existing:
        jobs = outputs.skip_existing(jobs, lambda job: [job[3], outputs.sidecar_path(job[3])], "images")
    outputs.check_targets([p for *_, p in jobs] + [outputs.sidecar_path(p) for *_, p in jobs], opts.overwrite)
    outputs.check_writable(Path(opts.out_dir))

    device = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)
    info = inspect_model(opts.model)
    check_size(opts.height, opts.width, info.size_multiple)
    if opts.method == "scalecrafter":
        check_plan(info, opts)
    memory_checked = bool(info.unet_config and info.vae_config)
    if memory_checked:
        check_memory(opts, info.unet_config, info.vae_config, info.vae_scale_factor, dtype, device)
    if not jobs:
        return []
    t0 = time.perf_counter()
    loaded = load_pipeline(info, device=device, dtype=dtype, progress=opts.progress, family=opts.family)
    pipe, family = loaded.pipe, loaded.family
    check_size(opts.height, opts.width, size_multiple(pipe))
    if not memory_checked:
        check_memory(opts, dict(pipe.unet.config), dict(pipe.vae.config), int(pipe.vae_scale_factor), dtype, device)
    logger.info("loaded %s (family %s) in %.1fs", loaded.ref.location, family, time.perf_counter() - t0)

    configure_scheduler(pipe, opts.scheduler)
    freeu = FREEU_PARAMS[family] if opts.freeu else None
    if freeu:
        pipe.enable_freeu(**freeu)
    else:
        pipe.disable_freeu()
    tiling = wants_vae_tiling(opts.vae_tiling, family, opts.height, opts.width)
    if tiling:
        pipe.vae.enable_tiling()
    else:
        pipe.vae.disable_tiling()
    guidance = opts.guidance if opts.guidance is not None else DEFAULT_GUIDANCE[family]
    pipe.set_progress_bar_config(disable=not opts.progress, leave=False)

    base_meta = {
        "tool": "scalecrafter_video",
        "kind": "image",
        "model": opts.model,
        "model_id": loaded.ref.location,
        "model_source": loaded.ref.kind,
        "model_revision": info.revision,
        "family": family,
        "method": opts.method,
        "preset": opts.preset if opts.method == "scalecrafter" else None,
        "ndcfg": opts.ndcfg if opts.method == "scalecrafter" else None,
        "dispersion": opts.dispersion if opts.method == "scalecrafter" else None,
        "progressive": opts.progressive if opts.method == "scalecrafter" else None,
        "force_preset": opts.force_preset if opts.method == "scalecrafter" else None,
        "width": opts.width,
        "height": opts.height,
        "steps": opts.steps,
        "guidance": guidance,
        "eta": opts.eta,
        "scheduler": opts.scheduler,
        "scheduler_class": type(pipe.scheduler).__name__,
        "negative_prompt": opts.negative_prompt,
        "dtype": str(dtype).removeprefix("torch."),
        "device": device,
        "freeu": freeu,
        "vae_tiling": tiling,
        "generator": "torch.Generator('cpu').manual_seed(seed)",
        "output_settings": opts.output_settings(),  # what the name's hash covers, with the prompt
    }
    if loaded.ref.kind == "tiny":
        base_meta["note"] = TINY_NOTE
    base_meta["versions"] = outputs.versions()
    base_meta["command"] = opts.command

    written: list[Path] = []
    with method_context(pipe, opts) as (method_meta, handle):
        outputs.prepare_out_dir(Path(opts.out_dir))
        for prompt, index, seed, path in tqdm(jobs, desc="images", unit="img", disable=not opts.progress):
            start = time.perf_counter()
            generator = torch.Generator("cpu").manual_seed(seed)
            calls_before = (handle.unet_calls, handle.damped_passes) if handle else None
            result = pipe(
                prompt=prompt,
                negative_prompt=opts.negative_prompt,
                height=opts.height,
                width=opts.width,
                num_inference_steps=opts.steps,
                guidance_scale=guidance,
                eta=opts.eta,
                generator=generator,
                output_type="pil",
            )
            image = result.images[0]
            meta = {"prompt": prompt, "seed": seed, "index": index, **base_meta, **method_meta}
            if handle is not None:  # what ran for this image: UNet calls and noise-damped passes among them
                meta["unet_calls"] = handle.unet_calls - calls_before[0]
                meta["damped_passes"] = handle.damped_passes - calls_before[1]
            meta["seconds"] = round(time.perf_counter() - start, 3)
            meta["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            nsfw = getattr(result, "nsfw_content_detected", None)
            if nsfw and nsfw[0]:
                meta["nsfw_content_detected"] = True
                logger.warning("%s: the safety checker blacked out this image", path.name)
            outputs.save_image(image, path)
            outputs.write_sidecar(path, meta)
            logger.info("wrote %s", path)
            written.append(path)
    return written


def check_memory(opts: GenerateOptions, unet_config: dict[str, Any], vae_config: dict[str, Any], vae_factor: int,
                 dtype, device: str) -> None:
    """Refuse a job whose memory estimate (`resources`) exceeds the device's free memory, unless forced."""
    from .. import resources

    tiled = wants_vae_tiling(opts.vae_tiling, defaults_family(unet_config), opts.height, opts.width)
    estimate = resources.estimate_memory(
        unet_config, vae_config, height=opts.height, width=opts.width, dtype_bytes=dtype.itemsize,
        vae_factor=vae_factor, cfg=opts.guidance is None or opts.guidance > 1, tiled=tiled,
    )
    resources.check_memory(estimate, device, force=opts.force_memory, what=f"--res {opts.width}x{opts.height}")


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
    import torch
    from diffusers import UNet2DConditionModel

    from ..patch import scalecrafter
    from ..presets import preset_argument

    config = {k: v for k, v in info.unet_config.items() if not k.startswith("_")}
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
    # ndcfg off: this only validates the plan (main, damped and dispersion layers alike)
    with scalecrafter(_MetaPipeline(unet, info.vae_scale_factor), height=opts.height, width=opts.width,
                      preset=preset_argument(opts.preset, opts.force_preset), ndcfg=False,
                      dispersion=opts.dispersion, progressive=opts.progressive, family=opts.family):
        pass


@contextmanager
def method_context(pipe, opts: GenerateOptions):
    """Apply the chosen method for the whole job; the UNet is restored in `finally`.
    Yields (sidecar fields, the ScaleCrafter handle or None)."""
    if opts.method == "scalecrafter":
        from ..patch import scalecrafter
        from ..plan import idle_notice
        from ..presets import preset_argument

        with scalecrafter(
            pipe,
            height=opts.height,
            width=opts.width,
            preset=preset_argument(opts.preset, opts.force_preset),
            ndcfg=opts.ndcfg,
            dispersion=opts.dispersion,
            progressive=opts.progressive,
            family=opts.family,
        ) as handle:
            notice = idle_notice(handle.plan)
            if notice:
                logger.warning("%s", notice)
            yield {"plan": _plan_dict(handle), "ndcfg_layout": handle.ndcfg_layout}, handle
    elif opts.method == "attn-sf":
        from ..patch import apply_attn_sf, remove_attn_sf

        layers = apply_attn_sf(pipe, height=opts.height, width=opts.width)
        try:
            yield {"plan": None, "attn_sf_layers": layers}, None
        finally:
            remove_attn_sf(pipe)
    else:
        yield {"plan": None}, None


def _plan_dict(handle) -> dict[str, Any] | None:
    plan = getattr(handle, "plan", None)
    return plan.to_dict() if plan is not None else None
