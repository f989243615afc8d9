"""The benchmark runs behind `scv bench`: FLOP rows (meta device) and timing rows (a device)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from ...engine.errors import ScaleCrafterError
from ...engine.sizing import base_size
from ...jobs.cascade import CascadeConfig, within
from ...jobs.options import DEFAULT_RESTART
from ...jobs.sampling import sampler_timesteps
from . import CASCADES, VARIANTS
from .flops import StageCount, cascade_flops, whole_run_flops
from .models import UNetHolder, bench_model, build_pipeline, meta_copy, unet_inputs
from .report import environment
from .timing import Case, computed_whole_run, reset_peak, time_step, time_whole_run

# The sizes `scv bench --flops` counts when none is given: the reference 2x, 2.5x and 4x presets,
# the video sizes of the targets.
FLOP_SIZES: dict[str, tuple[str, ...]] = {
    "sd15": ("1024x1024", "1280x1280", "2048x2048"),
    "sd21": ("1024x1024", "2048x2048"),
    "sdxl": ("2048x2048", "4096x4096"),
    "animatediff": ("1024x1024", "2048x2048"),
    "modelscope": ("512x512", "1024x1024"),
}
# `scv bench` timing sizes when none is given: the memory and time targets.
TIMING_SIZES: dict[str, str] = {
    "sd15": "2048x2048",
    "sd21": "2048x2048",
    "sdxl": "4096x4096",
    "animatediff": "1024x1024",
    "modelscope": "1024x1024",
}


def meta_unet_for(name: str) -> torch.nn.Module:
    model = bench_model(name)
    if model.tiny:
        return meta_copy(build_pipeline(model, torch.device("cpu"), torch.float32).unet)
    from ...engine.families import meta_unet

    return meta_unet(name)


def _stages_cell(stages: list[StageCount]) -> str:
    """A cascade row's plan: every stage's size, plan and steps."""
    return " > ".join(f"{s.size[1]}x{s.size[0]} {s.plan or 'direct'} ({s.steps} steps)" for s in stages)


def _check_cascades(unets: dict[str, torch.nn.Module], sizes: dict[str, list[tuple[int, int]]]) -> None:
    """Every size is above its model's base size (a cascade starts there), before anything is counted."""
    for family, unet in unets.items():
        base = base_size(unet, UNetHolder(unet), bench_model(family).family, None)[0]
        for width, height in sizes[family]:
            if within((height, width), base):
                raise ScaleCrafterError(
                    f"the cascade variants need sizes above the base size: {family} is {base[1]}x{base[0]}, "
                    f"got {width}x{height} (leave out that size or the cascade variants)"
                )


def flop_rows(
    families: Sequence[str],
    sizes: dict[str, list[tuple[int, int]]],
    frames: int,
    steps: int,
    scheduler: str,
    variants: Sequence[str],
    progress: bool = False,
    restart: float | tuple[float, ...] = DEFAULT_RESTART,
) -> list[dict]:
    """Whole-run FLOPs per family, size and variant, with the ratio to direct inference at that
    size. Cascade variants (`CASCADES`) sum their stages (`flops.cascade_flops`), each row listing
    them; `restart` is their `CascadeConfig.restart`."""
    timesteps = sampler_timesteps(steps, scheduler)
    jobs = [(f, size) for f in families for size in sizes[f]]
    unets = {f: meta_unet_for(f).to(torch.float16) for f in families}  # float16: the reuse cache's bytes as on a GPU
    if any(v in CASCADES for v in variants):
        _check_cascades(unets, sizes)
    rows = []
    bar = tqdm(total=len(jobs) * len(variants), desc="flops", unit="run", disable=not progress, leave=False)
    for family in families:
        unet = unets[family]
        model = bench_model(family)
        n_frames = frames if model.video else 0
        for width, height in sizes[family]:
            inputs = unet_inputs(unet, height, width, n_frames, "meta", torch.float16)
            direct = whole_run_flops(unet, inputs, timesteps, None)
            for variant in variants:
                extra: dict = {}
                if variant in CASCADES:
                    config = CascadeConfig(restart=restart, stage_plan=CASCADES[variant])
                    stages = cascade_flops(unet, (height, width), n_frames, timesteps, steps, config, model.family)
                    plan, flops = _stages_cell(stages), sum(s.flops for s in stages)
                    cache = max(s.cache_bytes for s in stages)
                    extra = {
                        "restart": restart,
                        "stages": [
                            {
                                "res": f"{s.size[1]}x{s.size[0]}",
                                "plan": s.plan,
                                "start_step": s.start_step,
                                "steps": s.steps,
                                "flops": s.flops,
                            }
                            for s in stages
                        ],
                    }
                else:
                    options = VARIANTS[variant]
                    apply = (
                        None if options is None else dict(height=height, width=width, family=model.family, **options)
                    )
                    run = direct if apply is None else whole_run_flops(unet, inputs, timesteps, apply)
                    plan, flops, cache = run.plan, run.flops, run.cache_bytes
                rows.append(
                    {
                        "family": family,
                        "res": f"{width}x{height}",
                        "frames": n_frames,
                        "variant": variant,
                        "plan": plan,
                        "flops": flops,
                        "ratio": round(flops / direct.flops, 4),
                        "cache_gib": round(cache / 2**30, 3),
                        "steps": steps,
                        "scheduler": scheduler,
                        **extra,
                    }
                )
                bar.update()
    bar.close()
    return rows


def timing_rows(
    cases: Sequence[Case],
    variants: Sequence[str],
    whole: Sequence[str],
    *,
    steps: int,
    device: torch.device,
    dtype: torch.dtype,
    warmup: int = 1,
    repeats: int = 3,
    channels_last: bool = False,
    progress: bool = False,
    on_row: Callable[[list[dict]], None] | None = None,
) -> list[dict]:
    """Step times of `variants` and whole runs of `whole` for every case, one pipeline per model.

    Where direct inference is timed per step but not run whole, its whole run is computed from
    its step time and the measured VAE decode of another whole run of the same case."""
    env = environment(device)
    rows: list[dict] = []

    def add(case: Case, row: dict) -> dict:
        row = {
            "model": case.model.name,
            "family": case.model.family,
            "res": case.res,
            "frames": case.frames,
            **row,
            "device": str(device),
            "dtype": str(dtype).removeprefix("torch."),
            "channels_last": channels_last,
            **env,
        }
        rows.append(row)
        if on_row is not None:
            on_row(rows)
        return row

    bar = tqdm(
        total=len(cases) * (len(variants) + len(whole)), desc="bench", unit="run", disable=not progress, leave=False
    )
    for _, group in itertools.groupby(cases, key=lambda c: c.model.name):
        group = list(group)
        reset_peak(device)
        pipe = build_pipeline(group[0].model, device, dtype)
        if channels_last:
            pipe.unet.to(memory_format=torch.channels_last)
        for case in group:
            step_rows = {}
            for variant in variants:
                step_rows[variant] = add(
                    case, time_step(pipe, case, variant, warmup=warmup, repeats=repeats, channels_last=channels_last)
                )
                bar.update()
            decode_s = None
            for variant in whole:
                row = add(case, time_whole_run(pipe, case, variant, steps))
                decode_s = decode_s if decode_s is not None else row["decode_s"]
                bar.update()
            if "direct" in step_rows and "direct" not in whole and decode_s is not None:
                add(case, computed_whole_run(step_rows["direct"], decode_s, steps))
        del pipe
    bar.close()
    reset_peak(device)
    return rows
