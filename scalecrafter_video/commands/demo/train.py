"""Train the demo model (class-conditional DDPM, epsilon prediction) on the synthetic shapes.

Reproducible from the seed for a given step count and device: the data stream, initialisation,
timesteps, noise and label dropout all come from seeded CPU generators (batches are made on the
CPU and moved to the device). On a GPU the result is the same recipe, not the same bits.
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

from ...models.shapes.data import make_batch
from ...models.shapes.model import (
    ASSET_DIR,
    SCHEDULER_CONFIG,
    UNET_CONFIG,
    ClassEmbedding,
    build_unet,
    save_demo_model,
)

SCHEDULES = ("cosine", "constant")


def _params(unet, embed):
    return list(unet.parameters()) + list(embed.parameters())


def lr_schedule(lr: float, steps: int, warmup: int, schedule: str):
    """Linear warm-up, then cosine decay to 10 % over `steps` ("cosine") or flat ("constant": a
    checkpoint at step k is then exactly what a run of k steps gives)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown LR schedule {schedule!r}; use one of {', '.join(SCHEDULES)}")

    def lr_at(i):
        if i < warmup:
            return lr * (i + 1) / warmup
        if schedule == "constant":
            return lr
        p = (i - warmup) / max(1, steps - warmup)
        return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))

    return lr_at


def training_alphas(device) -> torch.Tensor:
    """alpha_bar_t of the DDPM training schedule (SCHEDULER_CONFIG), float32 on `device`."""
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(
        **{
            k: v
            for k, v in SCHEDULER_CONFIG.items()
            if k not in ("steps_offset", "set_alpha_to_one", "timestep_spacing")
        }
    )
    return sched.alphas_cumprod.float().to(device)


@torch.no_grad()
def ema_update(ema_params: list, params: list, decay: float, step: int) -> None:
    """EMA with the usual warm-up: the decay is min(decay, (1 + step) / (10 + step))."""
    d = min(decay, (1 + step) / (10 + step))
    torch._foreach_mul_(ema_params, d)
    torch._foreach_add_(ema_params, [p.detach() for p in params], alpha=1 - d)


# the recipe of the shipped checkpoint (see its JSON "training" record and docs/results/demo-images.md)
SHIPPED = dict(steps=2913, batch=256, lr=1e-3, ema_decay=0.999, schedule="constant", warmup=200)


def train(
    steps: int = SHIPPED["steps"],
    batch: int = SHIPPED["batch"],
    lr: float = SHIPPED["lr"],
    seed: int = 0,
    p_uncond: float = 0.15,
    ema_decay: float = SHIPPED["ema_decay"],
    warmup: int = SHIPPED["warmup"],
    threads: int = 2,
    out: Path = ASSET_DIR,
    ckpt_dir: Path | None = None,
    ckpt_every: int = 500,
    resume: Path | None = None,
    device: str = "cpu",
    schedule: str = SHIPPED["schedule"],
    unet_config: dict | None = None,
    max_seconds: float | None = None,
    on_checkpoint=None,
    log=sys.stdout,
) -> dict:
    """Train (or, with `resume`, continue from a saved demo checkpoint's weights with a fresh
    optimizer, schedule and EMA) and save the EMA weights to `out`.

    `max_seconds` stops early (after the step that crosses it) and saves what it has, recording
    the steps actually done; `on_checkpoint(step, ema_unet, ema_embed)` is called every
    `ckpt_every` steps and at the end (e.g. to keep copies for evaluation)."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    unet_config = dict(unet_config or UNET_CONFIG)
    lr_at = lr_schedule(lr, steps, warmup, schedule)
    alphas = training_alphas(device)
    history = []
    if resume is not None:  # the architecture comes from the checkpoint
        from ...models.shapes.model import load_demo_model

        prev = load_demo_model(Path(resume))
        unet_config = {k: tuple(v) if isinstance(v, list) else v for k, v in prev.config["unet"].items()}
        unet, embed = prev.unet, prev.embed
        history = list(prev.config.get("training_history", [])) or [prev.config.get("training", {})]
    else:
        unet, embed = build_unet(unet_config), ClassEmbedding()
    unet.to(device).train().requires_grad_(True)
    embed.to(device).train().requires_grad_(True)
    ema_unet, ema_embed = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(embed).requires_grad_(False)
    ema_params, params = _params(ema_unet, ema_embed), _params(unet, embed)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed + 1)
    n_params = sum(p.numel() for p in unet.parameters())
    print(
        f"training {n_params / 1e6:.2f}M-parameter UNet on {device} for {steps} steps "
        f"(batch {batch}, lr {lr}, {schedule})",
        file=log,
        flush=True,
    )

    t0 = time.time()
    run_loss = None
    info = {}
    for i in range(steps):
        x0, labels = make_batch(batch, g)
        drop = torch.rand(batch, generator=g) < p_uncond
        labels = torch.where(drop, torch.full_like(labels, embed.null_id), labels)
        t = torch.randint(0, 1000, (batch,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        x0, labels, t, noise = (v.to(device, non_blocking=True) for v in (x0, labels, t, noise))
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        for group in opt.param_groups:
            group["lr"] = lr_at(i)
        pred = unet(xt, t, encoder_hidden_states=embed(labels)).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema_update(ema_params, params, ema_decay, i)
        log_now = (i + 1) % 25 == 0 or i == 0
        if log_now or run_loss is None:
            value = loss.item()
            run_loss = value if run_loss is None else 0.9 * run_loss + 0.1 * value
        if log_now:
            el = time.time() - t0
            print(
                f"step {i + 1}/{steps} loss {run_loss:.4f} lr {lr_at(i):.2e} {el:.0f}s ({(i + 1) / el:.2f} it/s)",
                file=log,
                flush=True,
            )
        out_of_time = max_seconds is not None and time.time() - t0 >= max_seconds
        done = i + 1 == steps or out_of_time
        if done or (ckpt_every and (i + 1) % ckpt_every == 0):
            phase = {
                "steps": i + 1,
                "planned_steps": steps,
                "batch": batch,
                "lr": lr,
                "schedule": schedule,
                "seed": seed,
                "p_uncond": p_uncond,
                "ema_decay": ema_decay,
                "warmup": warmup,
                "device": device,
                "threads": threads,
                "final_loss_ema": round(run_loss, 5),
                "wall_s": round(time.time() - t0, 1),
                "command": "python scripts/train_demo_model.py "
                + " ".join(
                    [
                        f"--steps {i + 1 if schedule == 'constant' else steps}",
                        f"--batch {batch}",
                        f"--lr {lr}",
                        f"--seed {seed}",
                        f"--ema-decay {ema_decay}",
                        f"--schedule {schedule}",
                        f"--device {device}",
                    ]
                    + ([f"--resume {resume}"] if resume else [])
                ),
            }
            info = {
                "training": phase,
                "training_history": history + [phase],
                "total_steps": sum(h.get("steps", 0) for h in history) + i + 1,
            }
            if on_checkpoint is not None:
                on_checkpoint(i + 1, ema_unet, ema_embed)
            if done or ckpt_dir:
                target = out if done else Path(ckpt_dir) / f"step{i + 1:06d}"
                save_demo_model(ema_unet, ema_embed, target, extra=info, unet_config=unet_config)
                print(f"saved {target}", file=log, flush=True)
        if done:
            break
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Train the scv demo model (shapes32). The defaults are the shipped checkpoint's recipe "
        "(150 s on an H200; on a 2-core CPU about 3.5 s per step, hours)."
    )
    ap.add_argument("--steps", type=int, default=SHIPPED["steps"])
    ap.add_argument("--batch", type=int, default=SHIPPED["batch"])
    ap.add_argument("--lr", type=float, default=SHIPPED["lr"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ema-decay", type=float, default=SHIPPED["ema_decay"])
    ap.add_argument("--schedule", choices=SCHEDULES, default=SHIPPED["schedule"])
    ap.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cuda (default where available) or cpu",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ASSET_DIR)
    ap.add_argument("--ckpt-dir", type=Path, default=None)
    ap.add_argument("--ckpt-every", type=int, default=500)
    ap.add_argument("--resume", type=Path, default=None, help="continue from this checkpoint folder")
    a = ap.parse_args(argv)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "scv demo training: --device cuda asked for, but torch sees no CUDA device; use --device cpu",
            file=sys.stderr,
        )
        return 2
    if a.steps < 1 or a.batch < 1:
        print("scv demo training: --steps and --batch must be positive", file=sys.stderr)
        return 2
    info = train(
        steps=a.steps,
        batch=a.batch,
        lr=a.lr,
        seed=a.seed,
        ema_decay=a.ema_decay,
        schedule=a.schedule,
        device=a.device,
        threads=a.threads,
        out=a.out,
        ckpt_dir=a.ckpt_dir,
        ckpt_every=a.ckpt_every if a.ckpt_dir else 0,
        resume=a.resume,
    )
    print(json.dumps(info))
    return 0
