"""Train the motion modules of the demo's video model on moving-shapes clips; the shapes32 UNet
stays frozen (bit for bit) and only the adapter learns.

What makes cross-frame coherence learnable quickly here:
- the motion modules' output projections start at zero, so step 0 is the image model applied per
  frame (the per-frame loss is already low) and every gradient goes to what the frames share;
- a large learning rate on the small adapter (1e-3..3e-3) and many clips per batch;
- `high_noise_share` of each batch draws its timesteps from the noisy half (t >= 500), where one
  frame alone cannot tell the object's colour and place and the frames must agree; and
  `x0_weight_cap` optionally weights the loss towards those steps (plain epsilon MSE scales an
  error in the clean clip by the SNR, i.e. almost ignores it where the noise is strong);
- motion modules at every level and in the mid block (AnimateDiff's layout).

Coherence is measured while training, from step 0: every `probe_every` steps a few clips are
sampled (DDIM, CFG, through ShapesPipeline) with the EMA weights and scored with the video
metrics (share of consistent clips, per-frame single share, motion in px per frame, frame-to-frame
background and object-colour change). The loss is also logged per noise band.

Reproducible from the seed for a given step count and device (data, timesteps, noise and label
dropout come from seeded CPU generators); on a GPU it is the same recipe, not the same bits.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

import torch

from ...models.shapes.data import CLASS_NAMES, FRAMES, make_clips
from ...models.shapes.model import load_demo_model
from ...models.shapes.motion_model import (
    ADAPTER_CONFIG,
    MOTION_WEIGHTS_NAME,
    DemoVideoModel,
    assemble,
    build_motion_adapter,
    is_motion_parameter,
    motion_config,
    read_motion_config,
    save_motion_adapter,
)
from .train import ema_update, lr_schedule, training_alphas

HIGH_NOISE_FROM = 500  # timesteps drawn for the "high noise" share of a batch are in [500, 1000)
NOISE_BANDS = ((0, 300), (300, 700), (700, 1000))

# the recipe of the shipped adapter (see its JSON "training" record and docs/results/demo-video.md)
RECIPE = dict(
    batch=16,
    lr=2e-3,
    warmup=50,
    schedule="constant",
    ema_decay=0.995,
    p_uncond=0.15,
    high_noise_share=0.5,
    x0_weight_cap=None,
)


def loss_weights(alpha_bar: torch.Tensor, x0_weight_cap: float | None) -> torch.Tensor | None:
    """Per-clip weights on the noise-prediction error: None (plain epsilon MSE), or 1/SNR clamped
    to [1, x0_weight_cap]: where the noise dominates (SNR < 1) the loss becomes the error of the
    implied clean clip (x0), so the noisy steps, where the frames' shared colour and place are
    decided, count in full; the less noisy steps keep the plain loss, so the motion modules are
    not free to spoil the per-frame detail the frozen UNet already draws."""
    if not x0_weight_cap:
        return None
    return ((1 - alpha_bar) / alpha_bar).clamp(min=1.0, max=max(1.0, x0_weight_cap))


def sample_timesteps(n: int, generator: torch.Generator, high_noise_share: float) -> torch.Tensor:
    """n training timesteps: uniform over [0, 1000), except a `high_noise_share` of them uniform
    over [HIGH_NOISE_FROM, 1000)."""
    t = torch.randint(0, 1000, (n,), generator=generator)
    high = torch.randint(HIGH_NOISE_FROM, 1000, (n,), generator=generator)
    pick = torch.rand(n, generator=generator) < high_noise_share
    return torch.where(pick, high, t)


@torch.no_grad()
def coherence_probe(
    model: DemoVideoModel,
    *,
    clips: int = 6,
    steps: int = 10,
    frames: int = FRAMES,
    guidance: float = 3.0,
    eta: float = 1.0,
    seed: int = 0,
) -> dict:
    """Sample `clips` clips (classes in turn) at base size and score them with the video metrics."""
    from ...models.shapes.video_metrics import summarize_clips
    from .sampling import sample

    labels = torch.arange(clips) % len(CLASS_NAMES)
    size = int(model.unet.config.sample_size)
    out = sample(
        model, labels, size, size, steps=steps, guidance=guidance, eta=eta, seed=seed, batch=clips, frames=frames
    )
    summary = summarize_clips(out, 1, prompts=[CLASS_NAMES[int(i)] for i in labels])
    keys = ("consistent", "single", "class_match", "repetition", "motion", "bg_change", "color_change")
    return {k: round(float(summary[k]), 4) for k in keys}


def _format_probe(step: int, p: dict) -> str:
    return (
        f"probe step {step}: consistent {p['consistent']:.0%} single {p['single']:.0%} "
        f"class {p['class_match']:.0%} motion {p['motion']:.2f} px/frame "
        f"bg_change {p['bg_change']:.4f} color_change {p['color_change']:.3f}"
    )


def train_motion(
    steps: int = 100000,
    batch: int = RECIPE["batch"],
    frames: int = FRAMES,
    lr: float = RECIPE["lr"],
    warmup: int = RECIPE["warmup"],
    schedule: str = RECIPE["schedule"],
    ema_decay: float = RECIPE["ema_decay"],
    p_uncond: float = RECIPE["p_uncond"],
    high_noise_share: float = RECIPE["high_noise_share"],
    x0_weight_cap: float | None = RECIPE["x0_weight_cap"],
    seed: int = 0,
    threads: int = 2,
    device: str = "cpu",
    max_seconds: float | None = None,
    out: Path | None = None,
    resume: Path | None = None,
    ckpt_dir: Path | None = None,
    ckpt_every: int = 0,
    probe_every: int = 50,
    probe_clips: int = 6,
    probe_steps: int = 10,
    adapter_config: dict | None = None,
    write_json: bool = True,
    progress_bar: bool = False,
    log=sys.stdout,
) -> dict:
    """Train the adapter (from zero-initialised output projections, or from `resume`: a saved
    adapter's weights with a fresh optimizer and EMA) for `steps` steps or until `max_seconds`,
    and save the EMA weights to `out` (a .safetensors path or a folder; the config goes into the
    file's metadata and, with `write_json`, beside it). Returns the training record (also stored
    in the saved config), with every probe."""
    from tqdm import tqdm

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    lr_at = lr_schedule(lr, steps, warmup, schedule)
    alphas = training_alphas(device)
    image = load_demo_model()
    history = []
    adapter_config = dict(adapter_config or ADAPTER_CONFIG)
    if resume is not None:
        from ...models.shapes.motion_model import load_motion_model

        prev = load_motion_model(resume)
        adapter_config = {k: tuple(v) if isinstance(v, list) else v for k, v in prev.config["adapter"].items()}
        unet = prev.unet
        history = list(prev.config.get("training_history", []))
    else:
        unet = assemble(image.unet, build_motion_adapter(adapter_config, seed=seed))
    embed = image.embed.to(device).requires_grad_(False)
    unet.to(device).train()
    for name, p in unet.named_parameters():
        p.requires_grad_(is_motion_parameter(name))
    ema = copy.deepcopy(unet).requires_grad_(False).eval()
    params = [p for n, p in unet.named_parameters() if is_motion_parameter(n)]
    ema_params = [p for n, p in ema.named_parameters() if is_motion_parameter(n)]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    ema_model = DemoVideoModel(ema, embed, {"frames": frames}, image.config)
    g = torch.Generator().manual_seed(seed + 1)
    n_params = sum(p.numel() for p in params)
    print(
        f"training {n_params / 1e6:.2f}M motion parameters on {device} (spatial UNet frozen): batch {batch} "
        f"clips x {frames} frames, lr {lr} ({schedule}), high-noise share {high_noise_share}, "
        f"x0 weight cap {x0_weight_cap}",
        file=log,
        flush=True,
    )

    probes, band_loss = [], {}
    record: dict = {}

    def probe(step):
        t0, cpu0 = time.time(), time.process_time()
        p = coherence_probe(ema_model, clips=probe_clips, steps=probe_steps, frames=frames, seed=seed)
        p.update(step=step, seconds=round(time.time() - t0, 1), cpu_seconds=round(time.process_time() - cpu0, 1))
        probes.append(p)
        print(_format_probe(step, p), file=log, flush=True)

    if probe_every:
        probe(0)
    t0, cpu0 = time.time(), time.process_time()
    probe_time = probe_cpu = 0.0  # probes after step 0 run inside the wall-clock window but are not training
    bar = tqdm(
        total=steps if max_seconds is None else None,
        desc="motion training",
        unit="step",
        disable=not progress_bar,
        leave=False,
    )
    try:
        for i in range(steps):
            x0, labels = make_clips(batch, g, frames)
            drop = torch.rand(batch, generator=g) < p_uncond
            labels = torch.where(drop, torch.full_like(labels, embed.null_id), labels)
            t = sample_timesteps(batch, g, high_noise_share)
            noise = torch.randn(x0.shape, generator=g)
            x0, labels, t, noise = (v.to(device, non_blocking=True) for v in (x0, labels, t, noise))
            a = alphas[t].view(-1, 1, 1, 1, 1)
            xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
            for group in opt.param_groups:
                group["lr"] = lr_at(i)
            context = embed(labels).repeat_interleave(frames, dim=0)
            pred = unet(xt, t, encoder_hidden_states=context).sample
            per_clip = (pred - noise).pow(2).mean(dim=(1, 2, 3, 4))
            weights = loss_weights(alphas[t], x0_weight_cap)
            loss = per_clip.mean() if weights is None else (weights * per_clip).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            ema_update(ema_params, params, ema_decay, i)
            bar.update()
            if (i + 1) % 25 == 0 or i == 0:
                per_clip, t_cpu = per_clip.detach().cpu(), t.cpu()
                for lo, hi in NOISE_BANDS:
                    sel = (t_cpu >= lo) & (t_cpu < hi)
                    if sel.any():
                        v = float(per_clip[sel].mean())
                        key = f"{lo}-{hi}"
                        band_loss[key] = v if key not in band_loss else 0.8 * band_loss[key] + 0.2 * v
                el, cpu = time.time() - t0 - probe_time, time.process_time() - cpu0 - probe_cpu
                bands = " ".join(f"t{k} {v:.4f}" for k, v in band_loss.items())
                print(
                    f"step {i + 1} loss {loss.item():.4f} ({bands}) lr {lr_at(i):.2e} {el:.0f}s "
                    f"({el / (i + 1):.2f} s/step, {cpu / (i + 1):.2f} CPU s/step)",
                    file=log,
                    flush=True,
                )
                bar.set_postfix_str(f"loss {loss.item():.4f}")
            done = i + 1 == steps or (max_seconds is not None and time.time() - t0 >= max_seconds)
            if probe_every and ((i + 1) % probe_every == 0 or done):
                probe(i + 1)
                probe_time += probes[-1]["seconds"]
                probe_cpu += probes[-1]["cpu_seconds"]
            if done or (ckpt_dir and ckpt_every and (i + 1) % ckpt_every == 0):
                train_s, train_cpu = time.time() - t0 - probe_time, time.process_time() - cpu0 - probe_cpu
                phase = {
                    "steps": i + 1,
                    "planned_steps": steps,
                    "batch": batch,
                    "frames": frames,
                    "lr": lr,
                    "warmup": warmup,
                    "schedule": schedule,
                    "ema_decay": ema_decay,
                    "p_uncond": p_uncond,
                    "high_noise_share": high_noise_share,
                    "x0_weight_cap": x0_weight_cap,
                    "seed": seed,
                    "device": device,
                    "threads": threads,
                    "train_s": round(train_s, 1),
                    "s_per_step": round(train_s / (i + 1), 3),
                    "cpu_s_per_step": round(train_cpu / (i + 1), 3),
                    "loss_by_noise_band": band_loss,
                    "probes": probes,
                    "resumed_from": str(resume) if resume else None,
                    "command": "python scripts/train_motion_model.py "
                    + " ".join(
                        [
                            f"--steps {i + 1}" if schedule == "constant" else f"--steps {steps}",
                            f"--batch {batch}",
                            f"--frames {frames}",
                            f"--lr {lr}",
                            f"--warmup {warmup}",
                            f"--schedule {schedule}",
                            f"--ema-decay {ema_decay}",
                            f"--p-uncond {p_uncond}",
                            f"--high-noise-share {high_noise_share}",
                            f"--seed {seed}",
                            f"--device {device}",
                        ]
                        + ([f"--x0-weight-cap {x0_weight_cap}"] if x0_weight_cap else [])
                        + [f"--heads {','.join(map(str, _as_tuple(adapter_config['motion_num_attention_heads'])))}"]
                        + ([f"--resume {resume}"] if resume else [])
                    ),
                }
                record = {
                    "training": phase,
                    "training_history": history + [phase],
                    "total_steps": sum(h.get("steps", 0) for h in history) + i + 1,
                }
                target = out if done else Path(ckpt_dir) / f"step{i + 1:06d}.safetensors"
                if target is not None:
                    cfg = motion_config(adapter_config, frames, record)
                    path = save_motion_adapter(ema, target, cfg, write_json=done and write_json)
                    print(f"saved {path}", file=log, flush=True)
            if done:
                break
    finally:
        bar.close()
    return record


def _as_tuple(value) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def _heads(text: str) -> int | tuple[int, ...]:
    values = tuple(int(v) for v in text.split(","))
    return values[0] if len(values) == 1 else values


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        description="Train the motion adapter of the scv video demo (shapes32 frozen, motion modules only). "
        "Logs the loss per noise band and, every --probe-every steps from step 0, a coherence "
        "probe (share of sampled clips whose object keeps shape, colour and presence; motion; "
        "frame-to-frame background and colour change)."
    )
    ap.add_argument(
        "--minutes",
        type=float,
        default=90.0,
        help="wall-clock limit for training (default 90: the CPU budget the shipped adapter was trained in)",
    )
    ap.add_argument("--steps", type=int, default=100000, help="step limit (default 100000: --minutes decides)")
    ap.add_argument("--batch", type=int, default=RECIPE["batch"], help="clips per step")
    ap.add_argument("--frames", type=int, default=FRAMES)
    ap.add_argument("--lr", type=float, default=RECIPE["lr"])
    ap.add_argument("--warmup", type=int, default=RECIPE["warmup"])
    ap.add_argument("--schedule", choices=("constant", "cosine"), default=RECIPE["schedule"])
    ap.add_argument("--ema-decay", type=float, default=RECIPE["ema_decay"])
    ap.add_argument("--p-uncond", type=float, default=RECIPE["p_uncond"])
    ap.add_argument(
        "--high-noise-share",
        type=float,
        default=RECIPE["high_noise_share"],
        help=f"share of each batch with timesteps in [{HIGH_NOISE_FROM}, 1000)",
    )
    ap.add_argument(
        "--x0-weight-cap",
        type=float,
        default=RECIPE["x0_weight_cap"],
        help="weight each clip's noise error by 1/SNR capped at this (the clean-clip error); "
        "default: plain epsilon MSE",
    )
    ap.add_argument(
        "--heads",
        type=_heads,
        default=ADAPTER_CONFIG["motion_num_attention_heads"],
        help="motion-module attention heads, one number or one per level (default 1,2,4)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"a .safetensors path or a folder (default: the package's assets/{MOTION_WEIGHTS_NAME})",
    )
    ap.add_argument("--resume", type=Path, default=None, help="continue from this adapter (.safetensors or folder)")
    ap.add_argument("--ckpt-dir", type=Path, default=None)
    ap.add_argument("--ckpt-every", type=int, default=500)
    ap.add_argument("--probe-every", type=int, default=50, help="coherence probe interval in steps (0: off)")
    ap.add_argument("--probe-clips", type=int, default=6)
    ap.add_argument("--probe-steps", type=int, default=10, help="DDIM steps of the probe's samples")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    problems = []
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        problems.append("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    if a.steps < 1 or a.batch < 1 or not 1 <= a.frames <= ADAPTER_CONFIG["motion_max_seq_length"]:
        problems.append("--steps and --batch must be positive, --frames 1-32")
    if a.minutes is not None and a.minutes <= 0:
        problems.append("--minutes must be positive")
    if not 0 <= a.high_noise_share <= 1 or not 0 <= a.p_uncond < 1:
        problems.append("--high-noise-share must be in [0, 1] and --p-uncond in [0, 1)")
    if a.resume is not None:
        resume_file = a.resume if a.resume.suffix == ".safetensors" else a.resume / MOTION_WEIGHTS_NAME
        if not resume_file.exists():
            problems.append(f"--resume: {resume_file} does not exist")
        else:
            try:
                read_motion_config(resume_file)
            except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
                problems.append(f"--resume: {exc}")
    if problems:
        print(f"scv motion training: {problems[0]}", file=sys.stderr)
        return 2
    from ...models.shapes.model import ASSET_DIR

    adapter = dict(ADAPTER_CONFIG, motion_num_attention_heads=a.heads)
    record = train_motion(
        steps=a.steps,
        batch=a.batch,
        frames=a.frames,
        lr=a.lr,
        warmup=a.warmup,
        schedule=a.schedule,
        ema_decay=a.ema_decay,
        p_uncond=a.p_uncond,
        high_noise_share=a.high_noise_share,
        x0_weight_cap=a.x0_weight_cap,
        seed=a.seed,
        threads=a.threads,
        device=a.device,
        max_seconds=a.minutes * 60 if a.minutes else None,
        out=a.out or ASSET_DIR / MOTION_WEIGHTS_NAME,
        resume=a.resume,
        ckpt_dir=a.ckpt_dir,
        ckpt_every=a.ckpt_every if a.ckpt_dir else 0,
        probe_every=a.probe_every,
        probe_clips=a.probe_clips,
        probe_steps=a.probe_steps,
        adapter_config=adapter,
        progress_bar=not a.no_progress,
    )
    print(json.dumps(record["training"]["probes"][-1] if record["training"]["probes"] else record["training"]))
    return 0
