"""Train the demo model (class-conditional DDPM, epsilon prediction) on the synthetic shapes.

Reproducible from the seed for a given step count (the data stream, initialisation, timesteps,
noise and label dropout all come from seeded generators; CPU, fixed thread count).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch

from .data import make_batch
from .model import ASSET_DIR, SCHEDULER_CONFIG, ClassEmbedding, build_unet, save_demo_model


def _params(unet, embed):
    return list(unet.parameters()) + list(embed.parameters())


def train(steps: int = 2000, batch: int = 32, lr: float = 1.5e-3, seed: int = 0, p_uncond: float = 0.15,
          ema_decay: float = 0.995, warmup: int = 100, threads: int = 2, out: Path = ASSET_DIR,
          ckpt_dir: Path | None = None, ckpt_every: int = 500, resume: Path | None = None,
          log=sys.stdout) -> dict:
    """Train (or, with `resume`, continue from a saved demo checkpoint's weights with a fresh
    optimizer, schedule and EMA) and save the EMA weights to `out`."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(**{k: v for k, v in SCHEDULER_CONFIG.items()
                             if k not in ("steps_offset", "set_alpha_to_one", "timestep_spacing")})
    alphas = sched.alphas_cumprod.float()
    unet = build_unet()
    embed = ClassEmbedding()
    history = []
    if resume is not None:
        from .model import load_demo_model

        prev = load_demo_model(Path(resume))
        unet.load_state_dict(prev.unet.state_dict())
        embed.load_state_dict(prev.embed.state_dict())
        unet.requires_grad_(True)
        embed.requires_grad_(True)
        history = list(prev.config.get("training_history", [])) or [prev.config.get("training", {})]
    ema_unet, ema_embed = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(embed).requires_grad_(False)
    opt = torch.optim.AdamW(_params(unet, embed), lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed + 1)

    def lr_at(i):  # linear warm-up, cosine decay to 10 %
        if i < warmup:
            return lr * (i + 1) / warmup
        p = (i - warmup) / max(1, steps - warmup)
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))

    t0 = time.time()
    run_loss = None
    info = {}
    for i in range(steps):
        x0, labels = make_batch(batch, g)
        drop = torch.rand(batch, generator=g) < p_uncond
        labels = torch.where(drop, torch.full_like(labels, embed.null_id), labels)
        t = torch.randint(0, 1000, (batch,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        for group in opt.param_groups:
            group["lr"] = lr_at(i)
        pred = unet(xt, t, encoder_hidden_states=embed(labels)).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(_params(unet, embed), 1.0)
        opt.step()
        d = min(ema_decay, (1 + i) / (10 + i))
        with torch.no_grad():
            for pe, p in zip(_params(ema_unet, ema_embed), _params(unet, embed)):
                pe.mul_(d).add_(p.detach(), alpha=1 - d)
        run_loss = loss.item() if run_loss is None else 0.98 * run_loss + 0.02 * loss.item()
        if (i + 1) % 25 == 0 or i == 0:
            el = time.time() - t0
            print(f"step {i + 1}/{steps} loss {run_loss:.4f} lr {lr_at(i):.2e} {el:.0f}s "
                  f"({(i + 1) / el:.2f} it/s)", file=log, flush=True)
        done = i + 1 == steps
        if done or (ckpt_dir and (i + 1) % ckpt_every == 0):
            phase = {"steps": i + 1, "batch": batch, "lr": lr, "seed": seed,
                                 "p_uncond": p_uncond, "ema_decay": ema_decay, "warmup": warmup,
                                 "threads": threads, "final_loss_ema": round(run_loss, 5),
                                 "wall_s": round(time.time() - t0, 1),
                     "command": "python scripts/train_demo_model.py " + " ".join(
                         [f"--steps {steps}", f"--batch {batch}", f"--lr {lr}", f"--seed {seed}"]
                         + ([f"--resume {resume}"] if resume else []))}
            info = {"training": phase, "training_history": history + [phase],
                    "total_steps": sum(h.get("steps", 0) for h in history) + i + 1}
            target = out if done else Path(ckpt_dir) / f"step{i + 1:06d}"
            save_demo_model(ema_unet, ema_embed, target, extra=info)
            print(f"saved {target}", file=log, flush=True)
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Train the scv demo model (shapes32) on CPU.")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ASSET_DIR)
    ap.add_argument("--ckpt-dir", type=Path, default=None)
    ap.add_argument("--ckpt-every", type=int, default=500)
    ap.add_argument("--resume", type=Path, default=None, help="continue from this checkpoint folder")
    a = ap.parse_args(argv)
    info = train(steps=a.steps, batch=a.batch, lr=a.lr, seed=a.seed, threads=a.threads, out=a.out,
                 ckpt_dir=a.ckpt_dir, ckpt_every=a.ckpt_every, resume=a.resume)
    print(json.dumps(info))
    return 0
