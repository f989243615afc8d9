"""Whole-run FLOPs on the meta device: `torch.utils.flop_counter` over the plan's real schedule.

No weights and no GPU: the family's real UNet is built on the meta device, patched as a user's
pipeline would be, and called once per sampler timestep on a CFG batch. The count is exact and
deterministic (convolutions, matrix products and attention; elementwise work is not counted).

One UNet call is counted per distinct *step configuration* and multiplied by the number of steps
sharing it. A configuration is what changes a call's work: the layers with fractional factors
(resized), the dispersed layers and their factors, and for NDCFG whether the damped pass runs
and from which unit on (prefix reuse). Integer re-dilation costs what the plain conv costs (same
kernel, same output size; `dilation_costs_nothing` checks it on the counter), so steps that
differ only in integer factors share a count. `group=False` counts every step on its own.

A cascade (`cascade_flops`) is counted stage by stage, as `jobs.cascade.run_stages` samples it:
the base stage direct at its size over the whole schedule, then each later stage at its own size
over the tail of the schedule its img2img / video-to-video call runs (diffusers' `get_timesteps`
at `CascadeConfig.strength`: from step int(restart * steps) on), under its stage plan (the
engine's plan for its size with NDCFG, FreeScale's restrained plan, or none). The skip residual,
the resizes and the VAE are not UNet work and are not counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from ...engine.families import size_multiple
from ...engine.layers import check_unet, spatial_convs
from ...engine.patch import scalecrafter
from ...engine.plan import Plan
from ...engine.reuse import differing_layers, reuse_units, shared_prefix
from ...engine.sizing import base_size
from ...jobs.cascade import CascadeConfig, cascade_sizes, restrained_plan, within
from .models import UNetHolder, unet_inputs

logger = logging.getLogger(__name__)


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# The counter knows the fused attention kernels of CUDA but not the CPU's: count it like them.
_EXTRA_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of `fn()` on any device (meta included)."""
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS) as counter:
        fn()
    return counter.get_total_flops()


def dilation_costs_nothing() -> bool:
    """Whether the counter gives a dilated 'same' conv the FLOPs of the plain one."""
    x, w = torch.empty(2, 8, 32, 32, device="meta"), torch.empty(8, 8, 3, 3, device="meta")
    plain = count_flops(lambda: F.conv2d(x, w, padding=1))
    return all(count_flops(lambda d=d: F.conv2d(x, w, padding=d, dilation=d)) == plain for d in (2, 3, 4))


def _signature(factors: dict, dispersed: set[str]) -> frozenset:
    """The part of one pass's factors that changes its FLOPs."""
    out = set()
    for layer, factor in factors.items():
        if layer in dispersed:
            out.add((layer, factor, "dispersed"))
        elif not all(float(f).is_integer() for f in factor):
            out.add((layer, factor))
    return frozenset(out)


def step_signature(
    plan: Plan, layers: list[str], t: float, *, ndcfg: bool, dispersion: bool, units: list[str] | None
) -> tuple:
    """What determines the work of the UNet call at timestep `t`. `units`: the UNet's reuse units
    when the damped pass reuses its prefix (None: whole damped pass, never skipped)."""
    main = plan.factors(t, layers, "main")
    dispersed = plan.dispersed_layers(layers) if dispersion and plan.dispersion_active(t) else set()
    damped = None
    if ndcfg and plan.ndcfg_active(t):
        factors = plan.factors(t, layers, "damped")
        if units is None:
            damped = ((), _signature(factors, dispersed))
        elif factors != main:
            damped = (tuple(shared_prefix(units, differing_layers(main, factors))), _signature(factors, dispersed))
    return _signature(main, dispersed), damped


@dataclass(frozen=True)
class RunCount:
    flops: int  # every UNet call of the run
    plan: str | None  # None: direct inference
    cache_bytes: int = 0  # most bytes the prefix-reuse cache held (in the inputs' dtype)


def whole_run_flops(
    unet: torch.nn.Module,
    inputs: dict,
    timesteps: Sequence[float],
    apply: dict | None,
    vae_scale_factor: int = 8,
    group: bool = True,
) -> RunCount:
    """The UNet work of one sampling run: `unet` (on the meta device) called with the CFG batch
    `inputs` at every timestep, patched with `apply_scalecrafter(**apply)` on a pipeline stand-in
    (sizes in pixels), or unpatched when `apply` is None."""

    def call(t):
        return count_flops(lambda: unet(**inputs, timestep=t))

    if apply is None:
        return RunCount(call(timesteps[0]) * len(timesteps) if group else sum(call(t) for t in timesteps), None)
    counts: dict = {}
    total = 0
    with scalecrafter(UNetHolder(unet, vae_scale_factor), **apply) as handle:
        layers = list(spatial_convs(unet))
        units = [name for name, _ in reuse_units(unet)] if handle.prefix_reuse is not None else None
        for i, t in enumerate(timesteps):
            key = (
                step_signature(handle.plan, layers, t, ndcfg=handle.ndcfg, dispersion=handle.dispersion, units=units)
                if group
                else i
            )
            if key not in counts:
                counts[key] = call(t)
            total += counts[key]
        logger.debug(
            "%s: %d distinct step configurations over %d steps", handle.plan.name, len(counts), len(timesteps)
        )
        reuse = handle.prefix_reuse
        return RunCount(total, handle.plan.name, reuse.peak_bytes if reuse is not None else 0)


@dataclass(frozen=True)
class StageCount:
    """The UNet work of one cascade stage."""

    size: tuple[int, int]  # (height, width) in pixels
    start_step: int  # the schedule step it starts at (0: the base stage)
    steps: int  # UNet calls: the timesteps it runs
    plan: str | None  # None: direct
    flops: int
    cache_bytes: int = 0


def stage_timesteps(timesteps: Sequence[float], steps: int, config: CascadeConfig, stage: int) -> list:
    """The timesteps stage `stage` runs: the base stage the whole schedule; a later stage what its
    img2img / video-to-video call keeps at `config.strength(steps, stage)` (diffusers' `get_timesteps`:
    init = min(int(steps * strength), steps), the timesteps from step steps - init on, i.e. from
    `config.start_step(steps, stage)`; every scheduler `scv bench` offers has order 1)."""
    if stage == 0:
        return list(timesteps)
    init = min(int(steps * config.strength(steps, stage)), steps)
    return list(timesteps[max(steps - init, 0) :])


def stage_apply(
    stage_plan: str, base: tuple[int, int], size: tuple[int, int], family: str | None, preset="auto"
) -> dict | None:
    """The `apply_scalecrafter` options of a refining stage at `size` (as `jobs.cascade.engine_stages`
    and the job runner apply them), or None where it runs direct (stage plan none, or within the base)."""
    if stage_plan == "none" or within(size, base):
        return None
    chosen = preset if stage_plan == "full" else restrained_plan(base, size)
    return dict(height=size[0], width=size[1], preset=chosen, ndcfg=True, family=family, base=tuple(base))


def cascade_flops(
    unet: torch.nn.Module,
    target: tuple[int, int],
    frames: int,
    timesteps: Sequence[float],
    steps: int,
    config: CascadeConfig,
    family: str | None,
    dtype: torch.dtype = torch.float16,
    vae_scale_factor: int = 8,
    tokens: int = 77,
) -> list[StageCount]:
    """The UNet work of every stage of a cascade from the model's base size to `target` = (height,
    width) in pixels (`jobs.cascade.cascade_sizes`), `unet` on the meta device, a CFG batch of one
    prompt (`tokens` of text context) at each stage's size; the run's FLOPs are the stages' sum.

    Raises:
        ScaleCrafterError: the target is not above the base size.
    """
    holder = UNetHolder(unet, vae_scale_factor)
    base = base_size(unet, holder, family, None)[0]
    sizes = cascade_sizes(base, tuple(target), size_multiple(check_unet(unet), vae_scale_factor))
    counts = []
    for k, size in enumerate(sizes):
        run_at = stage_timesteps(timesteps, steps, config, k)
        apply = None if k == 0 else stage_apply(config.stage_plan, base, size, family)
        inputs = unet_inputs(unet, size[0], size[1], frames, "meta", dtype, vae_scale_factor, tokens=tokens)
        run = whole_run_flops(unet, inputs, run_at, apply, vae_scale_factor)
        start = 0 if k == 0 else len(timesteps) - len(run_at)
        counts.append(StageCount(tuple(size), start, len(run_at), run.plan, run.flops, run.cache_bytes))
    return counts
