"""UNet cost per denoising step: direct inference vs ScaleCrafter (re-dilation, NDCFG, dispersion).

Random-weight UNets with a family's real architecture (no download), one CFG batch per step, as a
pipeline calls the UNet. Prints a markdown table and writes JSON; record results with the card's name.

    python benchmarks/unet_step.py --family sd15 --res 1024x1024 2048x2048 --json out/bench.json
    python benchmarks/unet_step.py --family tiny --res 128x128 --device cpu      # smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from scalecrafter_video import scalecrafter
from scalecrafter_video.families import get_family


def build(family: str, device, dtype):
    import diffusers

    if family == "tiny":
        from scalecrafter_video.pipelines.tiny import TINY_UNET_CONFIGS

        config = TINY_UNET_CONFIGS["tiny-sd"]
        unet, base, frames, ctx = diffusers.UNet2DConditionModel(**config), 64, 0, config["cross_attention_dim"]
    else:
        fam = get_family(family)
        unet = getattr(diffusers, fam.unet_class)(**fam.unet_config)
        base, frames, ctx = fam.base_width, (16 if fam.video else 0), fam.unet_config["cross_attention_dim"]
    return unet.to(device, dtype).eval(), base, frames, ctx


def inputs(unet, family, height, width, frames, ctx, device, dtype):
    h, w = height // 8, width // 8
    shape = (2, 4, frames, h, w) if frames else (2, 4, h, w)
    # UNetMotionModel takes the text context already repeated per frame (AnimateDiffPipeline does
    # that); UNet3DConditionModel repeats it itself
    ctx_batch = 2 * frames if type(unet).__name__ == "UNetMotionModel" else 2
    kw = dict(sample=torch.randn(shape, device=device, dtype=dtype),
              encoder_hidden_states=torch.randn(ctx_batch, 77, ctx, device=device, dtype=dtype))
    if family == "sdxl":
        kw["added_cond_kwargs"] = dict(text_embeds=torch.randn(2, 1280, device=device, dtype=dtype),
                                       time_ids=torch.randn(2, 6, device=device, dtype=dtype))
    return kw


def time_step(unet, kw, timestep, device, repeats: int) -> float:
    def once():
        with torch.no_grad():
            unet(**kw, timestep=torch.tensor(timestep, device=device))

    once()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        once()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", default="sd15", help="sd15, sd21, sdxl, animatediff, modelscope, zeroscope or tiny")
    p.add_argument("--res", nargs="+", default=["1024x1024"], help="WIDTHxHEIGHT sizes")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype) if device.type == "cuda" else torch.float32
    unet, base, frames, ctx = build(args.family, device, dtype)
    rows = []
    for res in args.res:
        width, height = (int(v) for v in res.lower().split("x"))
        kw = inputs(unet, args.family, height, width, frames, ctx, device, dtype)
        row = {"family": args.family, "width": width, "height": height, "frames": frames,
               "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "dtype": str(dtype)}
        cases = {"direct": None, "redilated": dict(ndcfg=False), "redilated+ndcfg": dict(ndcfg=True),
                 "redilated+ndcfg+dispersion": dict(ndcfg=True, dispersion=True)}
        for name, opts in cases.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            # t=981 is the first step: every window of the plan is open.
            if opts is None:
                seconds = time_step(unet, kw, 981, device, args.repeats)
            else:
                # inputs() builds a [uncond; cond] CFG batch: declare it so NDCFG runs
                with scalecrafter(unet, height // 8, width // 8, base=base // 8, batch_layout="uncond,cond",
                                  **opts) as handle:
                    seconds = time_step(unet, kw, 981, device, args.repeats)
                    row["plan"] = handle.plan.name
                row[f"{name}_damped_passes"] = handle.damped_passes
            row[f"{name}_s"] = round(seconds, 5)
            if device.type == "cuda":
                row[f"{name}_peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    head = ["family", "width", "height", "frames", "plan", "direct_s", "redilated_s", "redilated+ndcfg_s",
            "redilated+ndcfg+dispersion_s", "device"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(str(row.get(k, "")) for k in head) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
