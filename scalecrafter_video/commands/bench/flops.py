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
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from ...engine.layers import spatial_convs
from ...engine.patch import scalecrafter
from ...engine.plan import Plan
from ...engine.reuse import differing_layers, reuse_units, shared_prefix
from .models import UNetHolder

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
