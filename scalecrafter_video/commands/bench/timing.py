"""Timing and memory of ScaleCrafter variants on random-weight pipelines of the real shapes.

- `time_step`: one UNet call on a CFG batch at the first sampler timestep (every window of the
  plan open), after warm-up calls; the median of repeats, timed with CUDA events on a GPU and
  perf_counter on a CPU; peak GPU memory; the FLOPs of that call (counted during the first
  warm-up call) and the achieved TFLOP/s; the bytes the prefix-reuse cache held.
- `time_whole_run`: the front end's sampling call end to end (text encoding, every UNet step,
  the VAE decode, tiled where `scv generate` tiles, the image or frames on the host), the decode
  part on its own, and the peak memory.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ...engine.patch import scalecrafter
from ...jobs.options import GenerateOptions
from ...jobs.registry import BUILTIN_MODELS
from ...jobs.sampling import wants_vae_tiling
from ...jobs.video import decode_chunk_frames, decode_latents, sample_video
from . import VARIANTS
from .flops import count_flops
from .models import BenchModel, unet_inputs

GIB = 2**30


def _sig(value: float) -> float:
    """Three significant digits (tiny CPU runs are far below 1 TFLOP/s and 1 GiB)."""
    return float(f"{value:.3g}")


@dataclass(frozen=True)
class Case:
    """One model at one size."""

    model: BenchModel
    width: int
    height: int
    frames: int = 0  # video frames (0 for images)

    @property
    def res(self) -> str:
        return f"{self.width}x{self.height}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of `fn` takes (CUDA events on a GPU)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


def reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peaks(device: torch.device) -> dict:
    """Peak GPU memory since `reset_peak`: allocated by tensors, and reserved by the caching allocator
    (what the card must hold, besides the CUDA context)."""
    if device.type != "cuda":
        return {"peak_gib": None, "reserved_gib": None}
    return {
        "peak_gib": round(torch.cuda.max_memory_allocated(device) / GIB, 2),
        "reserved_gib": round(torch.cuda.max_memory_reserved(device) / GIB, 2),
    }


def apply_kwargs(case: Case, variant: str) -> dict | None:
    """apply_scalecrafter arguments of a variant on this case's pipeline (None: direct)."""
    options = VARIANTS[variant]
    if options is None:
        return None
    return dict(height=case.height, width=case.width, family=case.model.family, **options)


def _patched(pipe, apply: dict | None, **extra):
    return scalecrafter(pipe, **apply, **extra) if apply else contextlib.nullcontext()


def time_step(
    pipe,
    case: Case,
    variant: str,
    *,
    warmup: int = 1,
    repeats: int = 3,
    channels_last: bool = False,
    flops: int | None = None,
    t: int = 981,
) -> dict:
    """Median seconds of one UNet call on the CFG batch at timestep `t` (default the first DDIM-50
    step: every window of the plan open). The first warm-up call counts its FLOPs unless `flops`
    gives them (a compiled UNet is not run under the counter)."""
    unet = pipe.unet
    device, dtype = unet.device, unet.dtype
    scale = pipe.vae_scale_factor
    inputs = unet_inputs(unet, case.height, case.width, case.frames, device, dtype, scale)
    if channels_last and inputs["sample"].ndim == 4:
        inputs["sample"] = inputs["sample"].contiguous(memory_format=torch.channels_last)
    timestep = torch.tensor(t, device=device)
    apply = apply_kwargs(case, variant)
    reset_peak(device)
    with torch.no_grad(), _patched(pipe, apply, cfg=True) as handle:

        def call():
            unet(**inputs, timestep=timestep)

        if flops is None:
            flops = count_flops(call)
            warmup -= 1
        for _ in range(warmup):
            call()
        sync(device)
        seconds = statistics.median(timed(call, device) for _ in range(repeats))
        reuse = getattr(handle, "prefix_reuse", None)
        cache = reuse.peak_bytes if reuse is not None else 0
        plan = handle.plan.name if handle is not None else None
    return {
        "kind": "step",
        "variant": variant,
        "plan": plan,
        "timestep": t,
        "seconds": round(seconds, 4),
        "flops": flops,
        "tflops_per_s": _sig(flops / seconds / 1e12),
        **peaks(device),
        "cache_gib": _sig(cache / GIB),
    }


class _DecodeClock:
    """First start to last end of the VAE decoder's calls (one per tile or frame chunk)."""

    def __init__(self, decoder: torch.nn.Module, device: torch.device):
        self.device, self.first, self.last = device, None, None
        self.handles = [decoder.register_forward_pre_hook(self._start), decoder.register_forward_hook(self._end)]

    def _start(self, module, args):
        if self.first is None:
            sync(self.device)
            self.first = time.perf_counter()

    def _end(self, module, args, output):
        sync(self.device)
        self.last = time.perf_counter()

    @property
    def seconds(self) -> float | None:
        return None if self.first is None else self.last - self.first

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _sample(pipe, case: Case, steps: int):
    """The front end's sampling call (`scv generate` / `scv generate --video`), seed 0."""
    prompt = "a benchmark"
    if case.model.video:
        opts = GenerateOptions(
            prompts=[prompt],
            height=case.height,
            width=case.width,
            frames=case.frames,
            steps=steps,
            video=True,
            progress=False,
        )
        latents = sample_video(pipe, opts, prompt, 0, case.model.guidance)
        return decode_latents(pipe, latents, chunk=decode_chunk_frames(case.height, case.width))
    return pipe(
        prompt=prompt,
        height=case.height,
        width=case.width,
        num_inference_steps=steps,
        guidance_scale=case.model.guidance,
        eta=1.0,
        generator=torch.Generator("cpu").manual_seed(0),
        output_type="pil",
    ).images


def vae_tiling(case: Case) -> bool:
    """Whether the front end tiles this decode (`--vae-tiling auto`)."""
    family = case.model.family or BUILTIN_MODELS[case.model.name].family
    return wants_vae_tiling("auto", family, case.height, case.width)


def time_whole_run(pipe, case: Case, variant: str, steps: int) -> dict:
    """One whole sampling run, end to end, as `scv generate` runs it."""
    device = pipe.unet.device
    tiling = vae_tiling(case)
    if tiling:
        pipe.vae.enable_tiling()
    else:
        pipe.vae.disable_tiling()
    apply = apply_kwargs(case, variant)
    if apply and case.model.video:  # as the video front end: TextToVideoSDPipeline does not say it runs CFG
        apply["cfg"] = case.model.guidance > 1
    reset_peak(device)
    clock = _DecodeClock(pipe.vae.decoder, device)
    try:
        with torch.no_grad(), _patched(pipe, apply) as handle:
            sync(device)
            begin = time.perf_counter()
            _sample(pipe, case, steps)
            sync(device)
            seconds = time.perf_counter() - begin
            reuse = getattr(handle, "prefix_reuse", None)
            cache = reuse.peak_bytes if reuse is not None else 0
            plan = handle.plan.name if handle is not None else None
    finally:
        clock.remove()
    return {
        "kind": "whole",
        "variant": variant,
        "plan": plan,
        "seconds": round(seconds, 2),
        "decode_s": round(clock.seconds, 2) if clock.seconds is not None else None,
        "vae_tiling": tiling,
        "steps": steps,
        "source": "measured",
        **peaks(device),
        "cache_gib": _sig(cache / GIB),
    }


def computed_whole_run(step_row: dict, decode_s: float | None, steps: int) -> dict:
    """A whole run of a variant whose every step costs what `step_row` measured, plus a measured decode."""
    seconds = step_row["seconds"] * steps + (decode_s or 0.0)
    return {
        "kind": "whole",
        "variant": step_row["variant"],
        "plan": step_row["plan"],
        "seconds": round(seconds, 2),
        "decode_s": decode_s,
        "steps": steps,
        "source": "computed from the step time",
        "peak_gib": None,
        "reserved_gib": None,
        "cache_gib": step_row["cache_gib"],
    }
