"""Which plan a UNet call gets: base size, units, the max-scale limit, per-size plan resolution.

Sizes are pixels for a pipeline (a UNet sample of h x w is h * vae_scale_factor pixels) and the
UNet's own sample units for a bare UNet. With a fixed target (height and width given to
`apply_scalecrafter`) the plan is resolved once and a call at any other size is an error; without
one, the plan is resolved on each call from the sample's spatial size (cached per size), and a
call at or below the base size runs the UNet as trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ScaleCrafterError
from .families import ambiguous_family_error, get_family, layout_families
from .plan import Plan
from .presets import load_preset, resolve_plan

if TYPE_CHECKING:  # torch loads where a UNet is patched: scv's parser reads DEFAULT_MAX_SCALE without it
    from torch import nn

DEFAULT_MAX_SCALE = 8.0


def _pair(value) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def resolve_family(unet: nn.Module, pipe, family: str | None) -> str | None:
    """`family` if given (checked), else the one family the architecture fits. A pipeline whose
    architecture fits several (ModelScope and Zeroscope) must name it: sizes are pixels there,
    and the families differ in trained size."""
    if family is not None:
        return get_family(family).name
    candidates = layout_families(unet)
    if len(candidates) > 1 and pipe is not None:
        raise ambiguous_family_error(type(unet).__name__, candidates)
    return candidates[0] if len(candidates) == 1 else None


def base_size(unet: nn.Module, pipe, family: str | None, base) -> tuple[tuple[int, int], str]:
    """(base height, base width) in the units the caller's sizes are in, and those units."""
    if pipe is not None:
        if base is not None:
            return _pair(base), "pixels"
        if family is not None:
            fam = get_family(family)
            return (fam.base_height, fam.base_width), "pixels"
        sample = getattr(unet.config, "sample_size", None)
        if sample is None:
            raise ScaleCrafterError(
                "the UNet config has no sample_size: pass base=(height, width) in pixels or family="
            )
        h, w = _pair(sample)
        scale = pixels_per_sample(pipe)
        return (h * scale, w * scale), "pixels"
    if base is not None:
        return _pair(base), "samples"
    sample = getattr(getattr(unet, "config", None), "sample_size", None)
    if sample is None:
        raise ScaleCrafterError(
            "the UNet config has no sample_size: pass base=(height, width) in the UNet's sample units"
        )
    return _pair(sample), "samples"


def pixels_per_sample(pipe) -> int:
    return 1 if pipe is None else int(getattr(pipe, "vae_scale_factor", 8) or 1)


def check_size(height, width) -> None:
    """Both sides whole positive numbers, else a one-line error (the one size check; jobs add their limits)."""
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ScaleCrafterError(f"{name} must be a positive integer, got {value!r}")


def _units_text(units: str) -> str:
    if units == "pixels":
        return "pixels (sizes given to a pipeline)"
    return "the UNet's own sample units (sizes given to a bare UNet: latents for a latent model, not pixels)"


@dataclass
class PlanResolver:
    """The plan for each target size of one `apply_scalecrafter` call, resolved and validated once per size."""

    preset: object
    base: tuple[int, int]
    units: str
    levels: int
    layers: list[str]
    family: str | None = None
    progressive: bool | None = None
    max_scale: float = DEFAULT_MAX_SCALE
    pixels_per_sample: int = 1
    target: tuple[int, int] | None = None  # fixed (height, width); None: follow each call
    _cache: dict[tuple[int, int], Plan] = field(default_factory=dict, repr=False)
    _as_trained: Plan = field(init=False, repr=False)

    def __post_init__(self):
        if isinstance(self.max_scale, bool) or not isinstance(self.max_scale, (int, float)) or not self.max_scale >= 1:
            raise ScaleCrafterError(f"max_scale must be a number >= 1, got {self.max_scale!r}")
        self._as_trained = Plan(name="as-trained", base=self.base, units=self.units)
        if self.target is not None:
            self.plan_for(*self.target)
        elif self.preset != "auto":  # a named, file or custom plan: its mistakes fail now, not mid-sampling
            self._resolve(*self._preset_target())

    @property
    def fixed_plan(self) -> Plan | None:
        return self.plan_for(*self.target) if self.target is not None else None

    def plan_for(self, height: int, width: int) -> Plan:
        """The plan for a `height` x `width` target (in this resolver's units)."""
        key = (height, width)
        if key not in self._cache:
            check_size(height, width)
            plan = self._resolve(height, width)  # a preset that does not fit says so before the scale check
            self._check_scale(height, width)
            self._cache[key] = plan
        return self._cache[key]

    def plan_for_sample(self, sample_hw: tuple[int, int]) -> Plan:
        """The plan for a UNet call whose sample has spatial size `sample_hw` (its last two dims)."""
        size = (sample_hw[0] * self.pixels_per_sample, sample_hw[1] * self.pixels_per_sample)
        if self.target is not None:
            want = (self.target[0] // self.pixels_per_sample, self.target[1] // self.pixels_per_sample)
            if tuple(sample_hw) != want:
                raise ScaleCrafterError(
                    f"the UNet was called at height={size[0]}, width={size[1]} ({self.units}) but ScaleCrafter was "
                    f"applied for height={self.target[0]}, width={self.target[1]}: apply it for the size you sample, "
                    "or omit height and width so the plan follows each call"
                )
            return self.fixed_plan
        if size[0] <= self.base[0] and size[1] <= self.base[1]:
            return self._as_trained
        return self.plan_for(*size)

    def _check_scale(self, height: int, width: int) -> None:
        scale = max(height / self.base[0], width / self.base[1])
        if scale > self.max_scale:
            raise ScaleCrafterError(
                f"height={height}, width={width} is {scale:g}x the base size (height={self.base[0]}, "
                f"width={self.base[1]}) per side, above max_scale={self.max_scale:g}; sizes were read as "
                f"{_units_text(self.units)}: pass sizes in those units, or raise max_scale (scv: --max-scale) if "
                "you mean it"
            )

    def _preset_target(self) -> tuple[int, int]:
        """The size a named or file preset was written for (it is checked against the model there);
        a dict or Plan is applied as written at any size."""
        if isinstance(self.preset, (str, Path)):
            target = load_preset(self.preset)[1].target
            if target is not None:
                return target
        return self.base

    def _resolve(self, height: int, width: int) -> Plan:
        plan = resolve_plan(
            self.preset,
            height=height,
            width=width,
            base=self.base,
            levels=self.levels,
            family=self.family if self.units == "pixels" else None,
            units=self.units,
            progressive=self.progressive,
        )
        plan.validate(self.layers)
        return plan
