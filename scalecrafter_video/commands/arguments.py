"""Command-line values several of scv's commands read: sizes (WIDTHxHEIGHT) and prompt files, each
refused with a one-line `ScaleCrafterError`, and the cascade's flags (`scv generate`, `upscale`, `sweep`)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ..engine.errors import ScaleCrafterError
from ..jobs.options import COLOR_FIXES, MAX_SIDE, STAGE_PLANS, GenerateOptions, restart_problem, restart_text


def parse_res(text: str) -> tuple[int, int]:
    """'2048x1024' -> (width 2048, height 1024); one-line errors for anything else."""
    raw = str(text).strip().lower().replace("×", "x").replace("*", "x")
    parts = raw.split("x")
    # ASCII digits only: str.isdigit() passes '²' and signs like '+-64', which int() then refuses
    if len(parts) != 2 or not all(re.fullmatch(r"[+-]?[0-9]+", p.strip()) for p in parts):
        raise ScaleCrafterError(f"--res {text!r} is not WIDTHxHEIGHT, e.g. 2048x1024 (2048 wide, 1024 high)")
    width, height = (int(p) for p in parts)
    for side, value in (("width", width), ("height", height)):
        if value <= 0:
            raise ScaleCrafterError(f"--res {text}: {side} must be positive, got {value}")
        if value > MAX_SIDE:
            raise ScaleCrafterError(f"--res {text}: {side} {value} is larger than the maximum of {MAX_SIDE} pixels")
    return width, height


def max_scale_argument(text: str) -> float:
    """--max-scale X: a number of at least 1 (the scale per side over the model's base size)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--max-scale must be a number, got {text!r}") from None
    if not value >= 1 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"--max-scale must be a finite number of at least 1, got {text!r}")
    return value


def read_prompts(path: str | Path) -> list[str]:
    """One prompt per line from a file, or from standard input for '-'. A UTF-8 byte-order mark
    is dropped; blank lines and lines starting with '#' are skipped."""
    if str(path) == "-":
        where = "--prompts - (standard input)"
        if sys.stdin is None:
            raise ScaleCrafterError(f"{where}: there is no standard input")
        buffer = getattr(sys.stdin, "buffer", None)
        data = buffer.read() if buffer is not None else sys.stdin.read().encode("utf-8")
    else:
        path = Path(path)
        where = f"--prompts file '{path}'"
        if not path.exists():
            raise ScaleCrafterError(f"{where} does not exist")
        if not path.is_file():
            raise ScaleCrafterError(f"--prompts '{path}' is not a file")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ScaleCrafterError(f"cannot read {where}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ScaleCrafterError(f"{where} is not UTF-8 text") from None
    if "\x00" in text:
        raise ScaleCrafterError(f"{where} is not a text file")
    prompts = [line.strip() for line in text.splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise ScaleCrafterError(f"{where} has no prompts (one per line; '#' starts a comment)")
    return prompts


def restart_argument(text: str) -> float | tuple[float, ...]:
    """--restart: one fraction for every cascade stage ("0.5") or one per stage in order ("0.5,0.8";
    the last serves the stages beyond), each above 0 and below 1."""
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"restart must be a fraction or fractions separated by commas (0.5 or 0.5,0.8), got {text!r}"
            ) from None
        if problem := restart_problem(value):
            raise argparse.ArgumentTypeError(problem)
        values.append(value)
    return values[0] if len(values) == 1 else tuple(values)


def add_cascade_options(group, d: GenerateOptions, needs: str = "", *, defaults: bool = False) -> None:
    """The cascade's flags (--restart, --skip-exponent, --stage-plan, --color-fix) on `group`: each
    defaults to None (the command tells a flag given from one left out, `needs` saying what it needs)
    or, with `defaults`, to `d`'s value."""

    def default(name: str):
        return getattr(d, name) if defaults else None

    group.add_argument(
        "--restart",
        type=restart_argument,
        default=default("restart"),
        metavar="FRACTION",
        help=f"the fraction of the schedule each stage skips: it is re-noised to step "
        f"int(FRACTION * steps) and denoised from there; FRACTION,FRACTION,...: one per stage, the "
        f"last for the stages beyond (default {restart_text(d.restart)}; FreeScale 0.3{needs})",
    )
    group.add_argument(
        "--skip-exponent",
        type=float,
        default=default("skip_exponent"),
        metavar="E",
        help=f"the skip residual mixes the noised stage input in with weight cos_factor ** E "
        f"(default {d.skip_exponent:g}, FreeScale's{needs})",
    )
    group.add_argument(
        "--stage-plan",
        default=default("stage_plan"),
        choices=STAGE_PLANS,
        help=f"each stage's method: full (ScaleCrafter's plan for the stage's size), restrained "
        f"(FreeScale's: down_blocks.1 downsampler, down_blocks.2 and mid-block resnets, 35 of 50 "
        f"steps) or none (direct) (default {d.stage_plan}{needs})",
    )
    group.add_argument(
        "--color-fix",
        default=default("color_fix"),
        choices=COLOR_FIXES,
        help=f"adain: each stage's frames keep their input's colours (per-channel mean and spread, "
        f"as diffusion upscalers fix colour shifts); wavelet: their input's coarse band (colours and "
        f"layout coarser than about 30 px); none: as denoised (default {d.color_fix}{needs})",
    )
