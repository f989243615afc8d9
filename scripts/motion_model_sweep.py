#!/usr/bin/env python
"""Train several motion-adapter recipes side by side (one process each, one GPU) for a fixed time,
then score each with the video metrics at base size and at --scales per side (default 2 and 4),
directly and with the engine's derived ScaleCrafter plan for the bare motion UNet.

    python scripts/motion_model_sweep.py --device cuda --out runs/motion_sweep

Defaults: 4 recipes, 2.5 min of training each (all at once), a coherence probe every 50 steps
from step 0, then 24 clips x 25 DDIM steps per case; every variant is stopped 5 min after the
start, keeping what it finished (its weights and training record; evaluated scales). Writes at
most 8 files, all directly in OUT: one float16 adapter per variant (NAME.safetensors, its config
and training record in the file's metadata, loadable with
scalecrafter_video.models.shapes.motion_model.load_motion_model), results.json (every variant: recipe,
training record with the probes, evaluation rows; and a summary table) and log.txt (all
processes' logs, each line prefixed with its variant). A CPU smoke run (about 5 min here):
`--device cpu --minutes 0.3 --variants b4-lr2e-3,b4-lr2e-3-uniform --frames 4 --threads 1
--eval-clips 2 --eval-steps 2 --probe-clips 3 --probe-steps 2 --probe-every 5 --deadline 900`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scalecrafter_video.commands.demo.side_by_side import run_side_by_side  # noqa: E402

MAX_FILES = 8  # what OUT may hold: variants' weights + results.json + log.txt
# each variant overrides the training recipe (scalecrafter_video/demo/train_motion.py RECIPE)
VARIANTS = {
    "b32-lr2e-3": dict(batch=32, lr=2e-3, high_noise_share=0.5),
    "b32-lr2e-3-uniform": dict(batch=32, lr=2e-3, high_noise_share=0.0),  # without the high-noise share
    "b32-lr1e-3": dict(batch=32, lr=1e-3, high_noise_share=0.5),
    "b32-lr2e-3-x0w10": dict(batch=32, lr=2e-3, high_noise_share=0.5, x0_weight_cap=10.0),  # clean-clip loss
    "b64-lr3e-3-high75": dict(batch=64, lr=3e-3, high_noise_share=0.75),
    "b64-lr2e-3-x0w10": dict(batch=64, lr=2e-3, high_noise_share=0.5, x0_weight_cap=10.0),
    "b32-lr2e-3-heads4": dict(batch=32, lr=2e-3, high_noise_share=0.5, heads=4),  # 4 heads at every level
    "b4-lr2e-3": dict(batch=4, lr=2e-3, high_noise_share=0.5),  # CPU smoke runs
    "b4-lr2e-3-uniform": dict(batch=4, lr=2e-3, high_noise_share=0.0),
}
DEFAULT_VARIANTS = ("b32-lr2e-3", "b32-lr2e-3-uniform", "b32-lr2e-3-x0w10", "b64-lr3e-3-high75")


class PrefixedLog:
    """A text sink that appends whole lines, each prefixed with the variant, to the shared log."""

    def __init__(self, path: Path, prefix: str):
        self.file = open(path, "a", buffering=1)
        self.prefix = prefix
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.file.write(f"[{self.prefix}] {line}\n")
        return len(text)

    def flush(self) -> None:
        self.file.flush()


def one(args) -> int:
    """Train one variant for the time limit, evaluate its EMA weights, print the result as JSON."""
    import torch

    from scalecrafter_video.commands.demo.run import Case, benchmark
    from scalecrafter_video.commands.demo.train_motion import train_motion
    from scalecrafter_video.models.shapes.motion_model import (
        ADAPTER_CONFIG,
        load_motion_model,
    )

    out = Path(args.out)
    log = PrefixedLog(out / "log.txt", args.one)
    recipe = dict(VARIANTS[args.one])
    heads = recipe.pop("heads", ADAPTER_CONFIG["motion_num_attention_heads"])
    weights = out / f"{args.one}.safetensors"
    result: dict = {"variant": args.one, "recipe": VARIANTS[args.one]}
    try:
        record = train_motion(
            **recipe,
            frames=args.frames,
            seed=args.seed,
            threads=args.threads,
            device=args.device,
            max_seconds=args.minutes * 60,
            out=weights,
            probe_every=args.probe_every,
            probe_clips=args.probe_clips,
            probe_steps=args.probe_steps,
            adapter_config=dict(ADAPTER_CONFIG, motion_num_attention_heads=heads),
            write_json=False,
            log=log,
        )
        result.update(weights=weights.name, training=record["training"], error="killed before its evaluation finished")
        print(json.dumps(result), flush=True)  # the parent keeps the last line: this one if evaluation dies
        if args.device.startswith("cuda"):  # sample in full float32, as on the CPU
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        model = load_motion_model(weights)
        model.unet.to(args.device)
        model.embed.to(args.device)
        t0 = time.time()
        result["rows"] = []
        for s in args.scales:  # one scale at a time, each with the (cheap) base case for its ratios
            cases = [Case("direct", 1), Case("direct", s), Case("scalecrafter", s, ndcfg=True)]
            if s >= 3:  # the derived plan has an NDCFG window from 3x: also re-dilation alone
                cases.append(Case("scalecrafter-redilate", s))
            rows, _ = benchmark(
                model,
                samples=args.eval_clips,
                steps=args.eval_steps,
                guidance=3.0,
                eta=1.0,
                seed=0,
                batch=args.eval_clips,
                cases=cases,
                progress_bar=False,
            )
            for r in rows:
                r["reasons"] = sorted({c["reason"] for c in r.pop("per_sample") if c["reason"]})
            result["rows"] += rows[1:] if result["rows"] else rows
            result["eval_seconds"] = round(time.time() - t0, 1)
            if s == args.scales[-1]:
                del result["error"]
            else:
                result["error"] = f"killed after evaluating up to {s}x"
            print(f"evaluated up to {s}x ({args.eval_clips} clips per case) in {time.time() - t0:.0f}s", file=log)
            print(json.dumps(result), flush=True)  # so a deadline kill keeps the scales already done
    except Exception as exc:  # noqa: BLE001 - reported in results.json, the other variants go on
        print(f"failed: {type(exc).__name__}: {exc}", file=log)
        result["error"] = f"{type(exc).__name__}: {exc}"
        print(json.dumps(result))
    return 0 if "error" not in result else 1


def summarize(results: list[dict]) -> str:
    head = (
        "| variant | steps | s/step | probe consistent (first -> last) | motion px/f | "
        "base single | base consistent | scale | direct rep | SC single | SC consistent | SC motion ratio |"
    )
    lines = [head, "|" + "---|" * 12]
    for res in results:
        if not res.get("rows"):
            tr = res.get("training")
            done = f"{tr['steps']} | {tr['s_per_step']}" if tr else "- | -"
            lines.append(f"| {res['variant']} | {done} | {res['error']} |" + " |" * 8)
            continue
        tr, rows = res["training"], {(r["method"], r["scale"]): r for r in res["rows"]}
        probes = tr.get("probes") or [{}]
        base = rows[("direct", 1)]
        for scale in sorted({s for _, s in rows if s > 1}):
            d, sc = rows[("direct", scale)], rows[("scalecrafter", scale)]
            note = f" ({res['error']})" if res.get("error") else ""
            lines.append(
                f"| {res['variant']}{note} | {tr['steps']} | {tr['s_per_step']} | "
                f"{probes[0].get('consistent', 0):.0%} -> {probes[-1].get('consistent', 0):.0%} | "
                f"{base['motion']:.2f} | {base['single']:.0%} | {base['consistent']:.0%} | {scale}x | "
                f"{d['repetition']:.0%} | {sc['single']:.0%} | {sc['consistent']:.0%} | {sc['motion_ratio']:.2f} |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help="comma-separated: " + ", ".join(VARIANTS))
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default="runs/motion_sweep")
    p.add_argument("--minutes", type=float, default=2.5, help="training time per variant (all run at once)")
    p.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="kill unfinished variants after this many seconds (default: minutes + 150 s, so the "
        "defaults end within 5 minutes; what a killed variant finished is kept)",
    )
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="CPU threads per variant")
    p.add_argument("--probe-every", type=int, default=50)
    p.add_argument("--probe-clips", type=int, default=12)
    p.add_argument("--probe-steps", type=int, default=10)
    p.add_argument("--eval-clips", type=int, default=24)
    p.add_argument("--eval-steps", type=int, default=25)
    p.add_argument("--scales", type=int, nargs="+", default=[2, 4], help="per-side scales to evaluate (default 2 4)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.one:
        return one(args)
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    if len(set(names)) != len(names):
        p.error("each variant may be named once (each writes NAME.safetensors)")
    if len(names) + 2 > MAX_FILES:
        p.error(f"at most {MAX_FILES - 2} variants (one weights file each, plus results.json and log.txt)")
    if any(s < 2 for s in args.scales) or len(set(args.scales)) != len(args.scales):
        p.error("--scales must be distinct integers >= 2 (the base size is always evaluated)")
    if out.exists() and any(out.iterdir()):
        p.error(f"{out} is not empty; choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    deadline = args.deadline or args.minutes * 60 + 150
    t0 = time.time()
    passthrough = list(argv if argv is not None else sys.argv[1:])
    finished = run_side_by_side(__file__, passthrough, names, deadline, capture=True)
    results = []
    for n in names:
        lines = [ln for ln in finished[n][1].splitlines() if ln.startswith("{")]
        results.append(json.loads(lines[-1]) if lines else {"variant": n, "error": "no result (killed or crashed)"})
    table = summarize(results)
    doc = {
        "args": {k: v for k, v in vars(args).items() if k != "one"},
        "wall_s": round(time.time() - t0, 1),
        "summary": table,
        "variants": results,
    }
    from scalecrafter_video.commands.demo.video_demo import json_safe

    (out / "results.json").write_text(json.dumps(json_safe(doc), indent=1, allow_nan=False) + "\n")
    print(table)
    print(f"sweep: {time.time() - t0:.0f}s; exit codes { ({n: code for n, (code, _) in finished.items()}) }")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
