#!/usr/bin/env python
"""Train several demo-model variants side by side (one process each) and score each with the
repetition benchmark of `scv demo`, to choose the architecture and training length of the shipped
model. Made for a GPU; `--device cpu --train-seconds 20 --samples 2 --steps 3` is a smoke run.

    python scripts/demo_model_sweep.py --device cuda --train-seconds 240 --out runs/sweep

Per variant it writes OUT/NAME/final/ (the checkpoint, as shipped: float16 safetensors + JSON),
OUT/NAME/log.txt and OUT/NAME/results.json (every case for every evaluated checkpoint and eta),
and OUT/summary.md, a table over all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scalecrafter_video.commands.demo.side_by_side import run_side_by_side  # noqa: E402

D, CD, U, CU = "DownBlock2D", "CrossAttnDownBlock2D", "UpBlock2D", "CrossAttnUpBlock2D"
FOUR_LEVELS = dict(block_out_channels=(16, 32, 32, 64), down_block_types=(D, D, D, CD), up_block_types=(CU, U, U, U))
THREE_LEVELS = dict(block_out_channels=(16, 32, 64), down_block_types=(D, D, CD), up_block_types=(CU, U, U))
NO_SELF_ATTENTION = dict(only_cross_attention=True)  # conv receptive field only
# each variant overrides the shipped UNET_CONFIG of scalecrafter_video/demo/model.py ("3L")
VARIANTS = {
    "4L": FOUR_LEVELS,  # the layout shipped before the sweep
    "4L-nosa": dict(FOUR_LEVELS, **NO_SELF_ATTENTION),
    "3L": THREE_LEVELS,
    "3L-nosa": dict(THREE_LEVELS, **NO_SELF_ATTENTION),
    "4L-wide": dict(FOUR_LEVELS, block_out_channels=(24, 48, 48, 96)),
    "4L-wide-nosa": dict(FOUR_LEVELS, block_out_channels=(24, 48, 48, 96), **NO_SELF_ATTENTION),
    "3L-wide": dict(THREE_LEVELS, block_out_channels=(32, 64, 96)),
}


def one(args) -> int:
    """Train one variant, then evaluate its last checkpoint (and one near half way)."""
    import torch

    from scalecrafter_video.commands.demo.run import Case, benchmark
    from scalecrafter_video.commands.demo.train import train
    from scalecrafter_video.models.shapes.model import UNET_CONFIG, load_demo_model

    torch.set_num_threads(args.threads)
    out = Path(args.out) / args.one
    out.mkdir(parents=True, exist_ok=True)
    config = dict(UNET_CONFIG, **VARIANTS[args.one])
    saved: list[int] = []

    def keep(step, ema_unet, ema_embed):
        saved.append(step)

    log = open(out / "log.txt", "a", buffering=1)
    info = train(
        steps=args.max_steps,
        batch=args.batch,
        lr=args.lr,
        ema_decay=args.ema_decay,
        warmup=200,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        schedule="constant",
        unet_config=config,
        max_seconds=args.train_seconds,
        out=out / "final",
        ckpt_dir=out / "ckpt",
        ckpt_every=args.ckpt_every,
        on_checkpoint=keep,
        log=log,
    )
    final = info["training"]["steps"]
    mid = [s for s in saved if s <= final // 2]
    for s in saved:  # keep only the checkpoints that get evaluated
        if s != final and (not mid or s != mid[-1]):
            shutil.rmtree(out / "ckpt" / f"step{s:06d}", ignore_errors=True)
    evaluate = [("final", out / "final", final)] + (
        [("mid", out / "ckpt" / f"step{mid[-1]:06d}", mid[-1])] if mid else []
    )
    if args.device.startswith("cuda"):
        torch.backends.cudnn.allow_tf32 = False  # sample in full float32, as on the CPU
        torch.backends.cuda.matmul.allow_tf32 = False
    cases = [
        Case("direct", 1),
        Case("direct", 2),
        Case("scalecrafter", 2, ndcfg=True),
        Case("direct", 4),
        Case("scalecrafter-redilate", 4),
        Case("scalecrafter", 4, ndcfg=True),
        Case("scalecrafter-dispersion", 4, ndcfg=True, dispersion=True),
    ]
    results = {
        "variant": args.one,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
        "training": info["training"],
        "params": None,
        "evals": [],
    }
    for tag, path, steps in evaluate:
        model = load_demo_model(path)
        model.unet.to(args.device)
        model.embed.to(args.device)
        results["params"] = sum(p.numel() for p in model.unet.parameters())
        for eta in args.etas:
            t0 = time.time()
            rows, _ = benchmark(
                model,
                samples=args.samples,
                steps=args.steps,
                guidance=3.0,
                eta=eta,
                seed=0,
                batch=args.samples,
                cases=cases,
                progress_bar=False,
            )
            for r in rows:
                reasons = Counter(s["reason"].split(" (")[0] or "single" for s in r.pop("per_sample"))
                r["reasons"] = dict(reasons)
            results["evals"].append(
                {
                    "checkpoint": tag,
                    "train_steps": steps,
                    "eta": eta,
                    "seconds": round(time.time() - t0, 1),
                    "rows": rows,
                }
            )
            (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
            print(f"evaluated {tag} ({steps} steps) eta {eta} in {time.time() - t0:.0f}s", file=log)
    return 0


def summarize(out: Path) -> str:
    lines = [
        "| variant | params (M) | train steps | eta | base single | 2x direct rep | 2x SC single | "
        "4x direct rep | 4x redilate single | 4x SC single | 4x SC+disp single | clean redilate / SC |",
        "|" + "---|" * 12,
    ]
    for res_path in sorted(out.glob("*/results.json")):
        res = json.loads(res_path.read_text())
        for ev in res["evals"]:
            r = {(row["method"], row["scale"]): row for row in ev["rows"]}

            def get(m, s, k, r=r):
                row = r.get((m, s))
                return f"{row[k]:.0%}" if row else "-"

            clean = (
                f"{r[('scalecrafter-redilate', 4)]['clean']:.2f} / {r[('scalecrafter', 4)]['clean']:.2f}"
                if ("scalecrafter", 4) in r and ("scalecrafter-redilate", 4) in r
                else "-"
            )
            lines.append(
                f"| {res['variant']} | {res['params'] / 1e6:.2f} | {ev['train_steps']} | {ev['eta']} | "
                f"{get('direct', 1, 'single')} | {get('direct', 2, 'repetition')} | "
                f"{get('scalecrafter', 2, 'single')} | "
                f"{get('direct', 4, 'repetition')} | {get('scalecrafter-redilate', 4, 'single')} | "
                f"{get('scalecrafter', 4, 'single')} | {get('scalecrafter-dispersion', 4, 'single')} | {clean} |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: " + ", ".join(VARIANTS))
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default="runs/sweep")
    p.add_argument("--train-seconds", type=float, default=240.0)
    p.add_argument("--deadline", type=float, default=None, help="kill unfinished variants after this many seconds")
    p.add_argument("--max-steps", type=int, default=200000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--ckpt-every", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--samples", type=int, default=48)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--etas", type=float, nargs="+", default=[1.0, 0.0])
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        return one(args)
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    passthrough = list(argv if argv is not None else sys.argv[1:])
    codes = {n: code for n, (code, _) in run_side_by_side(__file__, passthrough, names, args.deadline).items()}
    table = summarize(out)
    (out / "summary.md").write_text(table + "\n")
    print(table)
    print(f"sweep: {time.time() - t0:.0f}s; exit codes {codes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
