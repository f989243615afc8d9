"""Measure the peak memory of one UNet call and one VAE decode and set it against
`resources.estimate_memory`, which is meant as a floor (estimate <= measured).

Random weights with the real architectures (families.py's SD 1.5 and SDXL UNets, the SD VAE), or
the tiny test models with --tiny. Each case runs in a fresh subprocess: on CUDA the peak is
torch.cuda.max_memory_allocated above what was allocated before the call, on a CPU the growth of
the peak resident set size.

    python scripts/check_memory_estimate.py --device cuda --out results.jsonl    # GPU, ~2 min
    python scripts/check_memory_estimate.py --device cpu --tiny                  # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SD_VAE = dict(
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    sample_size=512,
)
FULL_CASES = [
    ("unet", "sd15", 1024),
    ("unet", "sd15", 2048),
    ("unet", "sdxl", 2048),
    ("decode", "sd15", 1024),
    ("decode-tiled", "sd15", 2048),
]
TINY_CASES = [
    ("unet", "tiny-sd", 512),
    ("unet", "tiny-sdxl", 512),
    ("decode", "tiny-sd", 512),
    ("decode-tiled", "tiny-sd", 1024),
]


def configs(model: str) -> tuple[dict, dict]:
    from scalecrafter_video.engine.families import get_family
    from scalecrafter_video.models.tiny import TINY_UNET_CONFIGS, TINY_VAE_CONFIG

    if model.startswith("tiny-"):
        return dict(TINY_UNET_CONFIGS[model]), dict(TINY_VAE_CONFIG)
    vae = dict(SD_VAE, sample_size=1024 if model == "sdxl" else 512)
    return dict(get_family(model).unet_config), vae


def measure(kind: str, model: str, px: int, device: str) -> dict:
    """One case in this process: estimate and measured bytes of the part it exercises."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.utils import logging as diffusers_logging

    from scalecrafter_video.jobs.resources import estimate_memory

    diffusers_logging.set_verbosity_error()
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    unet_cfg, vae_cfg = configs(model)
    est = estimate_memory(
        unet_cfg, vae_cfg, height=px, width=px, dtype_bytes=dtype.itemsize, tiled=kind == "decode-tiled"
    )
    with torch.device(device):
        if kind == "unet":
            net = UNet2DConditionModel(**unet_cfg).to(dtype).eval()
            lat = px // 8
            args = (torch.randn(2, 4, lat, lat, dtype=dtype), torch.tensor(500))
            kwargs = {"encoder_hidden_states": torch.randn(2, 77, unet_cfg["cross_attention_dim"], dtype=dtype)}
            if unet_cfg.get("addition_embed_type") == "text_time":
                text = unet_cfg["projection_class_embeddings_input_dim"] - 6 * unet_cfg["addition_time_embed_dim"]
                kwargs["added_cond_kwargs"] = {
                    "text_embeds": torch.randn(2, text, dtype=dtype),
                    "time_ids": torch.randn(2, 6, dtype=dtype),
                }
            run, expected = (lambda: net(*args, **kwargs)), est.unet
        else:
            net = AutoencoderKL(**vae_cfg).to(dtype).eval()
            if kind == "decode-tiled":
                net.enable_tiling()
            z = torch.randn(1, 4, px // 8, px // 8, dtype=dtype)
            run, expected = (lambda: net.decode(z)), est.decode
    with torch.no_grad():
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            run()
            torch.cuda.synchronize()
            measured = torch.cuda.max_memory_allocated() - before
        else:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            run()
            measured = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {
        "case": kind,
        "model": model,
        "px": px,
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
        "estimate_gib": round(expected / 2**30, 3),
        "measured_gib": round(measured / 2**30, 3),
        "floor_holds": expected <= measured,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="the tiny test models at small sizes (CPU smoke run)")
    parser.add_argument("--out", type=Path, help="also append one JSON line per case to this file")
    parser.add_argument("--case", nargs=3, metavar=("KIND", "MODEL", "PX"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        kind, model, px = args.case
        print(json.dumps(measure(kind, model, int(px), args.device)))
        return 0
    failures = 0
    for kind, model, px in TINY_CASES if args.tiny else FULL_CASES:
        proc = subprocess.run(
            [sys.executable, __file__, "--device", args.device, "--case", kind, model, str(px)],
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            print(f"{kind} {model} {px}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            failures += 1
            continue
        line = proc.stdout.strip().splitlines()[-1]
        print(line)
        if args.out:
            with args.out.open("a") as f:
                f.write(line + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
