"""What the image and video front ends (and `scv sweep`) share once a job is asked for: option
and size checks, the sampler factory (also behind `scv plan`), the pipeline set-up (sampler,
FreeU, VAE tiling, progress bars), the job's samples and the sampling call, the memory check, the
method context (direct, Attn-SF or ScaleCrafter around each sampling call) and the sidecar fields
of a job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..engine.baselines import apply_attn_sf, remove_attn_sf
from ..engine.errors import ScaleCrafterError
from ..engine.families import IMAGE_FAMILIES, SD_SCHEDULER_CONFIG, VIDEO_FAMILIES, get_family
from ..engine.patch import apply_scalecrafter
from ..engine.plan import Plan, idle_notice
from ..outputs import files as outputs
from .loading import LoadedModel, ModelCache
from .options import DTYPES, MAX_SIDE, MAX_STEPS, METHODS, SCHEDULERS, VAE_TILING, GenerateOptions

logger = logging.getLogger(__name__)

SAFE_MULTIPLE = 64  # pixels per side every supported model accepts (SD: 64, SDXL: 32, video: 64)
GENERATOR = "torch.Generator('cpu').manual_seed(seed)"  # how every sample's noise is drawn


# ---- sizes and steps --------------------------------------------------------------------------
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
    """Pixels per side a loaded model needs: the VAE factor times one 2x per UNet downsampling level."""
    levels = len(pipe.unet.config.block_out_channels)
    return int(getattr(pipe, "vae_scale_factor", 8)) * 2 ** (levels - 1)


# ---- samplers ---------------------------------------------------------------------------------
def make_scheduler(name: str, config):
    """Scheduler `name` on the noise schedule `config`: the one factory behind `generate` and `scv plan`."""
    import diffusers

    if name not in SCHEDULERS:
        raise ScaleCrafterError(f"unknown scheduler {name!r}: choose one of {', '.join(SCHEDULERS)}")
    # PNDM as the Stable Diffusion pipelines ship it: PLMS steps only (its Runge-Kutta warm-up
    # needs more steps than asked and breaks with few)
    overrides = {"skip_prk_steps": True} if name == "pndm" else {}
    return getattr(diffusers, SCHEDULERS[name]).from_config(config, **overrides)


def sampler_timesteps(steps: int, scheduler: str = "ddim", num_train_timesteps: int = 1000) -> list:
    """The timesteps `generate`'s scheduler visits for `steps` on the SD noise schedule (DDIM:
    leading spacing, steps_offset 1), built by the same factory."""
    sched = make_scheduler(scheduler, dict(SD_SCHEDULER_CONFIG, num_train_timesteps=num_train_timesteps))
    sched.set_timesteps(steps)
    return [t.item() for t in sched.timesteps]


# ---- the pipeline set-up ----------------------------------------------------------------------
@dataclass(frozen=True)
class Sampling:
    """How a job samples on its prepared pipeline (its sidecars record it)."""

    guidance: float
    freeu: dict[str, float] | None  # the FreeU parameters, None when off
    vae_tiling: bool


def prepare_pipeline(pipe, opts: GenerateOptions, family: str) -> Sampling:
    """The job's sampler (keeping the model's noise schedule), FreeU, VAE tiling and progress bar on
    a loaded pipeline; the family gives the defaults (a pipeline without FreeU is left alone)."""
    pipe.scheduler = make_scheduler(opts.scheduler, pipe.scheduler.config)
    check_freeu(opts, family)
    freeu = get_family(family).freeu if opts.freeu else None
    if freeu:
        pipe.enable_freeu(**freeu)
    elif hasattr(pipe, "disable_freeu"):
        pipe.disable_freeu()
    pipe.set_progress_bar_config(disable=not opts.progress, leave=False, desc="denoise")
    tiled = set_vae_tiling(pipe, wants_vae_tiling(opts.vae_tiling, family, opts.height, opts.width))
    guidance = opts.guidance if opts.guidance is not None else get_family(family).guidance
    return Sampling(guidance, freeu, tiled)


def wants_vae_tiling(mode: str, family: str, height: int, width: int) -> bool:
    """--vae-tiling: on, off, or auto (above the family's side: 1536 px, 1024 for SDXL and video)."""
    if mode not in VAE_TILING:
        raise ScaleCrafterError(f"unknown --vae-tiling {mode!r}: choose one of {', '.join(VAE_TILING)}")
    if mode != "auto":
        return mode == "on"
    return max(height, width) > get_family(family).vae_tiling_side


def set_vae_tiling(pipe, tiled: bool) -> bool:
    """Tile the VAE decode or not; returns whether it is tiled (never for a pipeline without a VAE)."""
    vae = getattr(pipe, "vae", None)
    if vae is None:
        return False
    vae.enable_tiling() if tiled else vae.disable_tiling()
    return tiled


# ---- the job's samples --------------------------------------------------------------------------
def job_samples(opts: GenerateOptions) -> list[tuple[str, int, int]]:
    """(prompt, index within the prompt, seed) of every output of the job, in order: output k of
    the job has seed `opts.seed + k`."""
    prompts = [(prompt, j) for prompt in opts.prompts for j in range(opts.num_per_prompt)]
    return [(prompt, j, opts.seed + k) for k, (prompt, j) in enumerate(prompts)]


def run_pipeline(pipe, opts: GenerateOptions, prompt: str, seed: int, guidance: float, **kwargs):
    """One sampling call, diffusers-style, with a CPU generator seeded by `seed`; `negative_prompt`
    only when given (not every pipeline takes one)."""
    if opts.negative_prompt is not None:
        kwargs["negative_prompt"] = opts.negative_prompt
    return pipe(prompt=prompt, height=opts.height, width=opts.width, num_inference_steps=opts.steps,
                guidance_scale=guidance, eta=opts.eta, generator=torch.Generator("cpu").manual_seed(seed), **kwargs)


def load_cached(cache: ModelCache | None, opts: GenerateOptions, device: str, dtype,
                load: Callable[[], LoadedModel]) -> LoadedModel:
    """`load()`, or with a `cache` (`scv ui`) the model it holds for this job's model, device and dtype."""
    if cache is None:
        return load()
    return cache.get((opts.model, opts.video, opts.family, opts.motion_adapter, device, str(dtype)), load)


# ---- checks before loading --------------------------------------------------------------------
def validate_options(opts: GenerateOptions) -> None:
    """Every check of a job that needs no model: run before loading or writing anything."""
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
    if opts.family is not None and get_family(opts.family).video != opts.video:
        if opts.video:
            raise ScaleCrafterError(f"--family {opts.family} is an image family; video families: {', '.join(VIDEO_FAMILIES)}")
        raise ScaleCrafterError(f"--family {opts.family} is a video family: pass --video, or an image family "
                                f"({', '.join(IMAGE_FAMILIES)})")
    if opts.video:
        for name in ("frames", "fps"):
            value = getattr(opts, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ScaleCrafterError(f"{name} must be a whole number of at least 1, got {value!r}")
        if opts.compare and opts.method == "direct":
            logger.warning("--compare compares a method with direct sampling; with --method direct it is ignored")
    if opts.method == "scalecrafter":
        _check_preset(opts.preset)
    elif opts.preset != "auto" or opts.dispersion or not opts.ndcfg or opts.progressive is not None:
        logger.warning("--preset, --dispersion, --no-ndcfg and --no-progressive only apply to --method scalecrafter; ignored")


def check_model_options(opts: GenerateOptions, ref, family: str | None) -> None:
    """What the model itself takes, checked before it loads: a class-conditional built-in model
    draws only its class names and has no negative prompt (its null class is the unconditional
    one); FreeU only where the family has tuned parameters."""
    classes = ref.builtin.classes if ref.builtin is not None else None
    if classes:
        unknown = [p for p in opts.prompts if p not in classes]
        if unknown:
            raise ScaleCrafterError(f"{ref.name} draws one of {', '.join(classes)}: {unknown[0]!r} is not one of its classes")
        if opts.negative_prompt is not None:
            raise ScaleCrafterError(f"{ref.name} is class-conditional and takes no --negative-prompt "
                                    "(its null class is the unconditional prompt)")
    if family is not None:
        check_freeu(opts, family)


def check_freeu(opts: GenerateOptions, family: str) -> None:
    if opts.freeu and get_family(family).freeu is None:
        raise ScaleCrafterError(f"--freeu has no tuned parameters for {family} models: drop --freeu")


def _check_preset(preset: str) -> None:
    """Unknown preset names and unreadable preset files fail here, before any weights load."""
    from ..engine.presets import load_preset

    if preset != "auto":
        load_preset(preset)


def check_memory(opts: GenerateOptions, unet_config: dict[str, Any], vae_config: dict[str, Any] | None, vae_factor: int,
                 dtype, device: str, family: str, *, decode_frames: int | None = None) -> None:
    """Refuse a job whose memory estimate (`resources`) exceeds the device's free memory, unless forced.
    `decode_frames`: video frames decoded per VAE call."""
    from . import resources

    frames = opts.frames if opts.video else None
    estimate = resources.estimate_memory(
        unet_config, vae_config, height=opts.height, width=opts.width, dtype_bytes=dtype.itemsize,
        vae_factor=vae_factor, cfg=opts.guidance is None or opts.guidance > 1,
        tiled=wants_vae_tiling(opts.vae_tiling, family, opts.height, opts.width),
        **({"frames": frames, "decode_frames": decode_frames} if frames else {}),
    )
    what = f"--res {opts.width}x{opts.height}" + (f" with {frames} frames" if frames else "")
    resources.check_memory(estimate, device, force=opts.force_memory, what=what)


# ---- the method -------------------------------------------------------------------------------
class MethodContext:
    """The job's method around a sampling call: `with method as fields:` applies direct sampling,
    the Attn-SF baseline or ScaleCrafter to the pipeline, and leaving takes it off (in `finally`,
    Ctrl-C too). `fields` are the sidecar's: the plan, and once the block is left, what ran
    (`unet_calls`, `damped_passes`). The "nothing to do" notice is said once per context.

    `preset`, `family`, `base` and `cfg` go to the engine as the front end decides them."""

    def __init__(self, pipe, opts: GenerateOptions, *, preset: str | Plan, family: str | None = None,
                 base: tuple[int, int] | None = None, cfg: bool | None = None):
        self.pipe, self.opts, self.preset, self.cfg = pipe, opts, preset, cfg
        self.where: dict[str, Any] = {"family": family, **({"base": base} if base is not None else {})}
        self.handle = None
        self.fields: dict[str, Any] = {"plan": None}
        self.noticed = False

    def check(self) -> None:
        """Resolve and validate the ScaleCrafter plan (main, damped and dispersion layers alike) and
        take it off again, so plan mistakes surface before anything is sampled or written."""
        if self.opts.method == "scalecrafter":
            self._apply(ndcfg=False).remove()

    def _apply(self, ndcfg: bool):
        opts = self.opts
        return apply_scalecrafter(self.pipe, height=opts.height, width=opts.width, preset=self.preset, ndcfg=ndcfg,
                                  dispersion=opts.dispersion, progressive=opts.progressive, cfg=self.cfg,
                                  **self.where)

    def __enter__(self) -> dict[str, Any]:
        opts = self.opts
        self.fields = {"plan": None}
        if opts.method == "scalecrafter":
            self.handle = handle = self._apply(opts.ndcfg)
            self.fields = {"plan": handle.plan.to_dict(), "patched_convs": handle.patched_convs,
                           "ndcfg_layout": handle.ndcfg_layout}
            notice = None if self.noticed else idle_notice(handle.plan)
            if notice:
                logger.warning("%s", notice)
            self.noticed = True
        elif opts.method == "attn-sf":
            layers = apply_attn_sf(self.pipe, height=opts.height, width=opts.width, **self.where)
            self.fields = {"plan": None, "attn_sf_layers": layers}
        return self.fields

    def __exit__(self, *exc) -> bool:
        if self.handle is not None:
            self.handle.remove()
            self.fields.update(unet_calls=self.handle.unet_calls, damped_passes=self.handle.damped_passes)
            self.handle = None
        remove_attn_sf(self.pipe)
        return False


# ---- sidecars ---------------------------------------------------------------------------------
def job_sidecar(opts: GenerateOptions, loaded: LoadedModel, sampling: Sampling, *, device: str, dtype) -> dict[str, Any]:
    """The sidecar fields every output of a job shares: the model, the method's settings, the
    sampler and the environment (each output adds its prompt, seed, plan and what ran)."""
    pipe = loaded.pipe
    scalecrafter = opts.method == "scalecrafter"
    height, width = loaded.base
    meta: dict[str, Any] = {
        "tool": "scalecrafter_video",
        "kind": "video" if opts.video else "image",
        "model": opts.model,
        "model_id": loaded.ref.location,
        "model_source": loaded.ref.kind,
        "model_revision": loaded.revision,
        "pipeline": type(pipe).__name__,
        "unet_class": type(pipe.unet).__name__,
        "family": loaded.family,
        "base_size": [width, height],
        "method": opts.method,
        "preset": opts.preset if scalecrafter else None,
        "ndcfg": opts.ndcfg if scalecrafter else None,
        "dispersion": opts.dispersion if scalecrafter else None,
        "progressive": opts.progressive if scalecrafter else None,
        "force_preset": opts.force_preset if scalecrafter else None,
        "width": opts.width,
        "height": opts.height,
        "steps": opts.steps,
        "guidance": sampling.guidance,
        "eta": opts.eta,
        "scheduler": opts.scheduler,
        "scheduler_class": type(pipe.scheduler).__name__,
        "beta_schedule": pipe.scheduler.config.get("beta_schedule"),
        "negative_prompt": opts.negative_prompt,
        "dtype": str(dtype).removeprefix("torch."),
        "device": device,
        "freeu": sampling.freeu,
        "vae_tiling": sampling.vae_tiling,
        "generator": GENERATOR,
    }
    if loaded.ref.builtin is not None:
        meta["note"] = loaded.ref.builtin.note
    meta["versions"] = outputs.versions()
    meta["command"] = opts.command
    return meta
