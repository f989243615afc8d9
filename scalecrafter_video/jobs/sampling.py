"""How a job samples: the sampler factory (also behind `scv plan`), the pipeline set-up (sampler,
FreeU, VAE tiling, progress bar) and the sampling call itself."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engine.errors import ScaleCrafterError
from ..engine.families import SD_SCHEDULER_CONFIG
from .family import sampling_defaults
from .options import SCHEDULERS, VAE_TILING, GenerateOptions

GENERATOR = "torch.Generator('cpu').manual_seed(seed)"  # how every sample's noise is drawn


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


@dataclass(frozen=True)
class Sampling:
    """How a job samples on its prepared pipeline (its sidecars record it)."""

    guidance: float
    freeu: dict[str, float] | None  # the FreeU parameters, None when off
    vae_tiling: bool


def prepare_pipeline(pipe, opts: GenerateOptions, family: str) -> Sampling:
    """The job's sampler (keeping the model's noise schedule), FreeU, VAE tiling and progress bar on
    a loaded pipeline; the family gives the defaults (a pipeline without FreeU is left alone).
    The options are checked already (`checks.check_model_options`)."""
    pipe.scheduler = make_scheduler(opts.scheduler, pipe.scheduler.config)
    freeu = sampling_defaults(family).freeu if opts.freeu else None
    if freeu:
        pipe.enable_freeu(**freeu)
    elif hasattr(pipe, "disable_freeu"):
        pipe.disable_freeu()
    pipe.set_progress_bar_config(disable=not opts.progress, leave=False, desc="denoise")
    tiled = set_vae_tiling(pipe, wants_vae_tiling(opts.vae_tiling, family, opts.height, opts.width))
    guidance = opts.guidance if opts.guidance is not None else sampling_defaults(family).guidance
    return Sampling(guidance, freeu, tiled)


def wants_vae_tiling(mode: str, family: str, height: int, width: int) -> bool:
    """--vae-tiling: on, off, or auto (above the family's side: 1536 px, 1024 for SDXL and video)."""
    if mode not in VAE_TILING:
        raise ScaleCrafterError(f"unknown --vae-tiling {mode!r}: choose one of {', '.join(VAE_TILING)}")
    if mode != "auto":
        return mode == "on"
    return max(height, width) > sampling_defaults(family).vae_tiling_side


def set_vae_tiling(pipe, tiled: bool) -> bool:
    """Tile the VAE decode or not; returns whether it is tiled (never for a pipeline without a VAE)."""
    vae = getattr(pipe, "vae", None)
    if vae is None:
        return False
    vae.enable_tiling() if tiled else vae.disable_tiling()
    return tiled


def run_pipeline(pipe, opts: GenerateOptions, prompt: str, seed: int, guidance: float, **kwargs):
    """One sampling call, diffusers-style, with a CPU generator seeded by `seed`; `negative_prompt`
    only when given (not every pipeline takes one)."""
    if opts.negative_prompt is not None:
        kwargs["negative_prompt"] = opts.negative_prompt
    return pipe(
        prompt=prompt,
        height=opts.height,
        width=opts.width,
        num_inference_steps=opts.steps,
        guidance_scale=guidance,
        eta=opts.eta,
        generator=torch.Generator("cpu").manual_seed(seed),
        **kwargs,
    )
