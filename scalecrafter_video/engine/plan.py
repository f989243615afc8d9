"""Plans: which conv gets which re-dilation factor at which timestep.

A plan holds two rule sets, "main" (gives the guidance direction and the conditional term) and
"damped" (the noise-damped unconditional term of NDCFG), plus an optional dispersion list.

Windows are written in *reference steps*, the step index of the reference code's DDIM-50
schedule (its `dilate_tau`), and evaluated on the timestep the UNet receives:

    ref_step(t) = (t_first - t) / stride,   stride = T / 50,  t_first = T - stride + 1

(T = 1000 training timesteps: t_i = 981 - 20 i, so ref_step(t_i) = i). DDIM-50 with leading
spacing and steps_offset 1 reproduces the reference plan step by step; any other sampler or step
count follows the same noise levels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from .errors import ScaleCrafterError
from .layers import check_selectors, resolve_selectors
from .schema import MAX_FACTOR, REFERENCE_STEPS, check_plan_dict

Factor = tuple[float, float]
_EPS = 1e-9


def ref_step(timestep: float, num_train_timesteps: int = 1000) -> float:
    """Position of `timestep` on the reference DDIM-50 schedule (0 at t=981, 49 at t=1)."""
    stride = num_train_timesteps / REFERENCE_STEPS
    return (num_train_timesteps - stride + 1 - float(timestep)) / stride


def in_window(step: float, stop: float) -> bool:
    """Whether reference step `step` lies in a window of the first `stop` steps. A window of 0 steps
    is never open, even at timesteps above the reference's first (t > 981 gives a negative step:
    samplers with trailing or linspace spacing start at t = 999)."""
    return stop > 0 and step < stop


def progressive_factor(d: float, stop: float, step: float) -> float:
    """Reference progressive decay: max(ceil(d (stop - i) / stop), 2), never above d."""
    decayed = math.ceil(d * (stop - step) / stop - _EPS)
    return min(d, max(decayed, min(2.0, d)))


def _as_factor(value) -> Factor:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        pair = (float(value), float(value))
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        pair = (float(value[0]), float(value[1]))
    else:
        raise ScaleCrafterError(f"a re-dilation factor must be a number or [dh, dw], got {value!r}")
    if not all(math.isfinite(f) and 1 <= f <= MAX_FACTOR for f in pair):
        raise ScaleCrafterError(f"re-dilation factors must be between 1 and {MAX_FACTOR:g}, got {value!r}")
    return pair


@dataclass(frozen=True)
class Rule:
    """Layers under `selector` (a layer name or block prefix) use `factor` while ref_step < stop.

    Attributes:
        selector: a full conv name (`down_blocks.1.resnets.0.conv1`) or a block prefix
            (`down_blocks.2`, `mid_block`); checked against the UNet when the plan is applied.
        factor: the re-dilation factor (dh, dw); a number is taken for both sides. Each between 1
            and 64, fractional allowed.
        stop: the end of the window in reference steps (0-50): the rule acts while the timestep's
            reference step is below it.
        progressive: decay the factor over the window by the reference rule
            (`progressive_factor`) instead of holding it.

    Raises:
        ScaleCrafterError: a factor or stop out of range.
    """

    selector: str
    factor: Factor
    stop: float
    progressive: bool = False

    def __post_init__(self):
        object.__setattr__(self, "factor", _as_factor(self.factor))
        if not (0 <= self.stop <= REFERENCE_STEPS):
            raise ScaleCrafterError(
                f"rule '{self.selector}': stop must be in [0, 50] reference steps, got {self.stop}"
            )

    def factor_at(self, step: float) -> Factor:
        """The factor (dh, dw) at reference step `step`: (1, 1) outside the rule's window."""
        if not in_window(step, self.stop):
            return (1.0, 1.0)
        if not self.progressive:
            return self.factor
        return tuple(progressive_factor(f, self.stop, step) for f in self.factor)


@dataclass(frozen=True)
class Plan:
    """A full ScaleCrafter plan. Sizes are informative; the rules are what runs.

    Attributes:
        name: the plan's name (a preset's name, `derived-WxH`, or the caller's).
        main: the rules of the main pass (the guidance direction and the conditional term).
        damped: the rules of the damped pass (the unconditional term of NDCFG), used while
            NDCFG is on.
        ndcfg_stop: NDCFG runs while the reference step is below it; 0 = ordinary CFG throughout.
        dispersion: selectors whose dilated convs use the dispersed kernel (when dispersion is
            enabled).
        dispersion_stop: the dispersion window, in reference steps.
        num_train_timesteps: the model's training timesteps, for the reference-step mapping.
        base: (height, width) the model was trained at, or None.
        target: (height, width) this plan is for, or None.
        units: the units of `base` and `target`: "pixels", or a bare UNet's sample units.
        source: "preset", "derived" or "custom".
        notes: free text (not compared).
    """

    name: str
    main: tuple[Rule, ...] = ()
    damped: tuple[Rule, ...] = ()
    ndcfg_stop: float = 0.0  # NDCFG while ref_step < ndcfg_stop; 0 = ordinary CFG throughout
    dispersion: tuple[str, ...] = ()  # selectors whose dilated convs use the dispersed kernel
    dispersion_stop: float = 0.0  # dispersion window when enabled (reference steps)
    num_train_timesteps: int = 1000
    base: tuple[int, int] | None = None  # (height, width) the model was trained at
    target: tuple[int, int] | None = None  # (height, width) this plan is for
    units: str = "pixels"
    source: str = "custom"  # "preset", "derived" or "custom"
    notes: str = field(default="", compare=False)

    # ---- evaluation -------------------------------------------------------------------------
    def step_of(self, timestep: float) -> float:
        """The reference step (0 at t=981, 49 at t=1 for 1000 training steps) of `timestep`."""
        return ref_step(timestep, self.num_train_timesteps)

    def ndcfg_active(self, timestep: float) -> bool:
        """Whether NDCFG runs at `timestep` (a window of 0 steps never opens)."""
        return in_window(self.step_of(timestep), self.ndcfg_stop)

    def dispersion_active(self, timestep: float) -> bool:
        """Whether the plan lists dispersion layers and `timestep` is inside their window."""
        return bool(self.dispersion) and in_window(self.step_of(timestep), self.dispersion_stop)

    def factors(self, timestep: float, layers: list[str], variant: str = "main") -> dict[str, Factor]:
        """Factor of every layer (only those != 1) at `timestep` for variant main or damped.

        Args:
            timestep: the timestep the UNet receives.
            layers: the UNet's eligible conv names.
            variant: "main" or "damped".

        Returns:
            {layer: (dh, dw)} for the layers whose factor is not 1 at this step.
        """
        rules = {"main": self.main, "damped": self.damped}[variant]
        by_selector = {rule.selector: rule for rule in rules}
        step = self.step_of(timestep)
        out = {}
        for layer, selector in resolve_selectors(by_selector, layers).items():
            factor = by_selector[selector].factor_at(step)
            if factor != (1.0, 1.0):
                out[layer] = factor
        return out

    def dispersed_layers(self, layers: list[str]) -> set[str]:
        """The names among `layers` that the dispersion selectors cover."""
        return set(resolve_selectors(self.dispersion, layers))

    def steps(self, timesteps, layers: list[str], ndcfg: bool = True) -> list[dict]:
        """The resolved plan per sampling step: {index, timestep, main, damped} (factors != 1).

        Args:
            timesteps: the sampler's timesteps, in order.
            layers: the UNet's eligible conv names.
            ndcfg: whether NDCFG is on (off: `damped` is empty at every step).

        Returns:
            One dict per step; factors print as one number when isotropic, else [dh, dw].
        """
        rows = []
        for i, t in enumerate(timesteps):
            t = float(t)
            damped = self.factors(t, layers, "damped") if ndcfg and self.ndcfg_active(t) else {}
            rows.append(
                {
                    "index": i,
                    "timestep": int(t) if t.is_integer() else t,
                    "main": {k: _compact(v) for k, v in self.factors(t, layers, "main").items()},
                    "damped": {k: _compact(v) for k, v in damped.items()},
                }
            )
        return rows

    # ---- checks and serialisation -----------------------------------------------------------
    def validate(self, layers: list[str], where: str | None = None) -> None:
        """Every selector must name an eligible conv of this UNet (never a silent skip).

        Args:
            layers: the UNet's eligible conv names.
            where: how the plan is named in the error (default "plan '<name>'").

        Raises:
            ScaleCrafterError: a selector matches no eligible conv (the message names the closest
                real layers).
        """
        where = where or f"plan '{self.name}'"
        check_selectors([r.selector for r in self.main], layers, f"{where} [main]")
        check_selectors([r.selector for r in self.damped], layers, f"{where} [damped]")
        check_selectors(self.dispersion, layers, f"{where} [dispersion]")

    def without_ndcfg(self) -> Plan:
        """The same plan with ordinary CFG throughout (`ndcfg_stop` 0)."""
        return replace(self, ndcfg_stop=0.0)

    def with_progressive(self, on: bool) -> Plan:
        """Every rule (main and damped) with the progressive decay switched on or off; off holds
        each factor for its whole window."""

        def switch(rules):
            return tuple(replace(r, progressive=bool(on)) for r in rules)

        return replace(self, main=switch(self.main), damped=switch(self.damped))

    def to_dict(self) -> dict:
        """The plan as plain JSON-ready data (the form `from_dict` reads; `notes` left out)."""

        def rules(rs):
            return [
                {"selector": r.selector, "factor": _compact(r.factor), "stop": r.stop, "progressive": r.progressive}
                for r in rs
            ]

        return {
            "name": self.name,
            "source": self.source,
            "units": self.units,
            "base": list(self.base) if self.base else None,
            "target": list(self.target) if self.target else None,
            "num_train_timesteps": self.num_train_timesteps,
            "main": rules(self.main),
            "damped": rules(self.damped),
            "ndcfg_stop": self.ndcfg_stop,
            "dispersion": list(self.dispersion),
            "dispersion_stop": self.dispersion_stop,
        }

    @classmethod
    def from_dict(cls, data: dict, where: str = "plan dict") -> Plan:
        """A plan from `to_dict`'s form, or a hand-written dict of rules, every key checked by type
        (`schema.check_plan_dict`).

        Args:
            data: {"name", "main": [{"selector", "factor", "stop", "progressive"?}, ...],
                "damped", "ndcfg_stop", "dispersion", "dispersion_stop", "base", "target", ...};
                every key but the rules' selector, factor and stop is optional.
            where: what the dict is, for the error message (e.g. a preset file's path).

        Returns:
            The plan.

        Raises:
            ScaleCrafterError: one line naming each bad key, the value it got and what it expects.
        """
        check_plan_dict(data, where)

        def rules(items):
            return tuple(
                Rule(r["selector"], r["factor"], float(r["stop"]), r.get("progressive", False)) for r in items or ()
            )

        def size(value):
            return tuple(value) if value else None

        return cls(
            name=data.get("name", "custom"),
            main=rules(data.get("main")),
            damped=rules(data.get("damped")),
            ndcfg_stop=float(data.get("ndcfg_stop", 0.0)),
            dispersion=tuple(data.get("dispersion", ())),
            dispersion_stop=float(data.get("dispersion_stop", 0.0)),
            num_train_timesteps=data.get("num_train_timesteps", 1000),
            base=size(data.get("base")),
            target=size(data.get("target")),
            units=data.get("units", "pixels"),
            source=data.get("source", "custom"),
            notes=data.get("notes", ""),
        )


def _compact(factor: Factor):
    """Isotropic factors print as one number, integers without a decimal point."""

    def num(f):
        return int(f) if float(f).is_integer() else f

    return num(factor[0]) if factor[0] == factor[1] else [num(factor[0]), num(factor[1])]


# ---- the plan for any size ------------------------------------------------------------------
UNIFORM_LIMIT = 3.0  # per-side scale from which the depth-graded, progressive plan takes over
GRADED_STOP = 35.0


def uniform_stop(scale: float) -> float:
    """Window of the uniform regime: 30 reference steps at 2x, 35 at 2.5x (SD 1.5 presets)."""
    return min(GRADED_STOP, max(20.0, 30.0 + 10.0 * (scale - 2.0)))


def level_blocks(levels: int) -> dict[int, list[str]]:
    """Block prefixes per resolution level (0 = outermost), excluding the outermost up block."""
    blocks: dict[int, list[str]] = {k: [f"down_blocks.{k}"] for k in range(levels)}
    blocks[levels - 1].append("mid_block")
    for j in range(levels - 1):
        blocks[levels - 1 - j].append(f"up_blocks.{j}")
    return blocks


def derive_plan(
    levels: int,
    base: tuple[int, int],
    target: tuple[int, int],
    units: str = "pixels",
    name: str | None = None,
) -> Plan:
    """The plan for any height x width from the rule behind the reference presets.

    s = target / base per side. s <= 1: nothing. 1 < max(s) < 3: every level but the outermost
    (and the mid block) at factor s per side, window uniform_stop(s), no NDCFG (the reference
    2x and 2.5x presets). max(s) >= 3: depth-graded, rounded factors from s/2 at level 1 to s at
    the deepest level and mid block, progressive decay, window 35, NDCFG over 35 steps with the
    damped plan one level lighter, dispersion listed for levels >= 2 (the reference 4x presets).
    down_blocks.0 and the outermost up block are never dilated.

    Args:
        levels: the UNet's resolution levels (its number of down blocks).
        base: (height, width) the model was trained at.
        target: (height, width) to sample, in the same units as `base`.
        units: the units of both sizes, recorded in the plan ("pixels" or sample units).
        name: the plan's name; default `derived-WxH` of the target.

    Returns:
        The derived plan (`source="derived"`); with no rules at or below the base size.
    """
    (bh, bw), (th, tw) = base, target
    sh, sw = th / bh, tw / bw
    s = max(sh, sw)
    name = name or f"derived-{tw}x{th}"
    common = dict(name=name, base=tuple(base), target=tuple(target), units=units, source="derived")
    blocks = level_blocks(levels)
    if s <= 1 + _EPS or levels < 2:
        return Plan(**common)
    if s < UNIFORM_LIMIT:
        stop = uniform_stop(s)
        factor = (max(1.0, sh), max(1.0, sw))
        main = tuple(Rule(b, factor, stop) for k in range(1, levels) for b in blocks[k])
        return Plan(main=main, **common)

    def graded(k: int) -> Factor:
        weight = 1.0 if levels == 2 else 0.5 + 0.5 * (k - 1) / (levels - 2)
        return tuple(float(max(1, math.floor(side * weight + 0.5))) for side in (sh, sw))

    main = tuple(Rule(b, graded(k), GRADED_STOP, True) for k in range(1, levels) for b in blocks[k])
    damped_levels = range(2, levels) if levels > 2 else range(1, levels)
    damped = tuple(Rule(b, graded(k), GRADED_STOP, True) for k in damped_levels for b in blocks[k])
    dispersion = tuple(b for k in damped_levels for b in blocks[k])
    return Plan(
        main=main, damped=damped, ndcfg_stop=GRADED_STOP, dispersion=dispersion, dispersion_stop=GRADED_STOP, **common
    )


def idle_notice(plan: Plan) -> str | None:
    """One line when `plan` re-dilates nothing (a size at or below the base): the UNet runs as trained."""
    if plan.main:
        return None
    where = ""
    if plan.target and plan.base:
        (th, tw), (bh, bw) = plan.target, plan.base
        unit = "" if plan.units == "pixels" else f" {plan.units}"
        below = f", at or below the base size {bw}x{bh}{unit}" if th <= bh and tw <= bw else ""
        where = f" at {tw}x{th}{unit}{below}"
    return f"ScaleCrafter has nothing to do{where}: plan '{plan.name}' dilates no conv, the UNet runs as trained"
