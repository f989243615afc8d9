"""`scv sweep`: the argument parser and the command."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ...engine.errors import ScaleCrafterError
from ...jobs.family import SAMPLING
from ...jobs.options import DTYPES, SCHEDULERS, GenerateOptions
from ..arguments import add_cascade_options, max_scale_argument, parse_res, read_prompts

SWEEP_EXAMPLES = """\
examples:
  scv sweep --model sd21 --prompts prompts.txt --methods direct,attn-sf,scalecrafter \\
            --res 1024x1024,2048x2048 --base --seeds 1 --out sweeps/sd21
  scv sweep ... --num-processes 8                          # 8 processes (GPUs) via accelerate
  accelerate launch --num_processes 8 -m scalecrafter_video sweep ...   # the same, by hand
  scv sweep --model tiny-sd --prompts p.txt --res 128x128 --base --seeds 2 --steps 2 --out /tmp/s --device cpu
  scv sweep --video --model shapes32-motion --prompts classes.txt --res 64x64 --base --seeds 2 --steps 10 \\
            --save-frames --out /tmp/v --device cpu            # clips + lossless frames for scv eval

Each (prompt, seed, method, size) is generated once, with a seed derived from the prompt's line and
the seed number. Rerunning the same command resumes: finished items (OUT/manifest/*.jsonl) are skipped.
"""


def add_sweep_parser(sub) -> argparse.ArgumentParser:
    d = GenerateOptions(prompts=[], height=0, width=0)
    p = sub.add_parser(
        "sweep",
        help="generate a grid of prompts x seeds x methods x sizes (resumable, multi-process)",
        description="Generate every (prompt, seed, method, size) of a grid once, for evaluation with `scv eval`. "
        "Resumable (a manifest of finished items) and shardable across processes (accelerate).",
        epilog=SWEEP_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    grid = p.add_argument_group("grid")
    grid.add_argument("--model", default=None, help="as for `scv generate` (default sd15; animatediff with --video)")
    grid.add_argument(
        "--family",
        default=None,
        choices=tuple(SAMPLING),
        help="the model's family, where its id or architecture cannot tell (as for `scv generate`)",
    )
    grid.add_argument("--prompts", required=True, metavar="FILE", help="one prompt per line ('#' comments)")
    grid.add_argument(
        "--methods",
        default="direct,scalecrafter",
        metavar="M[,M...]",
        help="from direct, attn-sf, scalecrafter, cascade (`scv generate --cascade`; default direct,scalecrafter)",
    )
    grid.add_argument("--res", default="", metavar="WxH[,WxH...]", help="target sizes WIDTHxHEIGHT in pixels")
    grid.add_argument(
        "--base",
        action="store_true",
        help="also generate at the model's base size (direct): the reference set of FID_b",
    )
    grid.add_argument("--seeds", type=int, default=1, metavar="N", help="seeds per prompt (default 1)")
    grid.add_argument("--out", required=True, metavar="DIR", help="output folder (resumed if it holds this sweep)")
    samp = p.add_argument_group("sampling (as for `scv generate`)")
    samp.add_argument("--steps", type=int, default=d.steps, help=f"sampling steps (default {d.steps})")
    samp.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the family's)")
    samp.add_argument("--eta", type=float, default=d.eta, help=f"DDIM eta (default {d.eta})")
    samp.add_argument("--scheduler", default=d.scheduler, choices=tuple(SCHEDULERS), help="sampler (default ddim)")
    samp.add_argument("--negative-prompt", metavar="TEXT", default=None)
    samp.add_argument("--preset", default="auto", metavar="NAME|auto|PATH", help="ScaleCrafter plan (default auto)")
    samp.add_argument("--no-ndcfg", dest="ndcfg", action="store_false", help="ordinary CFG for scalecrafter")
    samp.add_argument(
        "--max-scale",
        type=max_scale_argument,
        default=d.max_scale,
        metavar="X",
        help=f"the largest scale per side over the base size ScaleCrafter accepts (default {d.max_scale:g})",
    )
    add_cascade_options(samp, d, "; the cascade method", defaults=True)
    samp.add_argument("--dtype", default=d.dtype, choices=DTYPES)
    samp.add_argument("--device", default="auto", help="auto (each process its own GPU, else CPU), cpu, cuda")
    video = p.add_argument_group("video")
    video.add_argument("--video", action="store_true", help="generate videos (MP4) with the video front end")
    video.add_argument(
        "--frames", type=int, default=None, help=f"frames (default: a built-in model's clip length, else {d.frames})"
    )
    video.add_argument("--fps", type=int, default=d.fps, help=f"MP4 frame rate (default {d.fps})")
    video.add_argument("--motion-adapter", metavar="ID", default=None, help="AnimateDiff motion adapter")
    video.add_argument(
        "--save-frames",
        action="store_true",
        help="also write each video's frames as lossless PNGs (<name>-frames/), which scv eval "
        "then scores instead of the H.264-compressed MP4 (use it for small clips)",
    )
    run = p.add_argument_group("processes")
    run.add_argument(
        "--num-processes",
        type=int,
        default=1,
        metavar="N",
        help="run as N processes through accelerate's launcher (one per GPU; default 1)",
    )
    run.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def run_sweep_command(args: argparse.Namespace, argv: list[str]) -> int:
    from ...jobs.registry import default_frames
    from .launch import LAUNCHED_ENV, cpu_launch_processes, launch, strip_option
    from .run import SweepConfig, run_sweep

    if args.num_processes < 1:
        raise ScaleCrafterError(f"--num-processes must be at least 1, got {args.num_processes}")
    for name in ("steps", "frames", "fps"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ScaleCrafterError(f"--{name} must be at least 1, got {getattr(args, name)}")
    prompts = read_prompts(args.prompts)
    sizes = [parse_res(r) for r in args.res.split(",") if r.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    model = args.model or ("animatediff" if args.video else "sd15")
    template = GenerateOptions(
        prompts=[],
        height=0,
        width=0,
        model=model,
        family=args.family,
        negative_prompt=args.negative_prompt,
        preset=args.preset,
        ndcfg=args.ndcfg,
        max_scale=args.max_scale,
        steps=args.steps,
        guidance=args.guidance,
        eta=args.eta,
        scheduler=args.scheduler,
        dtype=args.dtype,
        device=args.device,
        out_dir=Path(args.out),
        progress=False,
        command=["scv", *argv],
        video=args.video,
        frames=args.frames or default_frames(model, GenerateOptions.frames),
        fps=args.fps,
        motion_adapter=args.motion_adapter,
        save_frames=args.save_frames,
        restart=args.restart,
        skip_exponent=args.skip_exponent,
        stage_plan=args.stage_plan,
        color_fix=args.color_fix,
    )
    cfg = SweepConfig(
        template, prompts, args.seeds, methods, sizes, Path(args.out), include_base=args.base, progress=args.progress
    )
    processes, relaunch_argv = args.num_processes, argv
    cpu_processes = cpu_launch_processes() if processes == 1 else None
    if cpu_processes:
        # `accelerate launch --cpu --num_processes N` without MPI started only this process
        processes, relaunch_argv = cpu_processes, [*strip_option(argv, "--device"), "--device", "cpu"]
        print(
            f"scv: sweep: accelerate launch --cpu started one process (it forks only through MPI); "
            f"running the sweep as {processes} CPU processes through accelerate's torchrun launcher",
            file=sys.stderr,
        )
    if processes > 1 and LAUNCHED_ENV not in os.environ:
        from .manifest import forget_unstarted, is_sweep
        from .run import validate

        validate(cfg)
        new = not is_sweep(Path(args.out))
        code = launch(relaunch_argv, processes)
        if code and new:  # every process has stopped: settings no item was recorded with are taken back
            forget_unstarted(Path(args.out))
        if code:
            print(
                f"scv: sweep: a process failed (exit {code}); finished items are kept, rerun to resume "
                f"(logs: {Path(args.out) / 'logs'})",
                file=sys.stderr,
            )
        return code
    result = run_sweep(cfg)
    if result.rank == 0:
        print(
            f"sweep {result.out_dir}: {result.total} items; {result.finished_before} finished before this run, "
            f"{result.generated} generated and {result.adopted} recorded by process 0 of {result.processes}"
        )
    return 0
