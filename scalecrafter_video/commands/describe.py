"""How `scv plan` and `scv presets` show plans: the plan on a sampler's timesteps, as a compact
table or JSON rows, and the table of shipped presets."""

from __future__ import annotations

import json

from ..engine.families import get_family
from ..engine.layers import block_of
from ..engine.plan import Plan
from ..engine.presets import family_layers, preset_argument, presets, resolve_plan
from ..jobs.checks import check_size, check_steps
from ..jobs.sampling import sampler_timesteps


def plan_rows(
    family: str,
    width: int,
    height: int,
    steps: int,
    preset: str = "auto",
    scheduler: str = "ddim",
    ndcfg: bool = True,
    progressive: bool | None = None,
    force_preset: bool = False,
) -> tuple[Plan, list[dict]]:
    """(plan, rows) for a family and size: rows as `Plan.steps` gives them, on the sampler's timesteps."""
    fam = get_family(family)
    check_size(height, width, fam.size_multiple)
    check_steps(steps)
    plan = resolve_plan(
        preset_argument(preset, force_preset),
        height=height,
        width=width,
        base=(fam.base_height, fam.base_width),
        levels=fam.levels,
        family=family,
        progressive=progressive,
    )
    layers = list(family_layers(family))
    plan.validate(layers)
    timesteps = sampler_timesteps(steps, scheduler, plan.num_train_timesteps)
    return plan, plan.steps(timesteps, layers, ndcfg=ndcfg)


def format_plan(
    plan, rows: list[dict], family: str, width: int, height: int, scheduler: str, ndcfg: bool = True
) -> str:
    """A compact table: consecutive steps with the same factors share one line."""
    base = f"{plan.base[1]}x{plan.base[0]}" if plan.base else "?"
    if not ndcfg:
        nd = "NDCFG off (--no-ndcfg)"
    elif plan.damped and plan.ndcfg_stop > 0:
        nd = f"NDCFG until reference step {plan.ndcfg_stop:g}"
    else:
        nd = "NDCFG off (this plan has no damped window)"
    dispersion = f"; dispersion (opt-in) on: {', '.join(plan.dispersion)}" if plan.dispersion else ""
    lines = [
        f"plan {plan.name} ({plan.source}) for {family} {width}x{height} (base {base}), "
        f"{len(rows)} {scheduler} steps; {nd}{dispersion}",
    ]
    groups: list[list[dict]] = []
    for row in rows:
        if groups and groups[-1][-1]["main"] == row["main"] and groups[-1][-1]["damped"] == row["damped"]:
            groups[-1].append(row)
        else:
            groups.append([row])
    width_col = max(len(_step_range(g)) for g in groups) if groups else 0
    for g in groups:
        main = _summarise(g[0]["main"]) or "none (plain convs)"
        line = f"{_step_range(g):<{width_col}}  main: {main}"
        if g[0]["damped"]:
            line += f" | damped: {_summarise(g[0]['damped'])}"
        lines.append(line)
    return "\n".join(lines)


def _step_range(group: list[dict]) -> str:
    first, last = group[0], group[-1]
    steps = f"step {first['index']}" if first is last else f"steps {first['index']}-{last['index']}"
    ts = f"t={first['timestep']:g}" if first is last else f"t={first['timestep']:g}..{last['timestep']:g}"
    return f"{steps} ({ts})"


def _summarise(factors: dict) -> str:
    """Factors per block (and per down/upsampler) when all its layers agree, else per layer."""

    def key(layer: str) -> str:
        block = block_of(layer)
        for part in ("downsamplers", "upsamplers"):
            if f".{part}." in layer:
                return f"{block}.{part}"
        return block

    grouped: dict[str, dict[str, object]] = {}
    for layer, factor in factors.items():
        grouped.setdefault(key(layer), {})[layer] = factor
    parts = []
    for k, members in sorted(grouped.items(), key=lambda item: block_order(item[0])):
        values = {json.dumps(v) for v in members.values()}
        if len(values) == 1:
            parts.append(f"{short_name(k)}={_fmt(next(iter(members.values())))}")
        else:
            parts.extend(f"{short_name(layer)}={_fmt(v)}" for layer, v in members.items())
    return " ".join(parts)


def block_order(key: str) -> tuple[int, int, str]:
    """Down blocks, then the mid block, then up blocks, in UNet order."""
    kind = 0 if key.startswith("down_blocks") else 1 if key.startswith("mid_block") else 2
    parts = key.split(".")
    index = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return kind, index, key


def short_name(name: str) -> str:
    """`down_blocks.2.resnets.0.conv1` -> `DB2.r0.conv1`: the names tables and figures print."""
    return (
        name.replace("down_blocks.", "DB")
        .replace("up_blocks.", "UB")
        .replace("mid_block", "MB")
        .replace(".downsamplers", ".ds")
        .replace(".upsamplers", ".us")
        .replace(".resnets.", ".r")
    )


def _fmt(factor) -> str:
    return "x".join(f"{f:g}" for f in factor) if isinstance(factor, list) else f"{factor:g}"


def presets_json(family: str | None = None) -> str:
    """The shipped presets as JSON plans (with their family), name by name."""
    return json.dumps({name: {"family": fam, **plan.to_dict()} for name, (fam, plan) in _presets(family)}, indent=2)


def presets_table(family: str | None = None) -> str:
    """One line per shipped preset: size, windows, decay, NDCFG and dispersion."""
    header = ("name", "family", "size (WxH)", "dilate stop", "progressive", "NDCFG stop", "dispersion")
    rows = [header]
    for name, (fam, plan) in _presets(family):
        size = f"{plan.target[1]}x{plan.target[0]}" if plan.target else "-"
        stops = sorted({r.stop for r in plan.main})
        progressive = "yes" if any(r.progressive for r in plan.main) else "no"
        rows.append(
            (
                name,
                fam,
                size,
                "/".join(f"{s:g}" for s in stops) or "-",
                progressive,
                f"{plan.ndcfg_stop:g}" if plan.damped and plan.ndcfg_stop else "off",
                f"{len(plan.dispersion)} blocks (stop {plan.dispersion_stop:g})" if plan.dispersion else "-",
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _presets(family: str | None) -> list[tuple[str, tuple[str, Plan]]]:
    table = sorted(presets().items(), key=lambda item: (item[1][0], item[0]))
    return [(n, fp) for n, fp in table if family is None or fp[0] == family]
