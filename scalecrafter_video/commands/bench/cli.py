"""`scv bench`: the parser and the command (imports torch only when it runs)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ...engine.errors import ScaleCrafterError
from ...jobs.options import DEFAULT_RESTART, restart_text
from ..arguments import restart_argument
from . import CASCADES, VARIANTS

REAL = ("sd15", "sd21", "sdxl", "animatediff", "modelscope")
TINY = ("tiny-sd", "tiny-sdxl", "tiny-video", "tiny-video3d")
TINY_STEPS, TINY_FRAMES = 4, 2
TINY_SIZE = "256x256"  # 4x per side of the tiny models' 64 px: the NDCFG window is open

EXAMPLES = """\
examples:
  scv bench --flops                                    # whole-run FLOPs of every family, no weights, no GPU
  scv bench --flops --family sdxl --res 4096x4096 --json
  scv bench --flops --family sd15 --res 2048x2048 --variants ndcfg cascade cascade-restrained cascade-none
  scv bench --family sd15 --res 2048x2048              # step and whole-run times, random weights (GPU)
  scv bench --tiny --json                              # the timing mode on the CPU with tiny models (CI)
  scv bench --gpu-suite --out out/bench                # the GPU benchmark (scripts/gpu_bench.sh)

variants: direct (plain sampling), redilate (re-dilation only), ndcfg (the preset with noise-damped
CFG, prefix reuse on), ndcfg-noreuse (the whole damped pass), ndcfg+dispersion.
--flops only: cascade (scv generate --cascade: the base size, then at most 2x per side per stage,
each later stage restarting at step int(--restart * steps) under the plan for its size, NDCFG
included), cascade-restrained (FreeScale's restrained plan per stage), cascade-none (direct
stages); all stages summed, the ratio to direct at the target size.
"""


def _positive(name: str, kind=int):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be positive, got {text}")
        return value

    return parse


def add_bench_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "bench",
        help="what ScaleCrafter costs: FLOPs, time per step and per run, peak memory",
        description="Benchmark ScaleCrafter against direct inference. --flops counts whole-run FLOPs on the "
        "meta device (no weights, no GPU); otherwise random-weight pipelines of the real shapes are timed "
        "per step and end to end with the VAE decode.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = p.add_argument_group("mode")
    only = mode.add_mutually_exclusive_group()
    only.add_argument("--flops", action="store_true", help="whole-run FLOPs and ratios to direct (meta device)")
    only.add_argument(
        "--gpu-suite",
        action="store_true",
        help="the GPU benchmark: time and memory targets, every variant, channels_last, torch.compile (needs --out)",
    )
    mode.add_argument(
        "--tiny",
        action="store_true",
        help=f"tiny offline models on the CPU (timing: {TINY_STEPS} steps, {TINY_FRAMES} frames unless given)",
    )

    what = p.add_argument_group("what to measure")
    what.add_argument(
        "--family",
        nargs="+",
        choices=REAL + TINY,
        metavar="NAME",
        help=f"models: {', '.join(REAL)} (real shapes) or {', '.join(TINY)} "
        "(default: every family for --flops, sd15 for timing)",
    )
    what.add_argument("--res", nargs="+", metavar="WxH", help="sizes WIDTHxHEIGHT (default: per family)")
    what.add_argument("--frames", type=_positive("frames"), default=None, help="video frames (default 16)")
    what.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS) + list(CASCADES),
        default=None,
        metavar="VARIANT",
        help="variants to measure (default: all; the cascade ones with --flops only)",
    )
    what.add_argument("--steps", type=_positive("steps"), default=None, help="sampling steps (default 50)")
    what.add_argument(
        "--scheduler",
        default="ddim",
        choices=("ddim", "dpm++", "euler", "euler-a", "pndm", "unipc"),
        help="--flops: the sampler whose timesteps the plan follows (default ddim)",
    )
    what.add_argument(
        "--restart",
        type=restart_argument,
        default=DEFAULT_RESTART,
        metavar="FRACTION",
        help="--flops, cascade variants: the fraction of the schedule each stage above the base skips, "
        f"or one per stage (default {restart_text(DEFAULT_RESTART)}, as scv generate --cascade)",
    )

    timing = p.add_argument_group("timing")
    timing.add_argument(
        "--whole-run",
        nargs="*",
        choices=list(VARIANTS),
        default=["ndcfg"],
        metavar="VARIANT",
        help="variants also run end to end with the VAE decode (default ndcfg; none: no values)",
    )
    timing.add_argument("--repeats", type=_positive("repeats"), default=3, help="timed calls per step (median)")
    timing.add_argument("--warmup", type=_positive("warmup"), default=1, help="untimed calls first")
    timing.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (--tiny: cpu)")
    timing.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "float32", "float16", "bfloat16"),
        help="auto: float16 on CUDA, float32 on the CPU",
    )
    timing.add_argument("--channels-last", action="store_true", help="UNet weights and sample in channels_last")
    timing.add_argument(
        "--budget-s",
        type=_positive("budget-s", float),
        default=280.0,
        help="--gpu-suite: seconds after which the optional parts (torch.compile) are skipped",
    )

    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help='print JSON {"rows": [...]} instead of a Markdown table')
    out.add_argument("--out", metavar="DIR", help="also write bench.json and bench.md (flops.json/.md) there")
    out.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    out.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    return p


def _sizes(args, families: list[str], defaults) -> dict[str, list[tuple[int, int]]]:
    from ...engine.families import get_family
    from ...jobs.checks import check_size
    from ..arguments import parse_res
    from .models import bench_model

    sizes = {}
    for family in families:
        model = bench_model(family)
        texts = args.res or ([TINY_SIZE] if model.tiny else list(defaults(family)))
        multiple = 64 if model.tiny else get_family(family).size_multiple
        sizes[family] = []
        for text in texts:
            width, height = parse_res(text)
            check_size(height, width, multiple)
            sizes[family].append((width, height))
    return sizes


def _targets(out_dir: Path, names: list[str], overwrite: bool) -> None:
    from ...outputs import files as outputs

    outputs.prepare_out_dir(out_dir)
    outputs.check_targets([out_dir / n for n in names], overwrite)


def run_bench(args: argparse.Namespace, argv: list[str]) -> int:
    out_dir = Path(args.out) if args.out else None
    if args.gpu_suite:
        return _run_suite(args, out_dir)
    if args.flops:
        return _run_flops(args, out_dir)
    return _run_timing(args, out_dir)


def _frames(args) -> int:
    if args.frames is not None:
        return args.frames
    return TINY_FRAMES if args.tiny else 16


def _steps(args) -> int:
    if args.steps is not None:
        return args.steps
    return TINY_STEPS if args.tiny and not args.flops else 50


def _print(payload: dict, markdown: str, as_json: bool) -> None:
    print(json.dumps(payload) if as_json else markdown)


def _run_flops(args, out_dir: Path | None) -> int:
    from .report import flops_markdown, write_results
    from .run import FLOP_SIZES, flop_rows

    families = args.family or (list(TINY) if args.tiny else list(REAL))
    sizes = _sizes(args, families, lambda f: FLOP_SIZES[f])
    variants = ["direct"] + [v for v in args.variants or [*VARIANTS, *CASCADES] if v != "direct"]
    if out_dir:
        _targets(out_dir, ["flops.json", "flops.md"], args.overwrite)
    rows = flop_rows(
        families, sizes, _frames(args), _steps(args), args.scheduler, variants, args.progress, args.restart
    )
    payload, markdown = {"rows": rows}, flops_markdown(rows)
    if out_dir:
        write_results(out_dir, "flops", payload, markdown)
    _print(payload, markdown, args.json)
    return 0


def _device_dtype(args):
    import torch

    from ...jobs.loading import resolve_device, resolve_dtype

    device = resolve_device("cpu" if args.tiny and args.device == "auto" else args.device)
    return torch.device(device), resolve_dtype(args.dtype, device)


def _timed_variants(variants: list[str] | None) -> list[str]:
    cascades = [v for v in variants or [] if v in CASCADES]
    if cascades:
        raise ScaleCrafterError(f"{', '.join(cascades)}: the cascade variants are counted by --flops only")
    return variants or list(VARIANTS)


def _run_timing(args, out_dir: Path | None) -> int:
    from .models import bench_model
    from .report import timing_markdown, write_results
    from .run import TIMING_SIZES, timing_rows
    from .timing import Case

    variants = _timed_variants(args.variants)
    families = args.family or (list(TINY) if args.tiny else ["sd15"])
    sizes = _sizes(args, families, lambda f: [TIMING_SIZES[f]])
    frames = _frames(args)
    cases = [Case(m, w, h, frames if m.video else 0) for m in map(bench_model, families) for w, h in sizes[m.name]]
    device, dtype = _device_dtype(args)
    if out_dir:
        _targets(out_dir, ["bench.json", "bench.md"], args.overwrite)

    def save(rows: list[dict]) -> None:
        if out_dir:
            write_results(out_dir, "bench", {"rows": rows}, timing_markdown(rows))

    rows = timing_rows(
        cases,
        variants,
        args.whole_run,
        steps=_steps(args),
        device=device,
        dtype=dtype,
        warmup=args.warmup,
        repeats=args.repeats,
        channels_last=args.channels_last,
        progress=args.progress,
        on_row=save,
    )
    _print({"rows": rows}, timing_markdown(rows), args.json)
    return 0


def _run_suite(args, out_dir: Path | None) -> int:
    import torch

    from .suite import run_suite

    if out_dir is None:
        raise ScaleCrafterError("--gpu-suite writes its results to a folder: pass --out DIR")
    if not args.tiny and not torch.cuda.is_available():
        raise ScaleCrafterError("--gpu-suite needs a CUDA GPU (torch sees none); add --tiny for the CPU version")
    _targets(out_dir, ["bench.json", "bench.md"], args.overwrite)
    result = run_suite(out_dir, tiny=args.tiny, steps=_steps(args), budget_s=args.budget_s, progress=args.progress)
    _print(result, (out_dir / "bench.md").read_text(), args.json)
    return 0
