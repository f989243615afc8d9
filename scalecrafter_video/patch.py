"""Instance-level patching: a plan runs inside any diffusers UNet and comes off cleanly.

- Each eligible conv gets an instance attribute `_conv_forward` (nn.Conv2d.forward calls it with
  the weight and bias, so LoRA/PEFT-wrapped and offloaded layers work); the module's own
  attributes (dilation, padding, weight) are never rewritten. Removal deletes the attribute,
  or puts back one that was there before.
- The UNet gets torch forward hooks (not a replaced `forward`, so accelerate's CPU offload hooks
  work in either order). The pre-hook reads the timestep and selects the main plan's factors;
  the forward hook runs the damped pass on the unconditional half and returns
  [u_damped; u_damped + c_main - u_main], which stock pipelines turn into noise-damped CFG.
  The damped pass reuses the units it shares with the main pass (`reuse.PrefixReuse`) and is
  skipped where both plans agree at a step.
- No UNet copy, no weight change: `remove_scalecrafter` leaves the UNet bit-identical.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .errors import ScaleCrafterError
from .families import detect_family, get_family
from .layers import spatial_convs
from .ops.attn_sf import attn_sf_scale
from .dispersed import DispersedKernels
from .ops.dispersion import dispersion_transform
from .ops.guidance import ndcfg_batch
from .ops.redilate import redilated_conv2d
from .plan import Plan
from .presets import resolve_plan
from .reuse import PrefixReuse, differing_layers, rows_of, supports_reuse

logger = logging.getLogger(__name__)

_MISSING = object()
_SCALECRAFTER: "weakref.WeakKeyDictionary[nn.Module, _Patch]" = weakref.WeakKeyDictionary()
_ATTN_SF: "weakref.WeakKeyDictionary[nn.Module, list]" = weakref.WeakKeyDictionary()
_TEMPORAL_PARTS = {"motion_modules", "temp_attentions", "transformer_in", "temporal_transformer"}


# ---- finding the UNet and its sizes ---------------------------------------------------------
def _split(pipe_or_unet) -> tuple[nn.Module, object | None]:
    unet = getattr(pipe_or_unet, "unet", None)
    if isinstance(unet, nn.Module):
        return unet, pipe_or_unet
    if isinstance(pipe_or_unet, nn.Module):
        return pipe_or_unet, None
    raise ScaleCrafterError(
        f"cannot patch a {type(pipe_or_unet).__name__}: pass a diffusers pipeline with a .unet or the UNet itself"
    )


def _check_unet(unet: nn.Module) -> int:
    blocks = getattr(unet, "down_blocks", None)
    if not isinstance(blocks, nn.ModuleList) or not hasattr(unet, "up_blocks"):
        raise ScaleCrafterError(
            f"unsupported UNet class {type(unet).__name__}: ScaleCrafter patches UNets with down_blocks/"
            "mid_block/up_blocks (UNet2DConditionModel, UNetMotionModel, UNet3DConditionModel)"
        )
    return len(blocks)


def _pair(value) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _base_size(unet: nn.Module, pipe, family: str | None, base) -> tuple[tuple[int, int], str]:
    """(base height, base width) in the units the caller's sizes are in, and those units."""
    if pipe is not None:
        if base is not None:
            return _pair(base), "pixels"
        if family is not None:
            fam = get_family(family)
            return (fam.base_height, fam.base_width), "pixels"
        scale = int(getattr(pipe, "vae_scale_factor", 8) or 1)
        sample = getattr(unet.config, "sample_size", None)
        if sample is None:
            raise ScaleCrafterError("the UNet config has no sample_size: pass base=(height, width) in pixels or family=")
        h, w = _pair(sample)
        return (h * scale, w * scale), "pixels"
    if base is not None:
        return _pair(base), "samples"
    sample = getattr(getattr(unet, "config", None), "sample_size", None)
    if sample is None:
        raise ScaleCrafterError("the UNet config has no sample_size: pass base=(height, width) in the UNet's sample units")
    return _pair(sample), "samples"


def _check_size(height, width) -> None:
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ScaleCrafterError(f"{name} must be a positive integer, got {value!r}")


# ---- the conv patch -------------------------------------------------------------------------
@dataclass
class _State:
    """What the convs do in the current UNet call (set by the UNet hooks)."""

    factors: dict = field(default_factory=dict)  # logical layer -> (dh, dw)
    dispersed: frozenset = frozenset()  # layers using the dispersed kernel now


def _make_conv_forward(conv: nn.Conv2d, layer: str, state: _State, original, kernels: DispersedKernels | None):
    slot = kernels.slot() if kernels is not None else None  # this conv's dispersed kernel

    def _conv_forward(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        factor = state.factors.get(layer)
        if factor is None:
            return original(input, weight, bias)
        folded = input.ndim == 5
        if folded:  # inflated conv fed (b, c, f, h, w): fold frames into the batch
            b, c, f, h, w = input.shape
            input = input.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        padding = conv.padding
        if layer in state.dispersed:  # the K x K kernel already doubles the receptive field
            weight, padding = kernels.kernel(weight, slot), None
            factor = (max(1.0, factor[0] / 2), max(1.0, factor[1] / 2))
        out = redilated_conv2d(input, weight, bias, conv.stride, factor, conv.groups, padding)
        if folded:
            out = out.reshape(b, f, *out.shape[1:]).permute(0, 2, 1, 3, 4)
        return out

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
    """One applied plan on one UNet; `remove()` undoes everything it did."""

    def __init__(self, unet: nn.Module, plan: Plan, ndcfg: bool, dispersion: bool, cfg: Callable[[], bool],
                 reuse: bool = True):
        self.unet, self.plan, self.ndcfg, self.dispersion, self.cfg = unet, plan, ndcfg, dispersion, cfg
        self.state = _State()
        self.damped: dict | None = None  # the damped plan's factors when this call runs NDCFG
        self.skip_equal = reuse
        self.prefix: PrefixReuse | None = None
        self.layers = spatial_convs(unet)
        self.layer_names = list(self.layers)
        plan.validate(self.layer_names)
        self.dispersed = plan.dispersed_layers(self.layer_names) if dispersion else set()
        self.kernels = DispersedKernels(dispersion_transform()) if self.dispersed else None
        self.saved: list[tuple[nn.Conv2d, object]] = []
        self.handles = []
        try:
            if reuse and ndcfg and plan.ndcfg_stop > 0 and supports_reuse(unet):
                self.prefix = PrefixReuse(unet)
            for name, convs in self.layers.items():
                for conv in convs:
                    if not _patchable(name, conv):
                        continue
                    before = conv.__dict__.get("_conv_forward", _MISSING)
                    original = conv._conv_forward
                    conv._conv_forward = _make_conv_forward(conv, name, self.state, original, self.kernels)
                    self.saved.append((conv, before))
            self.handles.append(unet.register_forward_pre_hook(self._pre, with_kwargs=True))
            self.handles.append(unet.register_forward_hook(self._post, with_kwargs=True))
            self.handles.append(unet.register_forward_hook(self._clear, always_call=True))
        except BaseException:
            self.remove()
            raise

    @property
    def patched_convs(self) -> int:
        return len(self.saved)

    def _select(self, timestep: float, variant: str) -> None:
        self.state.factors = self.plan.factors(timestep, self.layer_names, variant)
        active = self.dispersion and self.plan.dispersion_active(timestep)
        self.state.dispersed = frozenset(self.dispersed) if active else frozenset()

    def _pre(self, module, args, kwargs):
        t = _timestep(args, kwargs)
        self._select(t, "main")
        self.damped = self._damped_factors(t, args[0] if args else kwargs["sample"])

    def _damped_factors(self, t: float, sample: torch.Tensor) -> dict | None:
        """The damped plan's factors if this call runs NDCFG; arms the prefix cache for the main pass."""
        if not (self.ndcfg and self.plan.ndcfg_active(t)) or sample.shape[0] % 2 or not self.cfg():
            return None
        damped = self.plan.factors(t, self.layer_names, "damped")
        if self.prefix is not None:
            self.prefix.arm(differing_layers(self.state.factors, damped), rows_of(sample))
        return damped

    def _post(self, module, args, kwargs, output):
        damped = self.damped
        if damped is None or (self.skip_equal and damped == self.state.factors):
            return None  # both plans agree at this step: the damped pass would return u_main
        sample = args[0] if args else kwargs["sample"]
        batch = sample.shape[0]
        half_args = tuple(_first_half(a, batch) for a in args)
        half_kwargs = {k: _first_half(v, batch) for k, v in kwargs.items()}
        self.state.factors = damped
        with self.prefix.replay() if self.prefix is not None else contextlib.nullcontext():
            uncond_damped = _sample_of(module.forward(*half_args, **half_kwargs))
        return _with_sample(output, ndcfg_batch(_sample_of(output), uncond_damped))

    def _clear(self, module, args, output):
        self.state.factors, self.state.dispersed, self.damped = {}, frozenset(), None
        if self.prefix is not None:
            self.prefix.clear()
        if self.kernels is not None:
            self.kernels.clear()

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        if self.prefix is not None:
            self.prefix.remove()
        for conv, before in reversed(self.saved):
            if before is _MISSING:
                conv.__dict__.pop("_conv_forward", None)
            else:
                conv._conv_forward = before
        self.saved.clear()
        self.state.factors, self.state.dispersed = {}, frozenset()


@dataclass
class ScaleCrafterHandle:
    """What `apply_scalecrafter` returns: the plan in force and a way to take it off."""

    unet: nn.Module
    plan: Plan
    family: str | None
    ndcfg: bool
    dispersion: bool

    @property
    def patched_convs(self) -> int:
        patch = _SCALECRAFTER.get(self.unet)
        return patch.patched_convs if patch else 0

    @property
    def prefix_reuse(self) -> PrefixReuse | None:
        """The damped pass's prefix cache (its `peak_bytes`, `reused_units`), None when not in use."""
        patch = _SCALECRAFTER.get(self.unet)
        return patch.prefix if patch else None

    def remove(self) -> None:
        remove_scalecrafter(self.unet)


def _cfg_probe(pipe, cfg) -> Callable[[], bool]:
    if callable(cfg):
        return cfg
    if cfg is not None:
        return lambda: bool(cfg)
    if pipe is None:
        return lambda: True
    if not hasattr(type(pipe), "do_classifier_free_guidance"):
        logger.warning(
            "%s does not say whether it runs CFG; NDCFG assumes every even batch is [uncond; cond]: "
            "pass cfg=guidance_scale > 1 to apply_scalecrafter to be sure",
            type(pipe).__name__,
        )
    ref = weakref.ref(pipe)

    def probe() -> bool:
        p = ref()
        if p is None:
            return True
        flag = getattr(p, "do_classifier_free_guidance", None)
        if flag is not None:
            return bool(flag)
        scale = getattr(p, "_guidance_scale", None)
        return True if scale is None else scale > 1.0

    return probe


def apply_scalecrafter(
    pipe_or_unet,
    height: int,
    width: int,
    preset: str | dict | Plan = "auto",
    *,
    ndcfg: bool = True,
    dispersion: bool = False,
    family: str | None = None,
    base: int | tuple[int, int] | None = None,
    cfg: bool | Callable[[], bool] | None = None,
    progressive: bool | None = None,
    reuse: bool = True,
) -> ScaleCrafterHandle:
    """Patch a diffusers pipeline (sizes in pixels) or a bare UNet (sizes in sample units).

    preset: "auto" (the family's reference preset for this exact size, else the derived plan),
    a preset name, a .toml path, a plan dict, or a Plan. ndcfg: noise-damped CFG where the plan
    has a damped window (on a bare UNet every call's batch must be [uncond; cond]).
    dispersion: dispersed kernels on the plan's dispersion layers (opt-in, as in the reference).
    progressive: None keeps the plan's own decay (reference and derived 4x plans decay); False
    holds every factor for its whole window, True decays every rule.
    reuse: the damped pass takes what it shares with the main pass from it, and is skipped where
    both plans agree (same result; False runs the whole damped pass, for tests and benchmarks).
    family / base / cfg are for tinkering: the preset family, the base size, and whether the
    pipeline is doing CFG (default: the pipeline's own `do_classifier_free_guidance`).
    Applying again replaces the previous patch.
    """
    unet, pipe = _split(pipe_or_unet)
    levels = _check_unet(unet)
    _check_size(height, width)
    family = family or detect_family(unet)
    base_hw, units = _base_size(unet, pipe, family, base)
    plan = resolve_plan(
        preset, height=height, width=width, base=base_hw, levels=levels,
        family=family if units == "pixels" else None, units=units, progressive=progressive,
    )
    remove_scalecrafter(unet)
    _SCALECRAFTER[unet] = _Patch(unet, plan, ndcfg, dispersion, _cfg_probe(pipe, cfg), reuse)
    logger.info("ScaleCrafter plan '%s' (%s) on %d convs", plan.name, plan.source, _SCALECRAFTER[unet].patched_convs)
    return ScaleCrafterHandle(unet, plan, family, ndcfg, dispersion)


def remove_scalecrafter(pipe_or_unet) -> bool:
    """Take the patch off (idempotent). Returns whether one was applied."""
    unet, _ = _split(pipe_or_unet)
    patch = _SCALECRAFTER.pop(unet, None)
    if patch is None:
        return False
    patch.remove()
    return True


@contextlib.contextmanager
def scalecrafter(pipe_or_unet, height: int, width: int, preset="auto", **kwargs):
    """`with scalecrafter(pipe, height=2048, width=2048): pipe(...)`: removed in finally (Ctrl-C too)."""
    handle = apply_scalecrafter(pipe_or_unet, height, width, preset, **kwargs)
    try:
        yield handle
    finally:
        remove_scalecrafter(pipe_or_unet)


# ---- Attn-SF baseline -----------------------------------------------------------------------
def _self_attention_queries(unet: nn.Module):
    for name, module in unet.named_modules():
        if type(module).__name__ != "Attention" or getattr(module, "is_cross_attention", True):
            continue
        if _TEMPORAL_PARTS & set(name.split(".")) or not isinstance(getattr(module, "to_q", None), nn.Module):
            continue
        yield name, module.to_q


def apply_attn_sf(pipe_or_unet, height: int, width: int, *, base: int | tuple[int, int] | None = None, family: str | None = None) -> int:
    """Attn-SF baseline (Jin et al. 2023): scale spatial self-attention logits by sqrt(log_{N_train} N_test).

    Returns the number of attention layers scaled. Sizes in pixels for a pipeline, sample units for a UNet.
    """
    unet, pipe = _split(pipe_or_unet)
    _check_unet(unet)
    _check_size(height, width)
    (bh, bw), _ = _base_size(unet, pipe, family or detect_family(unet), base)
    ratio = (height * width) / (bh * bw)
    remove_attn_sf(unet)

    def hook(module, args, output):
        n_test = output.shape[-2]
        return output * attn_sf_scale(n_test / ratio, n_test)

    _ATTN_SF[unet] = [q.register_forward_hook(hook) for _, q in _self_attention_queries(unet)]
    return len(_ATTN_SF[unet])


def remove_attn_sf(pipe_or_unet) -> bool:
    unet, _ = _split(pipe_or_unet)
    handles = _ATTN_SF.pop(unet, None)
    for handle in handles or ():
        handle.remove()
    return handles is not None
