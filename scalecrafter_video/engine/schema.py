"""One schema for plans written by hand: preset TOML files and plan dicts (`Plan.from_dict`).

Every key is checked for its type and range before a Plan is built, so a badly typed value is a
one-line ScaleCrafterError naming the key, what it got and what it expects, never a ValueError
from deep inside, a string split into characters, or the string "false" taken as true.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ScaleCrafterError

REFERENCE_STEPS = 50  # windows are in steps of the reference DDIM-50 schedule
MAX_FACTOR = 64.0
UNITS = ("pixels", "samples")


def is_number(value) -> bool:
    """A finite int or float (not a bool): what a numeric setting may be."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _factor(value) -> bool:
    sides = value if isinstance(value, (list, tuple)) and len(value) == 2 else [value]
    return all(is_number(f) and 1 <= f <= MAX_FACTOR for f in sides)


def _names(value) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) and v for v in value)


def _size(value) -> bool:
    return value is None or (isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_positive_int, value)))


@dataclass(frozen=True)
class Field:
    """A key's type: the check and what the error says it expects."""

    expects: str
    check: Callable[[object], bool]


TEXT = Field("a string", lambda v: isinstance(v, str))
NAME = Field("a non-empty string", lambda v: isinstance(v, str) and bool(v.strip()))
BOOL = Field("true or false", lambda v: isinstance(v, bool))
STOP = Field(
    f"a number of reference DDIM-50 steps in [0, {REFERENCE_STEPS}]",
    lambda v: is_number(v) and 0 <= v <= REFERENCE_STEPS,
)
PIXELS = Field("a positive integer (pixels)", _positive_int)
POSITIVE = Field("a positive integer", _positive_int)
FACTOR = Field(f"a re-dilation factor: a number in [1, {MAX_FACTOR:g}] or [height, width] such numbers", _factor)
LAYERS = Field("a list of layer names or block prefixes (strings)", _names)
SIZE = Field("[height, width] as positive integers, or null", _size)
UNIT = Field(" or ".join(f"'{u}'" for u in UNITS), lambda v: v in UNITS)
TABLE = Field("a table of keys", lambda v: isinstance(v, dict))
FACTORS = Field("a table of block prefix = factor", lambda v: isinstance(v, dict))
RULES = Field("a list of rules {selector, factor, stop, progressive}", lambda v: isinstance(v, (list, tuple)))
RULE = Field("a rule {selector, factor, stop, progressive}", lambda v: isinstance(v, dict))

PRESET_TOP = {
    "name": NAME,
    "family": NAME,
    "height": PIXELS,
    "width": PIXELS,
    "description": TEXT,
    "main": TABLE,
    "damped": TABLE,
    "dispersion": TABLE,
}
PRESET_REQUIRED = ("name", "family", "height", "width", "main")
PRESET_SECTION = {"stop": STOP, "progressive": BOOL, "factors": FACTORS}
PRESET_DISPERSION = {"stop": STOP, "layers": LAYERS}

PLAN_TOP = {
    "name": NAME,
    "source": TEXT,
    "units": UNIT,
    "base": SIZE,
    "target": SIZE,
    "num_train_timesteps": POSITIVE,
    "main": RULES,
    "damped": RULES,
    "ndcfg_stop": STOP,
    "dispersion": LAYERS,
    "dispersion_stop": STOP,
    "notes": TEXT,
}
PLAN_RULE = {"selector": NAME, "factor": FACTOR, "stop": STOP, "progressive": BOOL}
PLAN_RULE_REQUIRED = ("selector", "factor", "stop")


def _shown(value) -> str:
    kind = {
        bool: "a boolean",
        str: "a string",
        int: "an integer",
        float: "a number",
        list: "a list",
        tuple: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)
    return f"{value!r} ({kind})"


class _Problems:
    """Every bad key of one document, reported together as one line."""

    def __init__(self, where: str):
        self.where, self.found = where, []

    def keys(self, data: dict, fields: dict[str, Field], prefix: str, required=()) -> None:
        unknown = sorted(k for k in data if k not in fields)
        if unknown:
            self.found.append(
                f"unknown key(s) {[prefix + k for k in unknown]}; allowed: {sorted(prefix + k for k in fields)}"
            )
        for key in required:
            if key not in data:
                self.found.append(f"missing key '{prefix + key}'")
        for key, field in fields.items():
            if key in data:
                self.value(prefix + key, data[key], field)

    def value(self, key: str, value, field: Field) -> bool:
        if field.check(value):
            return True
        self.found.append(f"'{key}' must be {field.expects}, got {_shown(value)}")
        return False

    def raise_any(self) -> None:
        if self.found:
            raise ScaleCrafterError(f"{self.where}: " + "; ".join(self.found))


def _document(data, where: str, what: str) -> _Problems:
    if not isinstance(data, dict):
        raise ScaleCrafterError(f"{where}: {what} must be a table of keys (a dict), got {_shown(data)}")
    return _Problems(where)


def check_preset(data, where: str) -> None:
    """A parsed preset file: top keys, the [main] / [damped] sections and [dispersion], by type."""
    problems = _document(data, where, "a preset")
    problems.keys(data, PRESET_TOP, "", PRESET_REQUIRED)
    for section in ("main", "damped"):
        table = data.get(section)
        if isinstance(table, dict):
            needs_stop = section == "main" or bool(table)  # an empty [damped] means no NDCFG
            problems.keys(table, PRESET_SECTION, f"{section}.", ("stop",) if needs_stop else ())
            factors = table.get("factors")
            if isinstance(factors, dict):
                for selector, factor in factors.items():
                    problems.value(f'{section}.factors."{selector}"', factor, FACTOR)
    if isinstance(data.get("dispersion"), dict):
        problems.keys(data["dispersion"], PRESET_DISPERSION, "dispersion.")
    problems.raise_any()


def check_plan_dict(data, where: str = "plan dict") -> None:
    """A plan dict (`Plan.to_dict`'s shape): top keys and every rule of main and damped, by type."""
    problems = _document(data, where, "a plan")
    problems.keys(data, PLAN_TOP, "")
    for variant in ("main", "damped"):
        rules = data.get(variant)
        if not isinstance(rules, (list, tuple)):
            continue
        for i, rule in enumerate(rules):
            if problems.value(f"{variant}[{i}]", rule, RULE):
                problems.keys(rule, PLAN_RULE, f"{variant}[{i}].", PLAN_RULE_REQUIRED)
    problems.raise_any()
