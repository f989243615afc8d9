"""`scv`: generate high-resolution images and videos with ScaleCrafter, inspect plans and presets.

Every user error is a `ScaleCrafterError`, printed as one line `scv: error: ...` with exit code 2
(argparse mistakes too); Ctrl-C exits 130; a reader of standard output that goes away (`| head`)
stops it quietly with 141; tracebacks only with --debug. Each subcommand is a small function taking
the parsed arguments, so tests can call `main([...])` in-process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

from .. import __version__
from ..engine.errors import ScaleCrafterError, one_line
from ..engine.families import FAMILIES
from ..jobs.family import SAMPLING
from ..jobs.options import (
    DTYPES,
    METHODS,
    SCHEDULERS,
    VAE_TILING,
    GenerateOptions,
)
from ..outputs.files import path_argument
from .arguments import add_cascade_options, max_scale_argument, parse_res, read_prompts
from .bench.cli import add_bench_parser, run_bench
from .demo.cli import add_demo_parser, run_demo
from .evaluation.cli import add_eval_parser, run_eval_command
from .sweep.cli import add_sweep_parser, run_sweep_command
from .ui.cli import add_ui_parser, run_ui_command

GENERATE_EXAMPLES = """\
examples:
  scv generate --model sd15 --prompt "a corgi on a beach" --res 2048x2048
  scv generate --model sdxl --prompts prompts.txt --res 4096x2048 --seed 7 --out out/sdxl
  scv generate --model sd21 --prompt "a castle" --res 1024x1024 --method direct   # baseline
  scv generate --model tiny-sd --res 128x128 --steps 4                            # offline smoke test (noise)
  scv generate --video --prompt "waves at sunset" --res 1024x1024 --frames 16 --fps 8
  scv generate --video --model shapes32-motion --prompt circle --res 64x64 --cascade  # motion of the 32 px clip
  cat prompts.txt | scv generate --prompts - --res 1024x1024 --skip-existing      # resume a batch

--res is WIDTHxHEIGHT: 2048x1024 is 2048 pixels wide and 1024 high. Output names hold the prompt,
size, method, seed and a hash of every other setting that changes the output.
"""

UPSCALE_EXAMPLES = """\
examples:
  scv upscale photo.png --res 2048x2048 --prompt "a corgi on a beach"
  scv upscale clip.mp4 --res 1024x1024 --prompt "waves at sunset" --restart 0.5
  scv upscale circle.mp4 --model shapes32-motion --prompt circle --res 64x64

The input's size must be a multiple of what the model needs (else it is resized to the nearest
valid size, with a notice). Outputs are named like `scv generate`'s: the input's name, size,
"upscale", seed and a hash of the input's bytes and every setting.
"""

PLAN_EXAMPLES = """\
examples:
  scv plan --family sd15 --res 2048x2048 --steps 50
  scv plan --family sdxl --res 4096x2048 --steps 30 --scheduler dpm++ --json
  scv plan --family sd21 --res 1536x1024 --steps 50 --preset auto
  scv plan --family sd15 --res 2048x2048 --plot plan.png    # the plan as a heatmap
"""

MAIN_EXAMPLES = """\
commands:
  generate   sample images (or videos with --video) at a resolution above the model's training size
  upscale    upscale your own image or clip (PNG, JPEG, MP4) by the cascade's stages
  plan       print the resolved re-dilation / NDCFG plan per sampling step (no weights needed)
  presets    list the shipped reference presets
  bench      what ScaleCrafter costs: FLOPs (no GPU), time per step and per run, peak memory
  demo       the small shipped demo model (train, generate, metrics), when installed
  sweep      generate a prompts x seeds x methods x sizes grid (resumable, multi-process)
  eval       FID/KID (real, base-size, crops) per method and size of generated images
  ui         a local web app: direct vs ScaleCrafter side by side, plan plots (the `ui` extra)

examples:
  scv generate --model sd15 --prompt "a corgi on a beach" --res 2048x2048
  scv plan --family sd15 --res 2048x2048 --steps 50 --plot plan.png
  scv presets
  scv ui

Run `scv COMMAND --help` for the options of a command.
"""


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: standard output's reader went away


class _ArgumentError(Exception):
    """An argparse usage error, reported like every other error: one line, exit 2."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise _ArgumentError(self.prog, message)


# ---- parsing helpers ------------------------------------------------------------------------
def _positive_int(name: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be at least 1, got {value}")
        return value

    return parse


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be a whole number, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"seed must be between 0 and 2**63-1, got {value}")
    return value


# ---- the parser -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="scv",
        description="ScaleCrafter for diffusers: images and videos far above a UNet's training size, no training.",
        epilog=MAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and library logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_generate(sub)
    _add_upscale(sub)
    _add_plan(sub)
    _add_presets(sub)
    _add_package_command(sub, add_bench_parser, run_bench)
    _add_package_command(sub, add_demo_parser, lambda args, argv: run_demo(args))
    _add_package_command(sub, add_sweep_parser, run_sweep_command)
    _add_package_command(sub, add_eval_parser, run_eval_command)
    _add_package_command(sub, add_ui_parser, run_ui_command)
    return parser


def _debug_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and library logs")


def _add_generate(sub) -> None:
    d = GenerateOptions(prompts=[], height=0, width=0)
    p = sub.add_parser(
        "generate",
        help="sample images (or videos with --video) at a high resolution",
        description="Sample images (or, with --video, videos) above the model's training resolution.",
        epilog=GENERATE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_argument_group("what to generate")
    prompt = what.add_mutually_exclusive_group()
    prompt.add_argument(
        "--prompt", metavar="TEXT", help="the prompt (a class name for the shapes models; the tiny models need none)"
    )
    prompt.add_argument(
        "--prompts", metavar="FILE", help="a text file with one prompt per line ('#' comments); - reads standard input"
    )
    what.add_argument("--res", required=True, metavar="WxH", help="output size WIDTHxHEIGHT in pixels, e.g. 2048x1024")
    what.add_argument("--negative-prompt", metavar="TEXT", default=d.negative_prompt, help="negative prompt")
    _add_loading(p, d, "default sd15 (animatediff with --video)")

    method = p.add_argument_group("method")
    method.add_argument(
        "--method",
        default=d.method,
        choices=METHODS,
        help="scalecrafter (default), direct (plain sampling at the target size) or attn-sf (baseline)",
    )
    _add_plan_options(method, d)

    cascade = p.add_argument_group(
        "cascade",
        "sample at the model's base size, then refine in stages of at most 2x per side (layout and motion "
        "of the base sample, detail of the target size)",
    )
    cascade.add_argument(
        "--cascade",
        action="store_true",
        help="sample by a cascade (its stages' method: --stage-plan; the plan options above apply to the full plan)",
    )
    add_cascade_options(cascade, d, "; needs --cascade")

    samp = p.add_argument_group("sampling")
    _add_sampling(samp, d)
    samp.add_argument(
        "--num-per-prompt",
        type=_positive_int("num-per-prompt"),
        default=d.num_per_prompt,
        metavar="N",
        help="outputs per prompt (default 1)",
    )
    samp.add_argument("--freeu", action="store_true", help="FreeU with the reference parameters of the family")
    samp.add_argument(
        "--vae-tiling",
        default=d.vae_tiling,
        choices=VAE_TILING,
        help="tiled VAE decode (auto: above 1536 px per side, above 1024 for SDXL)",
    )
    samp.add_argument(
        "--force-memory",
        action="store_true",
        help="run even when the memory estimate (latents, UNet activations, VAE decode; checked before "
        "loading) exceeds the device's free memory",
    )

    _add_output(p, d)

    video = p.add_argument_group("video")
    video.add_argument("--video", action="store_true", help="generate videos (default model animatediff)")
    video.add_argument("--frames", type=_positive_int("frames"), default=None, help=f"frames (default {d.frames})")
    video.add_argument(
        "--fps", type=_positive_int("fps"), default=None, help=f"frames per second of the MP4 (default {d.fps})"
    )
    video.add_argument(
        "--motion-adapter",
        metavar="ID",
        default=None,
        help="AnimateDiff motion adapter (hub id or folder; AnimateDiff models only)",
    )
    video.add_argument("--save-frames", action="store_true", help="also write every frame as a PNG")
    video.add_argument("--compare", action="store_true", help="also run direct sampling and write both side by side")
    _debug_flag(p)
    p.set_defaults(_handler=cmd_generate)


def _add_loading(p: argparse.ArgumentParser, d: GenerateOptions, default_model: str):
    load = p.add_argument_group("loading")
    load.add_argument(
        "--model",
        default=None,
        help="sd15, sd21, sdxl, a hub id, a local diffusers folder, or tiny-sd / tiny-sdxl (offline, noise); "
        + default_model,
    )
    load.add_argument(
        "--family",
        default=None,
        choices=tuple(SAMPLING),
        help="the model's family (base size, presets, defaults); needed where the architecture cannot "
        "tell, e.g. a local ModelScope or Zeroscope folder; default: from the model id or architecture",
    )
    load.add_argument(
        "--dtype", default=d.dtype, choices=DTYPES, help="weights dtype (auto: float16 on CUDA, float32 on CPU)"
    )
    load.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:N or mps (default auto)")
    return load


def _add_plan_options(method, d: GenerateOptions) -> None:
    method.add_argument(
        "--preset",
        default=d.preset,
        metavar="NAME|auto|PATH",
        help="auto (reference preset of this exact size, else the derived plan), a preset name "
        "(`scv presets`) or a .toml file",
    )
    method.add_argument(
        "--no-ndcfg", dest="ndcfg", action="store_false", help="ordinary CFG instead of noise-damped CFG"
    )
    method.add_argument(
        "--no-progressive",
        dest="progressive",
        action="store_const",
        const=False,
        default=None,
        help="hold each re-dilation factor for its whole window (the reference 4x plans decay it)",
    )
    method.add_argument(
        "--dispersion",
        action="store_true",
        help="dispersed convolution on the plan's dispersion layers (opt-in, for 16x pixels)",
    )
    method.add_argument(
        "--force-preset",
        action="store_true",
        help="apply --preset even to a model of another family or base size, or at another size "
        "than it was written for (an error otherwise)",
    )
    method.add_argument(
        "--max-scale",
        type=max_scale_argument,
        default=d.max_scale,
        metavar="X",
        help=f"the largest scale per side over the model's base size ScaleCrafter accepts "
        f"(default {d.max_scale:g}; beyond it plans are untested)",
    )


def _add_sampling(samp, d: GenerateOptions) -> None:
    samp.add_argument(
        "--steps", type=_positive_int("steps"), default=d.steps, help=f"sampling steps (default {d.steps})"
    )
    samp.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="classifier-free guidance scale (default: 7.5 SD, 5.0 SDXL, the family's for video)",
    )
    samp.add_argument("--eta", type=float, default=d.eta, help=f"DDIM eta (default {d.eta}, the reference setting)")
    samp.add_argument(
        "--scheduler",
        default=d.scheduler,
        choices=tuple(SCHEDULERS),
        help=f"sampler (default {d.scheduler}; the reference presets are tuned on DDIM)",
    )
    samp.add_argument("--seed", type=_seed, default=d.seed, help="seed of the first output; output k uses seed+k")


def _add_output(p: argparse.ArgumentParser, d: GenerateOptions) -> None:
    out = p.add_argument_group("output")
    out.add_argument("--out", default=str(d.out_dir), metavar="DIR", help=f"output folder (default {d.out_dir})")
    exist = out.add_mutually_exclusive_group()
    exist.add_argument("--overwrite", action="store_true", help="replace existing outputs of the same name")
    exist.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave outputs whose file and sidecar exist and do the rest (resume a stopped batch)",
    )
    out.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")


def _add_upscale(sub) -> None:
    d = GenerateOptions(prompts=[], height=0, width=0)
    p = sub.add_parser(
        "upscale",
        help="upscale your own image or clip by the cascade's stages",
        description="Upscale a PNG/JPEG image or an MP4 clip: the cascade's stages (at most 2x per side each, "
        "re-noised to the restart step, denoised with the skip residual) starting from the file instead of a "
        "base-size sample. Clips keep their frame count and fps (audio is dropped).",
        epilog=UPSCALE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT", help="a .png / .jpg image or an .mp4 clip")
    what = p.add_argument_group("what to make")
    what.add_argument("--res", required=True, metavar="WxH", help="output size WIDTHxHEIGHT in pixels, e.g. 2048x2048")
    what.add_argument(
        "--prompt",
        metavar="TEXT",
        help="what the input shows (the class for the shapes models; the tiny models need none)",
    )
    what.add_argument("--negative-prompt", metavar="TEXT", default=d.negative_prompt, help="negative prompt")
    load = _add_loading(p, d, "default sd15 for an image, animatediff for a clip")
    load.add_argument(
        "--motion-adapter",
        metavar="ID",
        default=None,
        help="AnimateDiff motion adapter (hub id or folder; AnimateDiff models, clips only)",
    )
    cascade = p.add_argument_group("stages")
    add_cascade_options(cascade, d)
    _add_plan_options(cascade, d)
    samp = p.add_argument_group("sampling")
    _add_sampling(samp, d)
    samp.add_argument(
        "--vae-tiling",
        default=d.vae_tiling,
        choices=VAE_TILING,
        help="tiled VAE encode and decode (auto: above 1536 px per side, above 1024 for SDXL)",
    )
    samp.add_argument(
        "--force-memory",
        action="store_true",
        help="run even when the memory estimate at --res exceeds the device's free memory",
    )
    _add_output(p, d)
    _debug_flag(p)
    p.set_defaults(_handler=cmd_upscale)


def _add_plan(sub) -> None:
    p = sub.add_parser(
        "plan",
        help="print the resolved plan per sampling step (no weights)",
        description="Print which convs get which re-dilation factor at each sampling step, and the "
        "noise-damped (NDCFG) plan, for a model family and a size. Needs no weights.",
        epilog=PLAN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--family", required=True, choices=tuple(FAMILIES), help="model family")
    p.add_argument("--res", required=True, metavar="WxH", help="target size WIDTHxHEIGHT in pixels")
    p.add_argument("--steps", type=_positive_int("steps"), default=50, help="sampling steps (default 50)")
    p.add_argument(
        "--preset", default="auto", metavar="NAME|auto|PATH", help="auto (default), a preset name or a .toml file"
    )
    p.add_argument(
        "--force-preset",
        action="store_true",
        help="show --preset even for another family or size than it was written for",
    )
    p.add_argument(
        "--scheduler",
        default="ddim",
        choices=tuple(SCHEDULERS),
        help="sampler whose timesteps are used (default ddim, leading spacing, steps_offset 1)",
    )
    p.add_argument("--no-ndcfg", dest="ndcfg", action="store_false", help="show the plan with ordinary CFG")
    p.add_argument(
        "--no-progressive",
        dest="progressive",
        action="store_const",
        const=False,
        default=None,
        help="show the plan with every factor held for its whole window",
    )
    p.add_argument("--json", action="store_true", help='print JSON: {"steps": [{index, timestep, main, damped}, ...]}')
    p.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also draw the plan into FILE.png: factor per layer (rows) per step (columns), main and damped "
        "side by side, NDCFG and dispersion windows marked (needs matplotlib)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")
    _debug_flag(p)
    p.set_defaults(_handler=cmd_plan)


def _add_presets(sub) -> None:
    p = sub.add_parser(
        "presets",
        help="list the shipped reference presets",
        description="List the reference presets shipped with scalecrafter_video.",
    )
    p.add_argument("--family", choices=tuple(FAMILIES), help="only this family")
    p.add_argument("--json", action="store_true", help="print the presets as JSON plans")
    _debug_flag(p)
    p.set_defaults(_handler=cmd_presets)


def _add_package_command(sub, add_parser, handler) -> None:
    """A command whose parser lives with its package (bench, demo, sweep, eval)."""
    p = add_parser(sub)
    _debug_flag(p)
    p.set_defaults(_handler=handler)


# ---- commands -------------------------------------------------------------------------------
VIDEO_ONLY_FLAGS = ("frames", "fps", "motion_adapter", "save_frames", "compare")
CASCADE_FLAGS = ("restart", "skip_exponent", "stage_plan", "color_fix")


def _flags(args: argparse.Namespace, names) -> list[str]:
    return [f"--{name.replace('_', '-')}" for name in names if getattr(args, name, None) not in (None, False)]


def _applies(flags: list[str]) -> str:
    return f"{', '.join(flags)} only appl{'ies' if len(flags) == 1 else 'y'}"


def _job_options(args: argparse.Namespace, argv: list[str], **fields) -> GenerateOptions:
    """The options every job command shares, read from `args`; `fields` gives the rest."""
    d = GenerateOptions(prompts=[], height=0, width=0)
    return GenerateOptions(
        family=args.family,
        negative_prompt=args.negative_prompt,
        preset=args.preset,
        ndcfg=args.ndcfg,
        dispersion=args.dispersion,
        progressive=args.progressive,
        steps=args.steps,
        guidance=args.guidance,
        eta=args.eta,
        scheduler=args.scheduler,
        seed=args.seed,
        out_dir=path_argument(args.out),
        overwrite=args.overwrite,
        skip_existing=args.skip_existing,
        force_memory=args.force_memory,
        force_preset=args.force_preset,
        max_scale=args.max_scale,
        dtype=args.dtype,
        device=args.device,
        vae_tiling=args.vae_tiling,
        progress=args.progress,
        command=["scv", *argv],
        motion_adapter=args.motion_adapter,
        restart=d.restart if args.restart is None else args.restart,
        skip_exponent=d.skip_exponent if args.skip_exponent is None else args.skip_exponent,
        stage_plan=args.stage_plan or d.stage_plan,
        color_fix=args.color_fix or d.color_fix,
        **fields,
    )


def cmd_generate(args: argparse.Namespace, argv: list[str]) -> int:
    from ..jobs.registry import default_frames, default_prompt

    given = _flags(args, VIDEO_ONLY_FLAGS)
    if given and not args.video:
        raise ScaleCrafterError(f"{_applies(given)} to videos: add --video")
    given = _flags(args, CASCADE_FLAGS)
    if given and not args.cascade:
        raise ScaleCrafterError(f"{_applies(given)} to a cascade: add --cascade")
    path_argument(args.out)
    width, height = parse_res(args.res)
    model = args.model or ("animatediff" if args.video else "sd15")
    if args.prompt is None and args.prompts is None:
        args.prompt = default_prompt(model)
    prompts = [args.prompt] if args.prompt is not None else read_prompts(args.prompts)
    if args.prompt is not None and not args.prompt.strip():
        raise ScaleCrafterError("--prompt is empty")
    opts = _job_options(
        args,
        argv,
        prompts=prompts,
        height=height,
        width=width,
        model=model,
        method=args.method,
        num_per_prompt=args.num_per_prompt,
        freeu=args.freeu,
        video=args.video,
        frames=args.frames or default_frames(model, GenerateOptions.frames),
        fps=args.fps or GenerateOptions.fps,
        save_frames=args.save_frames,
        compare=args.compare,
        cascade=args.cascade,
    )
    from ..jobs.generate import run_job

    paths = run_job(opts)
    for path in paths:
        print(path)
    return 0


def cmd_upscale(args: argparse.Namespace, argv: list[str]) -> int:
    from ..jobs.registry import BUILTIN_MODELS, default_prompt
    from ..jobs.upscale import probe_input, run_upscale

    path_argument(args.out)
    width, height = parse_res(args.res)
    probe = probe_input(args.input)  # readable, and an image or a clip, before anything else
    model = args.model or ("animatediff" if probe.video else "sd15")
    if args.motion_adapter and not probe.video:
        raise ScaleCrafterError("--motion-adapter only applies to clips (an .mp4 input)")
    builtin = BUILTIN_MODELS.get(model)
    if args.prompt is None and (builtin is None or (builtin.kind != "tiny" and not builtin.classes)):
        raise ScaleCrafterError("no prompt: pass --prompt TEXT, what the input shows")
    prompt = default_prompt(model) if args.prompt is None else args.prompt
    if not prompt.strip():
        raise ScaleCrafterError("--prompt is empty")
    opts = _job_options(
        args,
        argv,
        prompts=[prompt],
        height=height,
        width=width,
        model=model,
        video=probe.video,
        frames=probe.frames or GenerateOptions.frames,
        fps=probe.fps or GenerateOptions.fps,
        cascade=True,
    )
    for path in run_upscale(opts, probe):
        print(path)
    return 0


def cmd_plan(args: argparse.Namespace, argv: list[str]) -> int:
    from ..engine.plan import idle_notice
    from .describe import format_plan, plan_rows

    width, height = parse_res(args.res)
    plot = _plot_target(args.plot, args.overwrite) if args.plot is not None else None
    plan, rows = plan_rows(
        args.family,
        width,
        height,
        args.steps,
        args.preset,
        args.scheduler,
        args.ndcfg,
        args.progressive,
        args.force_preset,
    )
    if plot is not None:
        from ..engine.presets import family_layers
        from .plan_plot import save_plan_plot

        plot.parent.mkdir(parents=True, exist_ok=True)
        save_plan_plot(
            plan,
            rows,
            family_layers(args.family),
            plot,
            ndcfg=args.ndcfg,
            title=f"{args.family} {width}x{height}: plan {plan.name} ({plan.source}), "
            f"{len(rows)} {args.scheduler} steps",
        )
    if args.json:
        print(json.dumps({"steps": rows}))
        return 0
    print(idle_notice(plan) or format_plan(plan, rows, args.family, width, height, args.scheduler, args.ndcfg))
    return 0


def _plot_target(text: str, overwrite: bool) -> Path:
    """--plot FILE.png, checked before anything is computed: a PNG name, matplotlib installed, no
    existing file replaced without --overwrite, a folder it can be written to."""
    from ..outputs.files import check_targets, check_writable
    from .plan_plot import require_matplotlib

    path = path_argument(text, "--plot", "file")
    if path.suffix.lower() != ".png":
        raise ScaleCrafterError(f"--plot {text!r} must name a .png file")
    require_matplotlib("scv plan --plot")
    check_targets([path], overwrite, "--plot")
    check_writable(path.parent, "--plot")
    return path


def cmd_presets(args: argparse.Namespace, argv: list[str]) -> int:
    from .describe import presets_json, presets_table

    print(presets_json(args.family) if args.json else presets_table(args.family))
    return 0


# ---- entry point ----------------------------------------------------------------------------
def _configure_logging(debug: bool) -> None:
    if not debug:
        # The libraries' own notices are noise on the command line, and a failed load is reported
        # once, as our one-line error (diffusers logs it at ERROR level first).
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("DIFFUSERS_VERBOSITY", "critical")
        for name, level in (("transformers", logging.ERROR), ("diffusers", logging.CRITICAL)):
            module = sys.modules.get(name)
            if module is not None:
                module.utils.logging.set_verbosity(level)
    root = logging.getLogger("scalecrafter_video")
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("scv: %(message)s"))
        root.addHandler(handler)
    for handler in root.handlers:
        if isinstance(handler, _StderrHandler):  # the terminal gets warnings; log files (sweep) may want more
            handler.setLevel(logging.DEBUG if debug else logging.WARNING)
    root.setLevel(logging.DEBUG if debug else logging.WARNING)


class _StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is at the time of the record (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def _err(message: str) -> None:
    print(f"scv: error: {one_line(message)}", file=sys.stderr)


@contextlib.contextmanager
def terminate_as_interrupt():
    """SIGTERM ends a command as Ctrl-C does (KeyboardInterrupt), so the output being written removes
    what it wrote (`Runner.write`): job schedulers stop jobs with SIGTERM, and the sweep's launcher
    stops the other processes with it when one fails. Only in the main thread, where Python runs
    signal handlers; the previous handler returns afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Run `scv` with `argv` (default sys.argv[1:]); returns the exit code."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, not at exit: a reader that went away shows now
        return code
    except BrokenPipeError:
        return _reader_gone()


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    _configure_logging(debug)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _ArgumentError as exc:
        sub = exc.prog.removeprefix("scv").strip()
        hint = f"`scv {sub} --help`" if sub else "`scv --help`"
        _err(f"{exc} (see {hint})")
        return 2
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else 0
    if not getattr(args, "_handler", None):
        _err(f"choose a command: {', '.join(_commands(parser))} (see `scv --help`)")
        return 2
    try:
        with terminate_as_interrupt():
            return int(args._handler(args, argv) or 0)
    except BrokenPipeError as exc:
        if _stdout_closed():
            raise  # main() stops quietly
        return _unexpected(exc, debug)  # another pipe (a child process's) broke: that is an error
    except ScaleCrafterError as exc:
        if debug:
            traceback.print_exc()
        _err(str(exc))
        return 2
    except KeyboardInterrupt:
        print("scv: interrupted (finished outputs were kept; nothing half-written)", file=sys.stderr)
        return 130
    except Exception as exc:
        return _unexpected(exc, debug)


def _unexpected(exc: Exception, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    if type(exc).__name__ == "OutOfMemoryError":
        _err("out of memory: try a smaller --res, --dtype float16, --vae-tiling on or another --device")
        return 1
    _err(f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
    return 1


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader went away (poll reports an error on it)."""
    try:
        import select

        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or no file descriptor (captured)
        return False


def _reader_gone() -> int:
    """The reader of standard output went away (`scv plan ... | head -1`): stop quietly, as `cat` or
    `yes` would, with 141 (128 + SIGPIPE, what a shell reports for a process a closed pipe stopped).
    Standard output is pointed at devnull, as the Python docs advise, so flushing it at exit raises
    nothing more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no file descriptor (tests capture stdout in memory)
        pass
    return EXIT_BROKEN_PIPE


def _commands(parser: argparse.ArgumentParser) -> list[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


if __name__ == "__main__":
    sys.exit(main())
