"""Preset files and plan resolution for a model and a target size.

The shipped presets are package data (`scalecrafter_video/configs/*.toml`, read with
importlib.resources, so they work from a wheel), packed from the checkout's top-level `configs/`
(the package's `configs` is a link to it). A preset is one reference configuration: family,
target size, main and damped rule sets with their windows, and the dispersion layers. Every
layer it names is checked against the family's real UNet (built on the meta device): a name
that does not exist is an error, never a skip. A preset named for a model of another family,
another base size or another target size is an error too; a Plan object is applied as written
(that is how to force a preset elsewhere).
"""

from __future__ import annotations

import hashlib
import tomllib
from functools import cache
from importlib import resources
from pathlib import Path

from .errors import ScaleCrafterError
from .families import get_family, meta_unet
from .layers import spatial_convs
from .plan import Plan, Rule, derive_plan
from .schema import check_preset

PRESET_FOLDER = "configs"  # inside the package


def _rules(section: dict) -> tuple[Rule, ...]:
    stop, progressive = float(section["stop"]), section.get("progressive", False)
    return tuple(Rule(sel, f, stop, progressive) for sel, f in section.get("factors", {}).items())


def plan_from_preset(data: dict, where: str) -> Plan:
    """Build a Plan from a parsed preset table, its keys checked by type (`schema.check_preset`);
    no layer check: see `validate_preset`."""
    check_preset(data, where)
    family = get_family(data["family"])
    damped = data.get("damped", {})
    dispersion = data.get("dispersion", {})
    return Plan(
        name=data["name"],
        main=_rules(data["main"]),
        damped=_rules(damped) if damped else (),
        ndcfg_stop=float(damped.get("stop", 0.0)),
        dispersion=tuple(dispersion.get("layers", ())),
        dispersion_stop=float(dispersion.get("stop", 0.0)),
        base=(family.base_height, family.base_width),
        target=(data["height"], data["width"]),
        units="pixels",
        source="preset",
        notes=data.get("description", ""),
    )


def _parse_preset(text: str, path: str) -> tuple[str, Plan]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScaleCrafterError(f"preset file '{path}' is not valid TOML: {exc}") from None
    return data.get("family", ""), plan_from_preset(data, f"preset file '{path}'")


def load_preset_file(path: str | Path) -> tuple[str, Plan]:
    """(family, plan) from a preset file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScaleCrafterError(f"preset file '{path}' does not exist") from None
    except UnicodeDecodeError:
        raise ScaleCrafterError(f"preset file '{path}' is not UTF-8 text (a preset is a TOML file)") from None
    except OSError as exc:
        raise ScaleCrafterError(f"cannot read preset file '{path}': {exc.strerror or exc}") from None
    return _parse_preset(text, str(path))


def shipped_preset_files() -> dict[str, str]:
    """File name -> text of every preset shipped in the package."""
    folder = resources.files("scalecrafter_video") / PRESET_FOLDER
    return {f.name: f.read_text(encoding="utf-8") for f in folder.iterdir() if f.name.endswith(".toml")}


def preset_sha256(preset: str | Path) -> str | None:
    """SHA-256 of what a preset argument reads: the file of a path (as `load_preset` tells a file from a
    name), or the shipped file that defines a shipped name, so an edited preset gives new output
    names. None for "auto", an unknown name or an unreadable file (those fail where they load)."""
    if not isinstance(preset, (str, Path)) or preset == "auto":
        return None
    if isinstance(preset, Path) or str(preset).endswith(".toml") or Path(preset).is_file():
        try:
            return hashlib.sha256(Path(preset).read_bytes()).hexdigest()
        except (OSError, ValueError):
            return None
    for text in shipped_preset_files().values():
        try:
            name = tomllib.loads(text).get("name")
        except tomllib.TOMLDecodeError:
            continue
        if name == str(preset):
            return hashlib.sha256(text.encode("utf-8")).hexdigest()
    return None


@cache
def presets() -> dict[str, tuple[str, Plan]]:
    """All shipped presets by name: (family, plan)."""
    found = {}
    for file_name, text in sorted(shipped_preset_files().items()):
        family, plan = _parse_preset(text, f"scalecrafter_video/{PRESET_FOLDER}/{file_name}")
        if plan.name in found:
            raise ScaleCrafterError(f"two preset files define '{plan.name}'")
        found[plan.name] = (family, plan)
    return found


@cache
def family_layers(family: str) -> tuple[str, ...]:
    """Eligible conv names of the family's real UNet (meta device, no weights)."""
    return tuple(spatial_convs(meta_unet(family)))


def validate_preset(name: str) -> None:
    family, plan = presets()[name]
    plan.validate(list(family_layers(family)), f"preset '{name}'")


def get_preset(name: str) -> tuple[str, Plan]:
    table = presets()
    if name not in table:
        import difflib

        close = difflib.get_close_matches(name, list(table), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "run `scv presets` to list them"
        raise ScaleCrafterError(f"unknown preset '{name}': {hint}")
    return table[name]


def preset_type_error(preset) -> ScaleCrafterError:
    return ScaleCrafterError(
        f"preset must be 'auto', a preset name, a .toml path, a plan dict or a Plan, got {preset!r} "
        f"({type(preset).__name__})"
    )


def load_preset(preset: str | Path) -> tuple[str, Plan]:
    """(family, plan) of a preset file (a Path, a name ending in .toml, or an existing file) or a shipped name."""
    if not isinstance(preset, (str, Path)):
        raise preset_type_error(preset)
    if isinstance(preset, Path) or str(preset).endswith(".toml") or Path(preset).is_file():
        return load_preset_file(preset)
    return get_preset(str(preset))


def preset_argument(preset: str, force: bool) -> str | Plan:
    """What a front end hands to `apply_scalecrafter`: the preset as named (checked there against
    the model), or with `force` (--force-preset) its Plan, which is applied as written."""
    return load_preset(preset)[1] if force and preset != "auto" else preset


def _fits_transposed(plan: Plan, height: int, width: int) -> bool:
    isotropic = all(r.factor[0] == r.factor[1] for r in plan.main + plan.damped)
    return plan.target == (width, height) and isotropic


def find_reference_preset(family: str, height: int, width: int) -> Plan | None:
    """The shipped preset of this family for exactly this size (either orientation if isotropic)."""
    for fam, plan in presets().values():
        if fam != family or plan.target is None:
            continue
        if plan.target == (height, width):
            return plan
    for fam, plan in presets().values():
        if fam == family and _fits_transposed(plan, height, width):
            return plan
    return None


def check_preset_fits(
    plan: Plan, preset_family: str, *, family: str | None, base: tuple[int, int], units: str, height: int, width: int
) -> None:
    """A preset's factors are tuned for its family, its base size and its target size: anywhere
    else it is a one-line error (the family is compared only when the model's is known)."""
    th, tw = plan.target or (height, width)
    what = f"preset '{plan.name}' ({preset_family}, {tw}x{th})"
    force = "or pass --force-preset to apply it anyway (API: pass the preset's Plan)"
    if family is not None and preset_family != family:
        raise ScaleCrafterError(
            f"{what} is for family '{preset_family}' but the model is '{family}': "
            f"pick a {family} preset or --preset auto, {force}"
        )
    if units != plan.units:
        raise ScaleCrafterError(
            f"{what} sizes are in {plan.units}, but this model is sized in {units} (a bare UNet does not know its "
            f"VAE): patch the pipeline instead, or pass a plan dict with units='{units}' (API), {force}"
        )
    if plan.base is not None and tuple(plan.base) != tuple(base):
        pb = f"{plan.base[1]}x{plan.base[0]} {plan.units}" if plan.base else plan.units
        raise ScaleCrafterError(
            f"{what} is written for a model trained at {pb}, but this one's base is {base[1]}x{base[0]} {units}: "
            f"use --preset auto, {force}"
        )
    if plan.target is not None and plan.target != (height, width) and not _fits_transposed(plan, height, width):
        raise ScaleCrafterError(f"{what} is for {tw}x{th}, not {width}x{height}: use --preset auto, {force}")


def resolve_plan(
    preset: str | Path | dict | Plan,
    *,
    height: int,
    width: int,
    base: tuple[int, int],
    levels: int,
    family: str | None = None,
    units: str = "pixels",
    progressive: bool | None = None,
) -> Plan:
    """Turn a preset argument into a Plan for a `height` x `width` target; `progressive` not None
    switches every rule's decay on or off (`Plan.with_progressive`).

    "auto": the family's reference preset for exactly this size if there is one, else the plan
    derived from the general rule (`derive_plan`). A name: a shipped preset. A path: a preset
    file. Both must fit the model's family, base and this target size (`check_preset_fits`).
    A dict: a custom plan (`Plan.from_dict`). A Plan: itself, as written.
    """
    plan = _resolve(preset, height=height, width=width, base=base, levels=levels, family=family, units=units)
    return plan if progressive is None else plan.with_progressive(progressive)


def _resolve(preset, *, height, width, base, levels, family, units) -> Plan:
    if isinstance(preset, Plan):
        return preset
    if isinstance(preset, dict):
        return Plan.from_dict(preset)
    if not isinstance(preset, (str, Path)):
        raise preset_type_error(preset)
    if preset == "auto":
        if family is not None and units == "pixels":
            found = find_reference_preset(family, height, width)
            if found is not None:
                return found
        return derive_plan(levels, base, (height, width), units=units)
    fam, plan = load_preset(preset)
    check_preset_fits(plan, fam, family=family, base=base, units=units, height=height, width=width)
    return plan
