"""`scv eval`: the argument parser and the command."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

EVAL_EXAMPLES = """\
examples:
  scv eval --generated sweeps/sd21 --reference laion-30k/ --crops 10 --json eval.json --plot eval.png
  scv eval --generated sweeps/shapes --reference-shapes --features random --json eval.json --plot eval.png
  scv eval --generated out/ --base out-512/ --features random          # FID_b only, offline

Groups: the sweep's manifest when DIR holds a sweep, else the sidecar (.json) next to each image
or MP4 (method, width, height, model). FID_b compares with the base-size generations (`scv sweep
--base`, or --base DIR). --features random needs no download but is NOT comparable with published FIDs.
Videos: FID/KID over every frame; with --reference-shapes also consistency and motion ratio per
clip. Frames come from the lossless PNGs of `--save-frames` when present, else the decoded MP4.
"""


def add_eval_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "eval",
        help="FID/KID per method and size (vs real images, base-size generations, crops)",
        description="Score generated images as the paper does: FID_r/KID_r against real images, FID_b/KID_b "
        "against the model's base-size generations, FID_c/KID_c on random full-resolution crops; "
        "clean-fid style resize to 299.",
        epilog=EVAL_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--generated",
        required=True,
        metavar="DIR",
        help="a sweep folder or a folder of scv outputs (images or videos)",
    )
    ref = p.add_mutually_exclusive_group()
    ref.add_argument("--reference", metavar="DIR", help="real images or MP4s (any size) for FID_r / FID_c")
    ref.add_argument(
        "--reference-shapes",
        action="store_true",
        help="the shapes demo data set drawn at each size as the real images; adds structure metrics "
        "(and, for videos, consistency and motion ratio)",
    )
    p.add_argument("--base", metavar="DIR", help="base-size generations for FID_b (default: the sweep's --base items)")
    p.add_argument("--crops", type=int, default=0, metavar="N", help="random full-resolution crops per image (FID_c)")
    p.add_argument(
        "--crop-size", type=int, default=None, metavar="PX", help="crop side (default the model's base size)"
    )
    p.add_argument(
        "--features",
        default="inception",
        choices=("inception", "random"),
        help="inception (published FIDs; needs its weights) or random (offline, not comparable)",
    )
    p.add_argument("--inception-weights", metavar="FILE", help="torch-fidelity's Inception weights file")
    p.add_argument(
        "--num-reference", type=int, default=500, metavar="N", help="shapes references per size (default 500)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of crops, shapes references and KID subsets")
    p.add_argument("--batch", type=int, default=32, help="images per feature batch (default 32)")
    p.add_argument("--device", default="cpu", help="device of the feature extractor (default cpu)")
    p.add_argument("--json", metavar="FILE", help='write {"rows": [...], "meta": {...}}')
    p.add_argument("--plot", metavar="FILE.png", help="plot each metric against resolution")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json / --plot file")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def run_eval_command(args: argparse.Namespace, argv: list[str]) -> int:
    from tqdm.auto import tqdm

    from ...engine.errors import ScaleCrafterError
    from .report import markdown_table, plot, write_json
    from .run import EvalConfig, evaluate

    if args.plot and not args.plot.lower().endswith(".png"):
        raise ScaleCrafterError(f"--plot {args.plot!r} must be a .png file")
    from ...outputs.files import check_targets

    for module, needed in (("torchmetrics", True), ("matplotlib", bool(args.plot))):
        if needed and importlib.util.find_spec(module) is None:
            raise ScaleCrafterError(f"scv eval needs {module}: pip install 'scalecrafter_video[eval]'")

    check_targets([Path(v) for v in (args.json, args.plot) if v], args.overwrite)
    if args.crop_size is not None and args.crop_size < 1:
        raise ScaleCrafterError(f"--crop-size must be at least 1, got {args.crop_size}")
    if args.batch < 1:
        raise ScaleCrafterError(f"--batch must be at least 1, got {args.batch}")
    cfg = EvalConfig(
        generated=Path(args.generated),
        reference=Path(args.reference) if args.reference else None,
        reference_shapes=args.reference_shapes,
        base=Path(args.base) if args.base else None,
        crops=args.crops,
        crop_size=args.crop_size,
        features=args.features,
        inception_weights=Path(args.inception_weights) if args.inception_weights else None,
        num_reference=args.num_reference,
        seed=args.seed,
        batch=args.batch,
        device=args.device,
    )
    with tqdm(desc="eval", unit="img", disable=not args.progress, leave=False) as bar:
        result = evaluate(cfg, progress=bar.update)
    print(markdown_table(result))
    if args.json:
        print(f"wrote {write_json(result, Path(args.json))}", file=sys.stderr)
    if args.plot:
        print(f"wrote {plot(result, Path(args.plot))}", file=sys.stderr)
    return 0
