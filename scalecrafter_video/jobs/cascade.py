"""Cascade sampling: layout and motion decided at the model's base size, then refined up to the target.

What FreeScale, DemoFusion and CineScale do to keep a base sample's layout and motion: sample at the
base size (the target's aspect ratio, within the base size), then stages of at most 2x per side up to
the target. Each stage upsamples the previous result (bicubic in pixel space: a latent pipeline's
sample is decoded, resized, and encoded again by the refining pipeline, through the VAE's tiling
where it is tiled), re-noises it to the restart step and denoises it at the stage's size under the
stage's plan, mixing the noised stage input back in before every step (the skip residual):

    x = x * (1 - c1) + noised_input_t * c1,    c1 = (0.5 * (1 + cos(pi * (1000 - t) / 1000))) ** exponent

where noised_input_t = scheduler.add_noise(stage input, noise, t) with the one noise draw the stage
restarted from. After each stage, each frame's colours (per-channel mean and standard deviation)
are matched to its stage input's (the AdaIN colour fix of diffusion upscalers; `color_fix="none"`
leaves them): denoising at a size the model was not trained at shifts colours (the shipped shapes
model's objects came out more saturated with every stage). A clip's skip residual can hold its
motion longer than its appearance: with a motion exponent, the frames' mean is mixed with weight c1
and each frame's difference from that mean (where the objects are in that frame) with
c2 = cos_factor ** motion_exponent. The frame count and the temporal layers are untouched.

Stock pipelines refine through their img2img / video-to-video siblings (`from_pipe`: the same
modules, no copy): `strength` gives the restart, `callback_on_step_end` (VideoToVideoSDPipeline:
its `callback`, mixing in place) the skip residual. A pipeline whose own call takes `strength` and
`image` / `video` (ShapesPipeline, or an img2img pipeline given for `scv upscale`) refines itself.

`cascade(pipe, prompt, height=, width=)` is the Python entry point; the job runner (`scv generate
--cascade`, `scv upscale`) calls `run_stages` with its own method per stage.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch

from ..engine.errors import ScaleCrafterError
from ..engine.families import size_multiple
from ..engine.layers import check_unet, find_unet
from ..engine.overrides import Override
from ..engine.patch import apply_scalecrafter
from ..engine.plan import Plan, Rule
from ..engine.schema import is_number
from ..engine.sizing import base_size, check_size, pixels_per_sample
from .frames import (
    as_frames,
    decode_chunk_frames,
    decode_latents,
    fix_colors,
    resize_frames,
    to_pil,
)
from .options import COLOR_FIXES, DEFAULT_RESTART, STAGE_PLANS, restart_problem

logger = logging.getLogger(__name__)

STAGE_SCALE = 2  # the most a stage enlarges each side (before rounding to the model's multiple)
RESIZE = "bicubic in pixel space (latent models: decode, resize, encode)"
# FreeScale's restrained re-dilation: these layers only, for the first 35 of 50 reference steps
RESTRAINED_LAYERS = ("down_blocks.1.downsamplers", "down_blocks.2.resnets", "mid_block.resnets")
RESTRAINED_STOP = 35.0
REFINERS: dict[str, str] = {  # text-to-image / text-to-video class -> its img2img / video-to-video sibling
    "StableDiffusionPipeline": "StableDiffusionImg2ImgPipeline",
    "StableDiffusionXLPipeline": "StableDiffusionXLImg2ImgPipeline",
    "AnimateDiffPipeline": "AnimateDiffVideoToVideoPipeline",
    "TextToVideoSDPipeline": "VideoToVideoSDPipeline",
}
# How a refiner lays out the latents it passes to `scheduler.add_noise`, where that is not the
# (B, C, F, h, w) it denoises: AnimateDiff noises (B, F, C, h, w), VideoToVideoSD (B * F, C, h, w).
NOISE_LAYOUTS: dict[str, str] = {"AnimateDiffVideoToVideoPipeline": "bfchw", "VideoToVideoSDPipeline": "(bf)chw"}
VIDEO_UNETS = ("UNetMotionModel", "UNet3DConditionModel")

StageMethod = Callable[[Any, tuple[int, int], bool], AbstractContextManager]


# ---- settings ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class CascadeConfig:
    """How each stage of a cascade refines.

    Attributes:
        restart: the fraction of the schedule each stage skips: it is re-noised to the timestep of
            step int(restart * steps) and denoised from there (FreeScale: 0.3). Above 0 and below 1.
            A sequence gives one per refining stage in order, its last value for the stages beyond
            it. Default (0.5, 0.8): the first stage (base -> 2x) at 0.5, the later ones, which
            only add detail, at 0.8, keeping more of the motion and objects their input has.
        skip_exponent: the exponent of the skip residual's cosine weight (FreeScale 2, DemoFusion 3);
            larger values let go of the stage input sooner. Positive.
        stage_plan: the method of every stage above the base: "full" (the engine's plan for the
            stage's size), "restrained" (FreeScale's subset: `RESTRAINED_LAYERS`, first 35 of 50
            reference steps, factor = stage size / base size) or "none" (direct).
        motion_exponent: clips only: the exponent of the weight that mixes back each frame's
            difference from the frames' mean (the motion); None: `skip_exponent` (one weight for all).
            Smaller than `skip_exponent` holds the stage input's motion longer. Positive.
        color_fix: "adain" (each stage's frames get their input's per-channel colour mean and
            spread, `frames.match_colors`), "wavelet" (their input's coarse band,
            `frames.match_low_band`) or "none".

    Raises:
        ScaleCrafterError: a value out of range, one line.
    """

    restart: float | tuple[float, ...] = DEFAULT_RESTART
    skip_exponent: float = 2.0
    stage_plan: str = "full"
    motion_exponent: float | None = None
    color_fix: str = "adain"

    @classmethod
    def of(cls, opts) -> CascadeConfig:
        """The cascade settings of a job's `GenerateOptions`."""
        return cls(opts.restart, opts.skip_exponent, opts.stage_plan, color_fix=opts.color_fix)

    def __post_init__(self):
        if isinstance(self.restart, (list, tuple)):
            if not self.restart:
                raise ScaleCrafterError("restart is an empty sequence: give one fraction, or one per stage")
            object.__setattr__(self, "restart", self.restart[0] if len(self.restart) == 1 else tuple(self.restart))
        for value in self.restarts:
            if problem := restart_problem(value):
                raise ScaleCrafterError(problem)
        if not is_number(self.skip_exponent) or not 0 < self.skip_exponent <= 100:
            raise ScaleCrafterError(
                f"skip exponent must be above 0 and at most 100 (the skip residual's weight is "
                f"cos_factor ** exponent), got {self.skip_exponent!r}"
            )
        if self.stage_plan not in STAGE_PLANS:
            raise ScaleCrafterError(f"unknown stage plan {self.stage_plan!r}: choose one of {', '.join(STAGE_PLANS)}")
        if self.color_fix not in COLOR_FIXES:
            raise ScaleCrafterError(f"unknown colour fix {self.color_fix!r}: choose one of {', '.join(COLOR_FIXES)}")
        if self.motion_exponent is not None and (
            not is_number(self.motion_exponent) or not 0 < self.motion_exponent <= 100
        ):
            raise ScaleCrafterError(
                f"motion exponent must be above 0 and at most 100 (the weight of the frames' differences "
                f"is cos_factor ** exponent), got {self.motion_exponent!r}"
            )

    @property
    def restarts(self) -> tuple[float, ...]:
        """The restart of each refining stage given (one value: every stage's)."""
        return self.restart if isinstance(self.restart, tuple) else (self.restart,)

    def restart_at(self, stage: int) -> float:
        """The restart of refining stage `stage` (1: the first above the base)."""
        return self.restarts[min(max(stage, 1), len(self.restarts)) - 1]

    def start_step(self, steps: int, stage: int = 1) -> int:
        """The step refining stage `stage` restarts at: int(restart * steps), as FreeScale counts it."""
        return int(self.restart_at(stage) * steps)

    def strength(self, steps: int, stage: int = 1) -> float:
        """The img2img `strength` that starts at `start_step` (diffusers runs int(steps * strength) steps)."""
        return min(1.0, (steps - self.start_step(steps, stage) + 0.5) / steps)

    def to_dict(self) -> dict[str, Any]:
        """The settings as sidecars record them."""
        out = {
            "restart": list(self.restart) if isinstance(self.restart, tuple) else self.restart,
            "skip_exponent": self.skip_exponent,
            "stage_plan": self.stage_plan,
            "color_fix": self.color_fix,
        }
        if self.motion_exponent is not None:
            out["motion_exponent"] = self.motion_exponent
        return out


def skip_weight(timestep: float, exponent: float, num_train_timesteps: int = 1000) -> float:
    """The skip residual's weight c1 at `timestep`: (0.5 (1 + cos(pi (T - t) / T))) ** exponent (FreeScale)."""
    T = num_train_timesteps
    return (0.5 * (1 + math.cos(math.pi * (T - float(timestep)) / T))) ** exponent


# ---- sizes and plans --------------------------------------------------------------------------
def fit_to_base(base: tuple[int, int], target: tuple[int, int], multiple: int) -> tuple[int, int]:
    """The base stage's (height, width): the target's aspect ratio at the largest size within the
    base size, each side rounded to a multiple of `multiple`."""
    scale = max(target[0] / base[0], target[1] / base[1])
    return tuple(min(b, max(multiple, round(t / scale / multiple) * multiple)) for t, b in zip(target, base))


def stage_sizes(start: tuple[int, int], target: tuple[int, int], multiple: int) -> list[tuple[int, int]]:
    """(height, width) of every stage from `start` to `target`: at most 2x per side per stage, each
    intermediate side rounded to a multiple of `multiple` (the first entry is `start` itself).

    Args:
        start: the size of the first stage (the base sample, or an input file).
        target: the final size.
        multiple: what the model needs each side to be a multiple of.

    Returns:
        The sizes, in order; just `[start]` when the target is no larger on any side.
    """
    scales = (target[0] / start[0], target[1] / start[1])
    count = max(0, math.ceil(math.log(max(scales), STAGE_SCALE) - 1e-9))
    sizes = [tuple(start)]
    for k in range(1, count):
        sizes.append(
            tuple(
                max(multiple, round(s * min(STAGE_SCALE**k, sc) / multiple) * multiple) for s, sc in zip(start, scales)
            )
        )
    if count:
        sizes.append(tuple(target))
    return sizes


def cascade_sizes(base: tuple[int, int], target: tuple[int, int], multiple: int) -> list[tuple[int, int]]:
    """The stages of a cascade sampled from scratch: the base stage (`fit_to_base`), then `stage_sizes`.

    Raises:
        ScaleCrafterError: the target is not above the base size.
    """
    if target[0] <= base[0] and target[1] <= base[1]:
        raise ScaleCrafterError(
            f"a cascade needs a size above the base size {base[1]}x{base[0]}, got "
            f"{target[1]}x{target[0]}: sample it directly (drop --cascade)"
        )
    return stage_sizes(fit_to_base(base, target, multiple), target, multiple)


def restrained_plan(base: tuple[int, int], size: tuple[int, int]) -> Plan:
    """FreeScale's restrained re-dilation for a stage of `size` on a model of `base` (pixels):
    `RESTRAINED_LAYERS` at factor size / base per side, for the first 35 reference steps, no NDCFG."""
    sh, sw = size[0] / base[0], size[1] / base[1]
    common = dict(
        name=f"restrained-{size[1]}x{size[0]}",
        base=tuple(base),
        target=tuple(size),
        units="pixels",
        source="custom",
        notes="FreeScale's restrained set",
    )
    if max(sh, sw) <= 1:
        return Plan(**common)
    factor = (max(1.0, sh), max(1.0, sw))
    return Plan(main=tuple(Rule(layer, factor, RESTRAINED_STOP) for layer in RESTRAINED_LAYERS), **common)


def within(size: tuple[int, int], base: tuple[int, int]) -> bool:
    """Whether a stage of `size` is no larger than the base size on either side (it runs as trained)."""
    return size[0] <= base[0] and size[1] <= base[1]


def engine_stages(
    stage_plan: str, *, base: tuple[int, int], family: str | None = None, preset="auto", ndcfg: bool = True
) -> StageMethod:
    """The method of each stage as `apply_scalecrafter` applies it (the Python entry point's; jobs
    build theirs from their options).

    Args:
        stage_plan: "full", "restrained" or "none".
        base: the model's base (height, width) in pixels.
        family: the preset family, where the architecture cannot tell.
        preset: the full plan's preset at the final stage ("auto" at the others).
        ndcfg: noise-damped CFG where the plan has a damped window.

    Returns:
        `method(refiner, size, final)`: a context manager yielding the stage's sidecar fields (the
        plan, and once left, `unet_calls` and `damped_passes`).
    """

    @contextlib.contextmanager
    def method(refiner, size: tuple[int, int], final: bool) -> Iterator[dict[str, Any]]:
        fields: dict[str, Any] = {"plan": None}
        if stage_plan == "none" or within(size, base):
            yield fields
            return
        chosen = (preset if final else "auto") if stage_plan == "full" else restrained_plan(base, size)
        handle = apply_scalecrafter(refiner, size[0], size[1], chosen, ndcfg=ndcfg, family=family, base=base)
        fields.update(plan=handle.plan.to_dict(), ndcfg_layout=handle.ndcfg_layout)
        try:
            yield fields
        finally:
            handle.remove()
            fields.update(unet_calls=handle.unet_calls, damped_passes=handle.damped_passes)

    return method


# ---- the refining pipeline and the skip residual -----------------------------------------------
def _parameters(pipe) -> set[str]:
    return set(inspect.signature(pipe.__call__).parameters)


def _default(pipe, name: str, fallback):
    parameter = inspect.signature(pipe.__call__).parameters.get(name)
    return fallback if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


def is_video(pipe) -> bool:
    """Whether `pipe` samples clips (its UNet has temporal layers)."""
    return type(find_unet(pipe)[0]).__name__ in VIDEO_UNETS


def refiner_of(pipe):
    """The pipeline that refines `pipe`'s samples: `pipe` itself where its call takes `strength`,
    else its img2img / video-to-video sibling (`REFINERS`) made with `from_pipe` (no weights copied).

    Raises:
        ScaleCrafterError: no sibling is known for the pipeline's class.
    """
    if "strength" in _parameters(pipe):
        return pipe
    name = REFINERS.get(type(pipe).__name__)
    if name is None:
        raise ScaleCrafterError(
            f"the cascade cannot refine with {type(pipe).__name__}: it takes no strength, and "
            f"img2img / video-to-video siblings are known for {', '.join(REFINERS)}"
        )
    import diffusers

    cls = getattr(diffusers, name, None)
    if cls is None:
        raise ScaleCrafterError(
            f"diffusers {diffusers.__version__} has no {name}: the cascade needs it for {type(pipe).__name__}"
        )
    refiner = cls.from_pipe(pipe)
    progress = getattr(pipe, "_progress_bar_config", None)
    if progress is not None:
        refiner.set_progress_bar_config(**progress)
    return refiner


class _AddNoise(Override):
    """`scheduler.add_noise` wrapped to keep the first call's input and noise (the stage's restart)."""

    __slots__ = ("noise", "original")

    def __init__(self, scheduler):
        super().__init__(scheduler, "add_noise")
        self.original = self.noise = None

    def __call__(self, *args, **kwargs):
        if self.live and self.original is None:
            self.original = args[0] if args else kwargs["original_samples"]
            self.noise = args[1] if len(args) > 1 else kwargs["noise"]
        return self.inner(*args, **kwargs)


class SkipResidual:
    """The skip residual of one stage: after step i, the latents are mixed with the stage input
    noised (with the noise the stage restarted from) to step i + 1's timestep, by `skip_weight`.
    That is FreeScale's mix before step i + 1; before the first step the latents are that noised
    input already."""

    def __init__(self, refiner, exponent: float, start_step: int, steps: int, motion_exponent: float | None = None):
        scheduler = refiner.scheduler
        self.exponent = exponent
        self.motion_exponent = motion_exponent
        self.layout = NOISE_LAYOUTS.get(type(refiner).__name__)
        self.first = start_step * getattr(scheduler, "order", 1)
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        self.noiser = type(scheduler).from_config(scheduler.config)  # no step state: add_noise at any t
        self.noiser.set_timesteps(steps)
        self.capture = _AddNoise(scheduler)
        self.weights: list[float] = []
        self.steps = 0  # denoising steps run (one callback each)

    @contextlib.contextmanager
    def installed(self) -> Iterator[SkipResidual]:
        """Capture the restart's input and noise while the block runs."""
        self.capture.install()
        try:
            yield self
        finally:
            self.capture.remove()

    def mix(self, scheduler, i: int, t, latents: torch.Tensor) -> torch.Tensor:
        """The latents after loop step `i` (at timestep `t`) with the skip residual of the next step mixed in."""
        self.steps += 1
        if self.capture.original is None:
            raise RuntimeError("the refining pipeline never called scheduler.add_noise: no stage input to mix in")
        timesteps = scheduler.timesteps
        j = self.first + i
        if j >= len(timesteps) or float(timesteps[j]) != float(t):
            raise RuntimeError(f"loop step {i} ran at t={float(t)}, not at schedule step {j}: the restart is off")
        if j + 1 >= len(timesteps):
            return latents
        t_next = timesteps[j + 1 : j + 2]
        original = self.capture.original
        noised = self._as_latents(
            self.noiser.add_noise(original, self.capture.noise, t_next.to(original.device)), latents
        )
        noised = noised.to(latents.dtype)
        c1 = skip_weight(float(t_next[0]), self.exponent, self.num_train_timesteps)
        self.weights.append(c1)
        if self.motion_exponent is None or self.motion_exponent == self.exponent or latents.ndim != 5:
            return latents * (1 - c1) + noised * c1
        # (B, C, F, h, w): the frames' mean mixed by c1, each frame's difference from it by c2
        c2 = skip_weight(float(t_next[0]), self.motion_exponent, self.num_train_timesteps)
        mean_gap = latents.mean(dim=2, keepdim=True) - noised.mean(dim=2, keepdim=True)
        return latents * (1 - c2) + noised * c2 + (c2 - c1) * mean_gap

    def _as_latents(self, noised: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        if self.layout == "bfchw":
            noised = noised.permute(0, 2, 1, 3, 4)
        elif self.layout == "(bf)chw":
            b, c, f, h, w = latents.shape
            noised = noised.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)
        if noised.shape != latents.shape:
            raise RuntimeError(f"the stage input is shaped {tuple(noised.shape)}, the latents {tuple(latents.shape)}")
        return noised

    def on_step_end(self, pipe, i: int, t, kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """diffusers' `callback_on_step_end`."""
        return {"latents": self.mix(pipe.scheduler, i, t, kwargs["latents"])}

    def legacy_callback(self, refiner) -> Callable:
        """diffusers' older `callback(step, timestep, latents)`: the latents are mixed in place."""

        def callback(i: int, t, latents: torch.Tensor) -> None:
            latents.copy_(self.mix(refiner.scheduler, i, t, latents))

        return callback


@contextlib.contextmanager
def _counting(unet) -> Iterator[list[int]]:
    """Counts the UNet calls of the block (a damped pass runs inside one and is not counted)."""
    calls = [0]

    def count(*_):
        calls[0] += 1

    hook = unet.register_forward_pre_hook(count)
    try:
        yield calls
    finally:
        hook.remove()


# ---- the stages -------------------------------------------------------------------------------
@dataclass
class CascadeResult:
    """What a cascade made: the frames and a record of every stage.

    Attributes:
        frames: (N, 3, H, W) floats in [0, 1] on the CPU: the N frames of a clip, or one image.
        stages: per stage: its size, plan, restart, steps and UNet calls (what a sidecar records).
    """

    frames: torch.Tensor
    stages: list[dict[str, Any]]

    @property
    def images(self) -> list:
        """The frames as PIL images."""
        return to_pil(self.frames)


def _frames_of(pipe, out, video: bool, size: tuple[int, int], progress: bool) -> torch.Tensor:
    if not video:
        return as_frames(out)
    return as_frames(decode_latents(pipe, out, chunk=decode_chunk_frames(*size), progress=progress)[0])


def _call_kwargs(pipe, required: dict[str, Any], optional: dict[str, Any]) -> dict[str, Any]:
    """`required` and those of `optional` the pipeline's call takes (a negative prompt it cannot take is an error)."""
    accepted = _parameters(pipe)
    if optional.get("negative_prompt") is not None and "negative_prompt" not in accepted:
        raise ScaleCrafterError(f"{type(pipe).__name__} takes no negative prompt")
    return {**required, **{k: v for k, v in optional.items() if v is not None and k in accepted}}


def sample_base(
    pipe,
    prompt: str,
    size: tuple[int, int],
    *,
    num_frames: int | None,
    steps: int,
    guidance_scale: float,
    eta: float | None = None,
    negative_prompt: str | None = None,
    generator=None,
    progress: bool = False,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The base stage: `pipe` sampled at `size` = (height, width) as it is (no plan).

    Returns:
        (frames (N, 3, H, W) in [0, 1], the stage's record).
    """
    video, start = is_video(pipe), time.perf_counter()
    required = dict(
        prompt=prompt,
        height=size[0],
        width=size[1],
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        generator=generator,
        output_type="latent" if video else "pt",
        return_dict=False,
    )
    if video:
        required["num_frames"] = num_frames
    kwargs = _call_kwargs(pipe, required, dict(eta=eta, negative_prompt=negative_prompt))
    with _counting(pipe.unet) as calls:
        out = pipe(**kwargs)[0]
    frames = _frames_of(pipe, out, video, size, progress)
    record = {
        "stage": 0,
        "size": [size[1], size[0]],
        "plan": None,
        "steps": steps,
        "unet_calls": calls[0],
        "seconds": round(time.perf_counter() - start, 3),
    }
    return frames, record


def refine(
    refiner,
    prompt: str,
    frames: torch.Tensor,
    *,
    config: CascadeConfig,
    steps: int,
    guidance_scale: float,
    method: StageMethod,
    final: bool,
    stage: int = 1,
    eta: float | None = None,
    negative_prompt: str | None = None,
    generator=None,
    progress: bool = False,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """One stage: `frames` (already at the stage's size) re-noised to the restart step and denoised
    under the stage's method, the skip residual mixed in before every step.

    Args:
        refiner: the refining pipeline (`refiner_of`).
        prompt: the prompt.
        frames: (N, 3, H, W) in [0, 1]: the stage input.
        config: restart, skip exponent and stage plan.
        steps: the schedule's steps (the stage runs those from `config.start_step(steps)` on).
        guidance_scale: the CFG scale.
        method: `method(refiner, size, final)`, the context the stage samples in.
        final: whether this is the last stage (the user's preset applies there).
        stage: which refining stage this is (1: the first above the base): picks its restart.
        eta: DDIM eta, where the pipeline takes it.
        negative_prompt: the negative prompt, where given.
        generator: the noise generator (the restart's noise is its next draw).
        progress: show the decode's progress bar.

    Returns:
        (the refined frames, the stage's record).
    """
    video, start = is_video(refiner), time.perf_counter()
    size = tuple(frames.shape[-2:])
    required = dict(
        prompt=prompt,
        strength=config.strength(steps, stage),
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        generator=generator,
        output_type="latent" if video else "pt",
        return_dict=False,
    )
    required["video" if video else "image"] = frames.unsqueeze(0) if video else frames
    start_step = config.start_step(steps, stage)
    skip = SkipResidual(refiner, config.skip_exponent, start_step, steps, config.motion_exponent)
    accepted = _parameters(refiner)
    if "callback_on_step_end" in accepted:
        required["callback_on_step_end"] = skip.on_step_end
    elif "callback" in accepted:
        required["callback"] = skip.legacy_callback(refiner)
    else:
        raise ScaleCrafterError(f"{type(refiner).__name__} takes no step callback: the skip residual cannot run")
    optional = dict(
        height=size[0],
        width=size[1],
        eta=eta,
        negative_prompt=negative_prompt,
        decode_chunk_size=decode_chunk_frames(*size) if video else None,
    )
    kwargs = _call_kwargs(refiner, required, optional)
    with skip.installed(), _counting(refiner.unet) as calls, method(refiner, size, final) as fields:
        out = refiner(**kwargs)[0]
    refined = _frames_of(refiner, out, video, size, progress)
    refined = fix_colors(refined, frames, config.color_fix)
    first = start_step * getattr(refiner.scheduler, "order", 1)
    record = {
        "size": [size[1], size[0]],
        **fields,
        "restart": config.restart_at(stage),
        "start_step": start_step,
        "start_timestep": float(refiner.scheduler.timesteps[first]),
        "steps": skip.steps,
        "unet_calls": calls[0],
        "damped_passes": fields.get("damped_passes", 0),
        "skip_exponent": config.skip_exponent,
        **({"motion_exponent": config.motion_exponent} if config.motion_exponent is not None else {}),
        "skip_weights": [round(skip.weights[0], 6), round(skip.weights[-1], 6)] if skip.weights else [],
        "color_fix": config.color_fix,
        "seconds": round(time.perf_counter() - start, 3),
    }
    return refined, record


def run_stages(
    pipe,
    prompt: str,
    sizes: list[tuple[int, int]],
    *,
    config: CascadeConfig,
    method: StageMethod,
    steps: int,
    guidance_scale: float,
    frames: torch.Tensor | None = None,
    num_frames: int | None = None,
    eta: float | None = None,
    negative_prompt: str | None = None,
    generator=None,
    refiner=None,
    progress: bool = False,
) -> CascadeResult:
    """Every stage of a cascade: the base sample at `sizes[0]` (or the given `frames`, already at
    that size), then each further size refined from the one before, upsampled bicubic.

    Args:
        pipe: the text-to-image / text-to-video pipeline (samples the base).
        prompt: the prompt.
        sizes: (height, width) of every stage (`cascade_sizes`, `stage_sizes`).
        config: restart, skip exponent and stage plan.
        method: the context each refining stage samples in (`engine_stages`, or a job's).
        steps: sampling steps of the schedule.
        guidance_scale: the CFG scale.
        frames: (N, 3, H, W) in [0, 1]: start from these instead of a base sample (`scv upscale`).
        num_frames: frames of a clip's base sample.
        eta: DDIM eta.
        negative_prompt: the negative prompt, where given.
        generator: one generator for the base and every stage, drawn in that order.
        refiner: the refining pipeline, when the caller has made it (`refiner_of(pipe)` otherwise).
        progress: show decode progress bars.

    Returns:
        The final frames and the record of every stage.
    """
    common = dict(
        steps=steps,
        guidance_scale=guidance_scale,
        eta=eta,
        negative_prompt=negative_prompt,
        generator=generator,
        progress=progress,
    )
    if frames is None:
        frames, record = sample_base(pipe, prompt, sizes[0], num_frames=num_frames, **common)
        stages = [record]
    else:
        stages = [{"stage": 0, "size": [sizes[0][1], sizes[0][0]], "from": "input"}]
    if len(sizes) > 1 and refiner is None:
        refiner = refiner_of(pipe)
    for k, size in enumerate(sizes[1:], 1):
        upsampled = resize_frames(frames, size)
        frames, record = refine(
            refiner, prompt, upsampled, config=config, method=method, final=k == len(sizes) - 1, stage=k, **common
        )
        stages.append({"stage": k, **record})
    return CascadeResult(frames, stages)


def cascade(
    pipe,
    prompt: str,
    height: int,
    width: int,
    *,
    num_frames: int | None = None,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    eta: float | None = None,
    negative_prompt: str | None = None,
    generator=None,
    restart: float | tuple[float, ...] = DEFAULT_RESTART,
    skip_exponent: float = 2.0,
    stage_plan: str = "full",
    motion_exponent: float | None = None,
    color_fix: str = "adain",
    image=None,
    preset="auto",
    ndcfg: bool = True,
    family: str | None = None,
    base: tuple[int, int] | None = None,
) -> CascadeResult:
    """Sample `prompt` at `height` x `width` by a cascade from the model's base size (or refine
    `image` up to it): the layout and motion of the base sample, the detail of the target size.

    `cascade(pipe, "a corgi", height=2048, width=2048).images[0]` on a StableDiffusionPipeline;
    AnimateDiff, ModelScope / Zeroscope and the shapes pipelines work the same (frames of a clip).

    Args:
        pipe: a StableDiffusion(XL)Pipeline, AnimateDiffPipeline, TextToVideoSDPipeline or
            ShapesPipeline (or any pipeline whose call takes `strength` and `image` / `video`,
            with `image` given).
        prompt: the prompt (a class name for the shapes models).
        height: target height in pixels (a multiple of what the model needs).
        width: target width in pixels.
        num_frames: frames of a clip (video pipelines; default the pipeline's).
        num_inference_steps: steps of the schedule (default the pipeline's).
        guidance_scale: CFG scale (default the pipeline's own text-to-image default).
        eta: DDIM eta (default the pipeline's).
        negative_prompt: the negative prompt.
        generator: one torch.Generator for the base sample and every stage.
        restart: the fraction of the schedule each stage skips, or one per stage (`CascadeConfig`).
        skip_exponent: the skip residual's exponent.
        stage_plan: "full", "restrained" or "none".
        motion_exponent: clips: the exponent of the motion's skip residual (`CascadeConfig`).
        color_fix: "adain" (each stage keeps its input's colours), "wavelet" (its coarse band) or "none".
        image: start from this image or clip instead of a base sample: a PIL image, a list of
            PIL frames, (F, H, W, 3) arrays or an (N, 3, H, W) tensor in [0, 1]; its sides must be
            multiples of what the model needs.
        preset: the full plan's preset at the target size ("auto": the reference preset or the
            derived plan).
        ndcfg: noise-damped CFG where a stage's plan has a damped window.
        family: the preset family, where the architecture cannot tell.
        base: the model's base (height, width) in pixels (default: the family's, else the UNet's).

    Returns:
        The `CascadeResult`: `frames`, `images` and `stages`.

    Raises:
        ScaleCrafterError: a bad size or setting, a pipeline with no refining sibling.
    """
    config = CascadeConfig(restart, skip_exponent, stage_plan, motion_exponent, color_fix)
    unet, _ = find_unet(pipe)
    multiple = size_multiple(check_unet(unet), pixels_per_sample(pipe))
    _check_multiple(height, width, multiple)
    model_base = base_size(unet, pipe, family, base)[0]
    frames = None
    if image is None:
        sizes = cascade_sizes(model_base, (height, width), multiple)
    else:
        frames = as_frames(image)
        if not is_video(pipe) and frames.shape[0] != 1:
            raise ScaleCrafterError(
                f"{type(pipe).__name__} draws images: pass one image, not {frames.shape[0]} frames"
            )
        _check_multiple(int(frames.shape[-2]), int(frames.shape[-1]), multiple, "the image")
        sizes = stage_sizes(tuple(frames.shape[-2:]), (height, width), multiple)
        if len(sizes) < 2:
            raise ScaleCrafterError(f"the image is {frames.shape[-1]}x{frames.shape[-2]} already: nothing to upscale")
    steps = num_inference_steps or _default(pipe, "num_inference_steps", 50)
    guidance = guidance_scale if guidance_scale is not None else _default(pipe, "guidance_scale", 7.5)
    eta = eta if eta is not None else _default(pipe, "eta", None)
    if is_video(pipe) and num_frames is None and frames is None:
        num_frames = _default(pipe, "num_frames", 16) or getattr(getattr(pipe, "config", None), "default_frames", 16)
    method = engine_stages(config.stage_plan, base=model_base, family=family, preset=preset, ndcfg=ndcfg)
    return run_stages(
        pipe,
        prompt,
        sizes,
        config=config,
        method=method,
        steps=steps,
        guidance_scale=guidance,
        frames=frames,
        num_frames=num_frames,
        eta=eta,
        negative_prompt=negative_prompt,
        generator=generator,
    )


def _check_multiple(height: int, width: int, multiple: int, what: str = "the size") -> None:
    check_size(height, width)
    if height % multiple or width % multiple:
        raise ScaleCrafterError(
            f"{what} {width}x{height} is not a multiple of {multiple} pixels per side, as this model needs"
        )
