"""Instance-level patching: a plan runs inside any diffusers UNet and comes off cleanly.

- Each eligible conv gets an instance attribute `_conv_forward` (nn.Conv2d.forward calls it with
  the weight and bias, so LoRA/PEFT-wrapped and offloaded layers work); the module's own
  attributes (dilation, padding, weight) are never rewritten. Removal deletes the attribute,
  or puts back one that was there before.
- The UNet gets torch forward hooks (not a replaced `forward`, so accelerate's CPU offload hooks
  work in either order). The pre-hook reads the timestep and the sample's size and selects the
  main plan's factors; the forward hook runs the damped pass on the unconditional half and
  returns [u_damped; u_damped + c_main - u_main], which the pipeline turns into noise-damped CFG
  (only where the CFG batch layout is known: `layouts`). The damped pass takes the units it shares
  with the main pass from it (`reuse.PrefixReuse`) and is skipped where both plans agree.
- One set of conv wrappers and hooks per UNet, shared by the handles applied to it: the most
  recent handle still in place runs; removing a handle takes off only its own plan (the one
  below runs again) and the last removal restores the UNet bit for bit. No UNet copy, no
  weight change.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..ops.dispersion import dispersion_transform
from ..ops.guidance import ndcfg_batch
from ..ops.redilate import redilated_conv2d

# re-exported: `scv demo` (scalecrafter_video.commands.demo) imports the baseline from here
from .baselines import apply_attn_sf, remove_attn_sf  # noqa: F401
from .dispersed import DispersedKernels
from .errors import ScaleCrafterError
from .layers import check_unet, find_unet, spatial_convs
from .layouts import batch_layout as layout_of
from .layouts import cfg_probe, unknown_layout_warning
from .plan import Plan
from .reuse import PrefixReuse, differing_layers, rows_of, supports_reuse
from .sizing import DEFAULT_MAX_SCALE, PlanResolver, base_size, check_size, pixels_per_sample, resolve_family

logger = logging.getLogger(__name__)

_MISSING = object()
_SCALECRAFTER: "weakref.WeakKeyDictionary[nn.Module, _Patch]" = weakref.WeakKeyDictionary()


# ---- the conv patch -------------------------------------------------------------------------
@dataclass
class _State:
    """What the convs do in the current UNet call (set by the UNet hooks)."""

    factors: dict = field(default_factory=dict)  # logical layer -> (dh, dw)
    dispersed: frozenset = frozenset()  # layers using the dispersed kernel now
    kernels: DispersedKernels | None = None  # made when dispersion is first needed


def _make_conv_forward(conv: nn.Conv2d, layer: str, state: _State, original):
    def _conv_forward(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        factor = state.factors.get(layer)
        if factor is None:
            return original(input, weight, bias)
        padding = conv.padding
        if layer in state.dispersed:  # the K x K kernel already doubles the receptive field
            weight, padding = state.kernels.kernel(weight, conv), None
            factor = (max(1.0, factor[0] / 2), max(1.0, factor[1] / 2))
        return redilated_conv2d(input, weight, bias, conv.stride, factor, conv.groups, padding)

    return _conv_forward


def _patchable(name: str, conv: nn.Conv2d) -> bool:
    kh, kw = conv.kernel_size
    ok = (
        conv.padding_mode == "zeros"
        and tuple(conv.dilation) == (1, 1)
        and tuple(conv.padding) == ((kh - 1) // 2, (kw - 1) // 2)
        and kh % 2 == 1
        and kw % 2 == 1
    )
    if not ok:
        logger.warning("leaving %s as trained: only odd 'same'-padded undilated convs are re-dilated", name)
    return ok


# ---- the UNet hooks -------------------------------------------------------------------------
def _timestep(args, kwargs) -> float:
    t = kwargs.get("timestep", args[1] if len(args) > 1 else None)
    if t is None:
        raise ScaleCrafterError("the UNet was called without a timestep; ScaleCrafter needs it to follow the plan")
    if torch.is_tensor(t):
        t = t.reshape(-1)[0].item()
    return float(t)


def _sample(args, kwargs) -> torch.Tensor:
    return args[0] if args else kwargs["sample"]


def _first_half(value, batch: int):
    if torch.is_tensor(value):
        n = value.shape[0] if value.ndim else 0
        return value[: n // 2] if n >= batch and n % batch == 0 else value
    if isinstance(value, dict):
        return {k: _first_half(v, batch) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_first_half(v, batch) for v in value)
    return value


def _sample_of(output):
    return output[0] if isinstance(output, tuple) else output.sample


def _with_sample(output, sample):
    if isinstance(output, tuple):
        return (sample,) + tuple(output[1:])
    output.sample = sample
    return output


class _Patch:
    """The conv wrappers and UNet hooks on one UNet, shared by every handle applied to it; the
    top of `stack` (the most recent handle still in place) is the one that runs."""

    def __init__(self, unet: nn.Module, layers: dict[str, list[nn.Conv2d]]):
        self.layer_names = list(layers)
        self.state = _State()
        self.stack: list[ScaleCrafterHandle] = []
        self.plan: Plan | None = None  # the plan of the UNet call in progress
        self.damped: dict | None = None  # the damped plan's factors when the call in progress runs NDCFG
        self.prefix: PrefixReuse | None = None
        self.saved: list[tuple[nn.Conv2d, object]] = []
        self.hooks = []
        try:
            if supports_reuse(unet):
                self.prefix = PrefixReuse(unet)
            for name, convs in layers.items():
                for conv in convs:
                    if not _patchable(name, conv):
                        continue
                    before = conv.__dict__.get("_conv_forward", _MISSING)
                    original = conv._conv_forward
                    conv._conv_forward = _make_conv_forward(conv, name, self.state, original)
                    self.saved.append((conv, before))
            self.hooks.append(unet.register_forward_pre_hook(self._pre, with_kwargs=True))
            self.hooks.append(unet.register_forward_hook(self._post, with_kwargs=True))
            self.hooks.append(unet.register_forward_hook(self._clear, always_call=True))
        except BaseException:
            self.uninstall()
            raise

    @property
    def patched_convs(self) -> int:
        return len(self.saved)

    def _select(self, timestep: float, variant: str) -> None:
        handle = self.stack[-1]
        self.state.factors = self.plan.factors(timestep, self.layer_names, variant)
        active = handle.dispersion and self.plan.dispersion_active(timestep)
        self.state.dispersed = frozenset(self.plan.dispersed_layers(self.layer_names)) if active else frozenset()
        if active and self.state.kernels is None:
            self.state.kernels = DispersedKernels(dispersion_transform())

    def _pre(self, module, args, kwargs):
        handle = self.stack[-1]
        handle.unet_calls += 1
        sample, t = _sample(args, kwargs), _timestep(args, kwargs)
        self.plan = handle._plan_for_call(tuple(sample.shape[-2:]))
        self._select(t, "main")
        self.damped = self._damped_factors(handle, t, sample)

    def _damped_factors(self, handle: ScaleCrafterHandle, t: float, sample: torch.Tensor) -> dict | None:
        """The damped plan's factors if this call runs NDCFG; arms the prefix cache for the main pass."""
        if not handle._runs_ndcfg(self.plan, t, sample.shape[0]):
            return None
        damped = self.plan.factors(t, self.layer_names, "damped")
        if handle.reuse and self.prefix is not None and damped != self.state.factors:
            self.prefix.arm(differing_layers(self.state.factors, damped), rows_of(sample))
        return damped

    def _post(self, module, args, kwargs, output):
        handle, damped = self.stack[-1], self.damped
        if damped is None or (handle.reuse and damped == self.state.factors):
            return None  # both plans agree at this step: the damped pass would return u_main
        batch = _sample(args, kwargs).shape[0]
        half_args = tuple(_first_half(a, batch) for a in args)
        half_kwargs = {k: _first_half(v, batch) for k, v in kwargs.items()}
        self.state.factors = damped
        reuse = self.prefix.replay() if handle.reuse and self.prefix is not None else contextlib.nullcontext()
        with reuse:
            uncond_damped = _sample_of(module.forward(*half_args, **half_kwargs))
        handle.damped_passes += 1
        return _with_sample(output, ndcfg_batch(_sample_of(output), uncond_damped))

    def _clear(self, module, args, output):
        self.state.factors, self.state.dispersed, self.damped = {}, frozenset(), None
        if self.prefix is not None:
            self.prefix.clear()
        if self.state.kernels is not None:
            self.state.kernels.clear()

    def uninstall(self) -> None:
        for hook in self.hooks:
            hook.remove()
        self.hooks.clear()
        if self.prefix is not None:
            self.prefix.remove()
        for conv, before in reversed(self.saved):
            if before is _MISSING:
                conv.__dict__.pop("_conv_forward", None)
            else:
                conv._conv_forward = before
        self.saved.clear()
        self.state.factors, self.state.dispersed = {}, frozenset()
        self.stack.clear()


class ScaleCrafterHandle:
    """What `apply_scalecrafter` returns: the plan in force, what ran, and a way to take it off.

    `unet_calls` counts the UNet calls this handle ran (while it was the one in force) and
    `damped_passes` the noise-damped passes among them (none where both plans agree at a step);
    `ndcfg_layout` is the CFG batch layout NDCFG relies on, None when NDCFG cannot run (off, or
    the layout is unknown); `reuse` whether the damped pass reuses the main pass's prefix.
    """

    def __init__(self, unet: nn.Module, plans: PlanResolver, family: str | None, ndcfg: bool, dispersion: bool,
                 ndcfg_layout: str | None, cfg: Callable[[], bool], reuse: bool = True):
        self.unet, self.plans, self.family = unet, plans, family
        self.ndcfg, self.dispersion, self.ndcfg_layout, self.cfg = ndcfg, dispersion, ndcfg_layout, cfg
        self.reuse = reuse
        self.unet_calls = 0
        self.damped_passes = 0
        self._last: Plan | None = plans.fixed_plan

    @property
    def plan(self) -> Plan | None:
        """The plan for the size applied for; without one, the plan of the latest UNet call (None before)."""
        return self._last

    def plan_for(self, height: int, width: int) -> Plan:
        """The plan this handle runs for a `height` x `width` target (pixels for a pipeline, sample units for a UNet)."""
        return self.plans.plan_for(height, width)

    @property
    def active(self) -> bool:
        patch = _SCALECRAFTER.get(self.unet)
        return patch is not None and bool(patch.stack) and patch.stack[-1] is self

    @property
    def patched_convs(self) -> int:
        patch = _SCALECRAFTER.get(self.unet)
        return patch.patched_convs if patch is not None and self in patch.stack else 0

    @property
    def prefix_reuse(self) -> PrefixReuse | None:
        """The damped pass's prefix cache (`peak_bytes`, `reused_units`); None when this handle does
        not reuse (reuse=False, NDCFG off, or a UNet class whose unit order is not known)."""
        patch = _SCALECRAFTER.get(self.unet)
        if patch is None or self not in patch.stack or not (self.reuse and self.ndcfg_layout):
            return None
        return patch.prefix

    def remove(self) -> bool:
        """Take off this handle's plan only (idempotent). Returns whether it was in place."""
        patch = _SCALECRAFTER.get(self.unet)
        if patch is None or self not in patch.stack:
            return False
        patch.stack.remove(self)
        if not patch.stack:
            del _SCALECRAFTER[self.unet]
            patch.uninstall()
        return True

    def _plan_for_call(self, sample_hw: tuple[int, int]) -> Plan:
        self._last = self.plans.plan_for_sample(sample_hw)
        return self._last

    def _runs_ndcfg(self, plan: Plan, timestep: float, batch: int) -> bool:
        return self.ndcfg_layout is not None and plan.ndcfg_active(timestep) and batch % 2 == 0 and self.cfg()


def apply_scalecrafter(
    pipe_or_unet,
    height: int | None = None,
    width: int | None = None,
    preset: str | dict | Plan = "auto",
    *,
    ndcfg: bool = True,
    dispersion: bool = False,
    progressive: bool | None = None,
    family: str | None = None,
    base: int | tuple[int, int] | None = None,
    cfg: bool | Callable[[], bool] | None = None,
    batch_layout: str | None = None,
    max_scale: float = DEFAULT_MAX_SCALE,
    reuse: bool = True,
) -> ScaleCrafterHandle:
    """Patch a diffusers pipeline (sizes in pixels) or a bare UNet (sizes in sample units).

    height, width: the size you will sample. Omitted, the plan follows each UNet call's own
    sample size (resolved once per size; at or below the base size the UNet runs as trained).
    Given, a call at another size is an error. A per-side scale above `max_scale` is refused.
    preset: "auto" (the family's reference preset for this exact size, else the derived plan),
    a preset name, a .toml path, a plan dict, or a Plan. ndcfg: noise-damped CFG where the plan
    has a damped window and the CFG batch layout is known (stock pipelines, a pipeline class
    declaring `scalecrafter_batch_layout`, or `batch_layout="uncond,cond"`; elsewhere a warning
    and re-dilation alone). dispersion: dispersed kernels on the plan's dispersion layers (opt-in,
    as in the reference). progressive: None keeps the plan's own decay; False holds every factor
    for its whole window, True decays every rule. reuse: the damped pass takes what it shares with
    the main pass from it, and is skipped where both plans agree (the same prediction; False runs
    the whole damped pass, for tests and benchmarks).
    family / base / cfg are for tinkering: the preset family (required where the architecture
    cannot tell, e.g. ModelScope vs Zeroscope), the base size, and whether the pipeline is doing
    CFG (default: the pipeline's own `do_classifier_free_guidance`).
    Applying again on a patched model puts the new plan on top; removing a handle (or leaving
    its `with scalecrafter(...)` block) brings back the one below; `remove_scalecrafter` takes
    off every plan.
    """
    unet, pipe = find_unet(pipe_or_unet)
    levels = check_unet(unet)
    if (height is None) != (width is None):
        raise ScaleCrafterError("pass both height and width, or neither (the plan then follows each UNet call's size)")
    target = None
    if height is not None:
        check_size(height, width)
        target = (height, width)
    family = resolve_family(unet, pipe, family)
    base_hw, units = base_size(unet, pipe, family, base)
    layers = spatial_convs(unet)
    plans = PlanResolver(preset, base_hw, units, levels, list(layers), family=family, progressive=progressive,
                         max_scale=max_scale, pixels_per_sample=pixels_per_sample(pipe), target=target)
    layout = layout_of(pipe, batch_layout) if ndcfg else None
    fixed = plans.fixed_plan
    if ndcfg and layout is None and (fixed is None or fixed.ndcfg_stop > 0):
        logger.warning(unknown_layout_warning(pipe))
    handle = ScaleCrafterHandle(unet, plans, family, ndcfg, dispersion, layout,
                                cfg_probe(pipe, cfg) if layout else (lambda: False), reuse)
    patch = _SCALECRAFTER.get(unet)
    if patch is None:
        patch = _SCALECRAFTER[unet] = _Patch(unet, layers)
    patch.stack.append(handle)
    logger.info("ScaleCrafter plan '%s' on %d convs", fixed.name if fixed else "per call size", patch.patched_convs)
    return handle


def remove_scalecrafter(pipe_or_unet) -> bool:
    """Take every plan off (idempotent): the UNet is bit-identical to before. Returns whether one was applied."""
    unet, _ = find_unet(pipe_or_unet)
    patch = _SCALECRAFTER.pop(unet, None)
    if patch is None:
        return False
    patch.uninstall()
    return True


@contextlib.contextmanager
def scalecrafter(pipe_or_unet, height: int | None = None, width: int | None = None, preset="auto", **kwargs):
    """`with scalecrafter(pipe, height=2048, width=2048): pipe(...)`: this plan comes off in finally
    (Ctrl-C too), and an outer one runs again."""
    handle = apply_scalecrafter(pipe_or_unet, height, width, preset, **kwargs)
    try:
        yield handle
    finally:
        handle.remove()
