"""Instance-level patching: a plan runs inside any diffusers UNet and comes off cleanly.

- The patch lives on the UNet itself (`unet._scalecrafter`, as diffusers keeps a module's hooks in
  `module._diffusers_hook`): nothing global refers to it, so it goes with the UNet. A compiled UNet
  (`torch.compile`) is patched inside its wrapper.
- Each eligible conv gets an instance `_conv_forward` wrapper (nn.Conv2d.forward calls it with the
  weight and bias, so LoRA/PEFT-wrapped and offloaded layers work); the module's own attributes
  (dilation, padding, weight) are never rewritten. The wrapped set follows the eligible set: it is
  reconciled on every apply and before any UNet call after the UNet's convs changed (a LoRA added).
- The UNet gets torch forward hooks (they survive accelerate re-hooking its `forward`, which model
  CPU offload does after every pipeline call). The pre-hook reads the timestep and the sample's size,
  selects the main plan's factors and takes the damped pass's inputs (the unconditional half, in
  containers of its own: the main pass may consume them, as T2I-Adapter residuals are popped from
  their list). The forward hook runs the damped pass and returns [u_damped; u_damped + c_main -
  u_main], which the pipeline turns into noise-damped CFG (only where the CFG batch layout is known:
  `layouts`). The damped pass takes the units it shares with the main pass from it
  (`reuse.PrefixReuse`) and is skipped where both plans agree.
- Per-call state (factors, the prefix cache, dispersed kernels) is dropped after every call, after
  an error, and after a KeyboardInterrupt: torch's `always_call` hooks see only `Exception`, so a
  `forward` guard catches the rest (and the next call starts clean even where something removed it).
- Wrappers compose with other patchers (`overrides`): removal restores only what is still ours;
  under another patcher's wrapper ours stays as a pass-through.
- One patch per UNet, shared by the handles applied to it: the most recent handle still in place
  runs; removing a handle takes off only its own plan (the one below runs again) and the last
  removal restores the UNet bit for bit. No UNet copy, no weight change.
- Under `torch.compile` the per-call decisions run outside the graph (`torch.compiler.disable`); the
  traced conv wrappers specialise the graph on the factors in force, so it compiles once per
  distinct plan state (main and damped), not once per step.
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
from .layouts import CfgProbe, cfg_probe, unknown_layout_warning
from .layouts import batch_layout as layout_of
from .overrides import Override
from .plan import Plan
from .reuse import PrefixReuse, differing_layers, reuse_units, rows_of, supports_reuse
from .sizing import (
    DEFAULT_MAX_SCALE,
    PlanResolver,
    base_size,
    check_size,
    pixels_per_sample,
    resolve_family,
)

logger = logging.getLogger(__name__)

REGISTRY = "_scalecrafter"  # the UNet's attribute holding its patch


def _patch_of(unet: nn.Module | None) -> _Patch | None:
    return None if unet is None else unet.__dict__.get(REGISTRY)


# ---- the conv patch -------------------------------------------------------------------------
@dataclass
class _State:
    """What the convs do in the current UNet call (set by the UNet hooks)."""

    factors: dict = field(default_factory=dict)  # logical layer -> (dh, dw)
    dispersed: frozenset = frozenset()  # layers using the dispersed kernel now
    kernels: DispersedKernels | None = None  # made when dispersion is first needed


class _ConvForward(Override):
    """A conv's `_conv_forward` under the plan: re-dilated (or dispersed) while its layer has a
    factor in the current call, else (and once removed) the conv's own."""

    __slots__ = ("layer", "state")

    def __init__(self, conv: nn.Conv2d, layer: str, state: _State):
        super().__init__(conv, "_conv_forward")
        self.layer, self.state = layer, state

    def __call__(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        factor = self.state.factors.get(self.layer) if self.live else None
        if factor is None:
            return self.inner(input, weight, bias)
        conv, padding = self.owner, self.owner.padding
        if self.layer in self.state.dispersed:  # the K x K kernel already doubles the receptive field
            weight, padding = self.state.kernels.kernel(weight, conv), None
            factor = (max(1.0, factor[0] / 2), max(1.0, factor[1] / 2))
        return redilated_conv2d(input, weight, bias, conv.stride, factor, conv.groups, padding)


class _CallGuard(Override):
    """The UNet's `forward` inside a guard that drops the per-call state when the call ends by any
    exception, KeyboardInterrupt included (on success the forward hook still needs it)."""

    __slots__ = ("entered", "patch")

    def __init__(self, unet: nn.Module, patch: _Patch):
        super().__init__(unet, "forward")
        self.patch, self.entered = patch, False

    @torch.compiler.disable(recursive=False)  # the UNet's forward below it is still compiled
    def __call__(self, *args, **kwargs):
        if not self.live:
            return self.inner(*args, **kwargs)
        self.entered = True
        try:
            return self.inner(*args, **kwargs)
        except BaseException:
            self.patch.end_call()
            raise


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


def _conv_modules(unet: nn.Module) -> list[nn.Conv2d]:
    """Every Conv2d of the UNet, in a fixed order: the cheap per-call check that none came or went."""
    found, stack = [], [unet]
    while stack:
        module = stack.pop()
        if isinstance(module, nn.Conv2d):
            found.append(module)
        stack.extend(module._modules.values())
    return found


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
    """The unconditional half of a UNet argument: tensors sliced (views), lists, tuples and dicts
    copied, so that the main pass consuming its own containers leaves these whole."""
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
    """The conv wrappers, forward guard and UNet hooks on one UNet, shared by every handle applied
    to it; the top of `stack` (the most recent handle still in place) is the one that runs."""

    def __init__(self, unet: nn.Module):
        self.unet_ref = weakref.ref(unet)
        self.layer_names: list[str] = []
        self.state = _State()
        self.stack: list[ScaleCrafterHandle] = []
        self.plan: Plan | None = None  # the plan of the UNet call in progress
        self.damped: dict | None = None  # the damped plan's factors when the call in progress runs NDCFG
        self.damped_inputs: tuple | None = None  # (args, kwargs) of the damped pass, taken before the main pass
        self.prefix: PrefixReuse | None = None
        self.wrappers: dict[nn.Conv2d, _ConvForward] = {}
        self.convs: list[nn.Conv2d] = []  # every Conv2d seen at the last reconcile
        self.skipped: set[nn.Conv2d] = set()  # eligible by name, not patchable (warned once)
        self.guard: _CallGuard | None = None
        self.hooks = []
        try:
            unet.__dict__[REGISTRY] = self
            self.reconcile()
            self._guard(unet)
            self.hooks.append(unet.register_forward_pre_hook(self._pre, with_kwargs=True))
            self.hooks.append(unet.register_forward_hook(self._post, with_kwargs=True))
            self.hooks.append(unet.register_forward_hook(self._clear, always_call=True))
        except BaseException:
            self.uninstall()
            raise

    @property
    def patched_convs(self) -> int:
        return len(self.wrappers)

    # ---- the wrapped convs follow the UNet ----------------------------------------------------
    def reconcile(self) -> None:
        """Wrap every eligible conv not wrapped yet (a LoRA added since), unwrap those no longer in
        the UNet, and follow a unit replaced for prefix reuse."""
        unet = self.unet_ref()
        layers = spatial_convs(unet)
        eligible, skipped = {}, set()
        for name, convs in layers.items():
            for conv in convs:
                if conv in self.skipped or (conv not in self.wrappers and not _patchable(name, conv)):
                    skipped.add(conv)
                else:
                    eligible[conv] = name
        for conv in [c for c in self.wrappers if c not in eligible]:
            self.wrappers.pop(conv).remove()
        for conv, name in eligible.items():
            wrapper = self.wrappers.get(conv)
            if wrapper is None:
                wrapper = self.wrappers[conv] = _ConvForward(conv, name, self.state)
                wrapper.install()
            wrapper.layer = name
        self.skipped, self.layer_names = skipped, list(layers)
        self.convs = _conv_modules(unet)
        units = [module for _, module in reuse_units(unet)] if supports_reuse(unet) else []
        if [module for _, module in (self.prefix.units if self.prefix else [])] != units:
            if self.prefix is not None:
                self.prefix.remove()
            self.prefix = PrefixReuse(unet) if units else None

    def _convs_changed(self, unet: nn.Module) -> bool:
        now = _conv_modules(unet)
        return len(now) != len(self.convs) or any(a is not b for a, b in zip(now, self.convs))

    def _guard(self, unet: nn.Module) -> None:
        """Put the forward guard on top (again, where something replaced `forward` since)."""
        if self.guard is not None:
            self.guard.remove()
        self.guard = _CallGuard(unet, self)
        self.guard.install()

    # ---- one UNet call ------------------------------------------------------------------------
    def _select(self, timestep: float, variant: str) -> None:
        handle = self.stack[-1]
        self.state.factors = self.plan.factors(timestep, self.layer_names, variant)
        active = handle.dispersion and self.plan.dispersion_active(timestep)
        self.state.dispersed = frozenset(self.plan.dispersed_layers(self.layer_names)) if active else frozenset()
        if active and self.state.kernels is None:
            self.state.kernels = DispersedKernels(dispersion_transform())

    @torch.compiler.disable
    def _pre(self, module, args, kwargs):
        self.end_call()  # a call cut short where no hook or guard saw it leaves nothing behind
        if self._convs_changed(module):
            self.reconcile()
        self.guard.entered = False
        handle = self.stack[-1]
        handle.unet_calls += 1
        sample, t = _sample(args, kwargs), _timestep(args, kwargs)
        self.plan = handle._plan_for_call(tuple(sample.shape[-2:]))
        self._select(t, "main")
        self.damped = self._damped_factors(handle, t, sample)
        if self.damped is not None and not (handle.reuse and self.damped == self.state.factors):
            batch = sample.shape[0]
            self.damped_inputs = (
                tuple(_first_half(a, batch) for a in args),
                {k: _first_half(v, batch) for k, v in kwargs.items()},
            )

    def _damped_factors(self, handle: ScaleCrafterHandle, t: float, sample: torch.Tensor) -> dict | None:
        """The damped plan's factors if this call runs NDCFG; arms the prefix cache for the main pass."""
        if not handle._runs_ndcfg(self.plan, t, sample.shape[0]):
            return None
        damped = self.plan.factors(t, self.layer_names, "damped")
        if handle.reuse and self.prefix is not None and damped != self.state.factors:
            self.prefix.arm(differing_layers(self.state.factors, damped), rows_of(sample))
        return damped

    @torch.compiler.disable(recursive=False)  # the damped pass below it is still compiled
    def _post(self, module, args, kwargs, output):
        try:
            inputs = self._begin_damped()
            if inputs is None:
                return None  # no NDCFG, or both plans agree at this step: the damped pass would return u_main
            uncond_damped = _sample_of(module.forward(*inputs[0], **inputs[1]))
            return self._combine(output, uncond_damped)
        finally:
            self._end_damped(module)

    @torch.compiler.disable
    def _begin_damped(self) -> tuple | None:
        inputs, self.damped_inputs = self.damped_inputs, None
        if inputs is None:
            return None
        self.state.factors = self.damped
        if self.stack[-1].reuse and self.prefix is not None:
            self.prefix.begin_replay()
        return inputs

    @torch.compiler.disable
    def _combine(self, output, uncond_damped: torch.Tensor):
        self.stack[-1].damped_passes += 1
        return _with_sample(output, ndcfg_batch(_sample_of(output), uncond_damped))

    @torch.compiler.disable
    def _end_damped(self, module: nn.Module) -> None:
        self.end_call()
        if not self.guard.entered:  # `forward` was replaced above the guard (accelerate re-hooking)
            self._guard(module)

    @torch.compiler.disable
    def _clear(self, module, args, output):
        self.end_call()

    def end_call(self) -> None:
        """Drop everything the call in progress holds (idempotent)."""
        self.state.factors, self.state.dispersed = {}, frozenset()
        self.damped = self.damped_inputs = None
        if self.prefix is not None:
            self.prefix.end_replay()
        if self.state.kernels is not None:
            self.state.kernels.clear()

    def uninstall(self) -> None:
        for handle in self.stack:
            handle._close()
        self.stack.clear()
        for hook in self.hooks:
            hook.remove()
        self.hooks.clear()
        self.end_call()
        if self.guard is not None:
            self.guard.remove()
        if self.prefix is not None:
            self.prefix.remove()
        for wrapper in reversed(list(self.wrappers.values())):
            wrapper.remove()
        self.wrappers.clear()
        self.convs, self.skipped = [], set()
        unet = self.unet_ref()
        if unet is not None and unet.__dict__.get(REGISTRY) is self:
            del unet.__dict__[REGISTRY]


class ScaleCrafterHandle:
    """What `apply_scalecrafter` returns: the plan in force, what ran, and a way to take it off.

    The handle refers to its UNet weakly: keeping it does not keep the UNet (or its pipeline) alive.

    Attributes:
        unet_calls: UNet calls this handle ran (while it was the one in force).
        damped_passes: noise-damped passes among them (none where both plans agree at a step).
        ndcfg_layout: the CFG batch layout NDCFG relies on; None when NDCFG cannot run (off, or the
            layout is unknown).
        reuse: whether the damped pass reuses the main pass's prefix.
    """

    def __init__(
        self,
        unet: nn.Module,
        plans: PlanResolver,
        family: str | None,
        ndcfg: bool,
        dispersion: bool,
        ndcfg_layout: str | None,
        cfg: Callable[[], bool],
        reuse: bool = True,
    ):
        self._unet = weakref.ref(unet)
        self.plans, self.family = plans, family
        self.ndcfg, self.dispersion, self.ndcfg_layout, self.cfg = ndcfg, dispersion, ndcfg_layout, cfg
        self.reuse = reuse
        self.unet_calls = 0
        self.damped_passes = 0
        self._last: Plan | None = plans.fixed_plan

    @property
    def unet(self) -> nn.Module | None:
        """The patched UNet (the module inside a compiled one); None once it was freed."""
        return self._unet()

    @property
    def plan(self) -> Plan | None:
        """The plan for the size applied for; without one, the plan of the latest UNet call (None before)."""
        return self._last

    def plan_for(self, height: int, width: int) -> Plan:
        """The plan this handle runs for a target size.

        Args:
            height: target height (pixels for a pipeline, sample units for a bare UNet).
            width: target width, in the same units.

        Returns:
            The resolved plan.

        Raises:
            ScaleCrafterError: the size is refused (above `max_scale`, or not the size applied for).
        """
        return self.plans.plan_for(height, width)

    def _patch(self) -> _Patch | None:
        patch = _patch_of(self.unet)
        return patch if patch is not None and self in patch.stack else None

    @property
    def active(self) -> bool:
        """Whether this handle's plan is the one in force (the most recent handle still in place)."""
        patch = self._patch()
        return patch is not None and patch.stack[-1] is self

    @property
    def patched_convs(self) -> int:
        """Convs wrapped on the UNet while this handle is in place (LoRA convs included), else 0."""
        patch = self._patch()
        return patch.patched_convs if patch is not None else 0

    @property
    def prefix_reuse(self) -> PrefixReuse | None:
        """The damped pass's prefix cache (`peak_bytes`, `reused_units`); None when this handle does
        not reuse (reuse=False, NDCFG off, or a UNet class whose unit order is not known)."""
        patch = self._patch()
        if patch is None or not (self.reuse and self.ndcfg_layout):
            return None
        return patch.prefix

    def remove(self) -> bool:
        """Take off this handle's plan only (idempotent); the last one off restores the UNet bit for bit.

        Returns:
            Whether this handle was in place.
        """
        patch = self._patch()
        if patch is None:
            return False
        patch.stack.remove(self)
        self._close()
        if not patch.stack:
            patch.uninstall()
        return True

    def _close(self) -> None:
        if isinstance(self.cfg, CfgProbe):
            self.cfg.close()

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
    """Patch a diffusers pipeline or a bare UNet with ScaleCrafter (re-dilation, noise-damped CFG,
    dispersed convolution), in place: no UNet copy, no weight change.

    Applying again on a patched model puts the new plan on top (and wraps convs added since, e.g.
    a LoRA); removing a handle (or leaving its `with scalecrafter(...)` block) brings back the one
    below; `remove_scalecrafter` takes off every plan. A compiled UNet (`torch.compile`) is patched
    inside its wrapper. The arguments that matter are the size and `preset`; `family`, `base`,
    `cfg`, `batch_layout` and `reuse` are for tinkering.

    Args:
        pipe_or_unet: a diffusers pipeline with a `.unet` (sizes in pixels) or the UNet itself
            (sizes in sample units).
        height: the height you will sample. Omitted (with `width`), the plan follows each UNet
            call's own sample size (resolved once per size; at or below the base size the UNet runs
            as trained). Given, a call at another size is an error.
        width: the width you will sample.
        preset: "auto" (the family's reference preset for this exact size, else the derived plan),
            a preset name, a .toml path, a plan dict, or a Plan.
        ndcfg: noise-damped CFG where the plan has a damped window, the CFG batch layout is known
            (stock pipelines, a pipeline class declaring `scalecrafter_batch_layout`, or
            `batch_layout`) and the call is known to run CFG; elsewhere a warning and re-dilation alone.
        dispersion: dispersed kernels on the plan's dispersion layers (opt-in, as in the reference).
        progressive: None keeps the plan's own decay; False holds every factor for its whole
            window, True decays every rule.
        family: the preset family, required where the architecture cannot tell (ModelScope vs
            Zeroscope).
        base: the base size (default: the family's, else the UNet's sample size).
        cfg: whether the pipeline runs CFG (a bool or a callable asked on each UNet call). Default:
            what the pipeline says (`do_classifier_free_guidance`, `_guidance_scale`, or what its
            call passes to `encode_prompt`); where it says nothing, no damped pass runs.
        batch_layout: the CFG batch layout, `"uncond,cond"`, for a bare UNet or a pipeline you vouch for.
        max_scale: the largest per-side scale accepted.
        reuse: the damped pass takes what it shares with the main pass from it, and is skipped
            where both plans agree (the same prediction; False runs the whole damped pass, for tests
            and benchmarks).

    Returns:
        The handle: `plan`, `unet_calls`, `damped_passes`, `patched_convs`, `ndcfg_layout`, `remove()`.

    Raises:
        ScaleCrafterError: an unsupported model, a bad size, preset or plan (a layer name the UNet
            does not have), an unknown batch layout; the model is left as it was.
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
    plans = PlanResolver(
        preset,
        base_hw,
        units,
        levels,
        list(layers),
        family=family,
        progressive=progressive,
        max_scale=max_scale,
        pixels_per_sample=pixels_per_sample(pipe),
        target=target,
    )
    layout = layout_of(pipe, batch_layout) if ndcfg else None
    fixed = plans.fixed_plan
    if ndcfg and layout is None and (fixed is None or fixed.ndcfg_stop > 0):
        logger.warning(unknown_layout_warning(pipe))
    probe = cfg_probe(pipe, cfg) if layout else (lambda: False)
    handle = ScaleCrafterHandle(unet, plans, family, ndcfg, dispersion, layout, probe, reuse)
    patch = _patch_of(unet)
    try:
        if patch is None:
            patch = _Patch(unet)
        else:
            patch.reconcile()
    except BaseException:
        handle._close()
        raise
    patch.stack.append(handle)
    logger.info("ScaleCrafter plan '%s' on %d convs", fixed.name if fixed else "per call size", patch.patched_convs)
    return handle


def remove_scalecrafter(pipe_or_unet) -> bool:
    """Take every ScaleCrafter plan off a pipeline or UNet (idempotent).

    What is still ours is put back, so the UNet is bit-identical to before; a wrapper that another
    patcher has wrapped since stays in its chain as a pass-through.

    Args:
        pipe_or_unet: the pipeline or UNet given to `apply_scalecrafter` (compiled or not).

    Returns:
        Whether a plan was applied.

    Raises:
        ScaleCrafterError: `pipe_or_unet` is neither a pipeline with a `.unet` nor a module.
    """
    unet, _ = find_unet(pipe_or_unet)
    patch = _patch_of(unet)
    if patch is None:
        return False
    patch.uninstall()
    return True


@contextlib.contextmanager
def scalecrafter(pipe_or_unet, height: int | None = None, width: int | None = None, preset="auto", **kwargs):
    """`with scalecrafter(pipe, height=2048, width=2048): pipe(...)`: `apply_scalecrafter` for a block.

    The plan comes off in `finally` (Ctrl-C too), and an outer one runs again.

    Args:
        pipe_or_unet: a diffusers pipeline with a `.unet`, or the UNet itself.
        height: the height you will sample (see `apply_scalecrafter`).
        width: the width you will sample.
        preset: as for `apply_scalecrafter`.
        **kwargs: the keyword arguments of `apply_scalecrafter`.

    Yields:
        The `ScaleCrafterHandle` of this plan.

    Raises:
        ScaleCrafterError: as `apply_scalecrafter`.
    """
    handle = apply_scalecrafter(pipe_or_unet, height, width, preset, **kwargs)
    try:
        yield handle
    finally:
        handle.remove()
