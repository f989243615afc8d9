"""The repetition benchmark behind `scv demo`: base size, then 2x and 4x per side, directly, with
Attn-SF, and with ScaleCrafter (re-dilation; + NDCFG; + dispersion; from 3x also re-dilation and
+ NDCFG with the progressive decay held off), all from the engine's derived plan for this model
(`apply_scalecrafter(unet, height=H, width=W, preset="auto", batch_layout="uncond,cond")` on the
bare UNet, sizes in sample units), and the base-guided cascade (each base-size sample refined up
to the size with the cascade's defaults)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...jobs.cascade import CascadeConfig, stage_sizes
from ...models.shapes import metrics, video_metrics
from ...models.shapes.model import DemoModel
from ...models.shapes.motion_model import DemoVideoModel
from ...outputs import files as outputs
from .sampling import BATCH_LAYOUT, cascade_sample, sample


@dataclass(frozen=True)
class Case:
    method: str  # direct | attn-sf | scalecrafter[-redilate|-dispersion][-nodecay] | cascade
    scale: int  # per side
    ndcfg: bool = False
    dispersion: bool = False
    progressive: bool | None = None  # None: the derived plan's own decay; False: factors held

    @property
    def label(self) -> str:
        return f"{self.method} {self.scale}x"


def default_cases(scales=(2, 4), variants: bool = True) -> list[Case]:
    """Base size, then per scale direct, Attn-SF and ScaleCrafter; from 3x re-dilation alone and
    with NDCFG, and with `variants` also dispersion and the decay held off; last the cascade."""
    cases = [Case("direct", 1)]
    for s in scales:
        cases += [Case("direct", s), Case("attn-sf", s)]
        if s >= 3:  # the derived plan has an NDCFG window, dispersion layers and the decay only from 3x
            cases += [Case("scalecrafter-redilate", s, ndcfg=False), Case("scalecrafter", s, ndcfg=True)]
            if variants:
                cases += [
                    Case("scalecrafter-dispersion", s, ndcfg=True, dispersion=True),
                    Case("scalecrafter-redilate-nodecay", s, ndcfg=False, progressive=False),
                    Case("scalecrafter-nodecay", s, ndcfg=True, progressive=False),
                ]
        else:
            cases += [Case("scalecrafter", s, ndcfg=True)]
        cases.append(Case("cascade", s))
    return cases


def cascade_work(steps: int, scale: int) -> int:
    """For the progress bar: one sample's refining steps over every cascade stage (its restart
    each), a step weighted by the stage's pixel count over the base size's."""
    config, side = CascadeConfig(), 64
    sizes = stage_sizes((side, side), (side * scale, side * scale), 1)[1:]
    work = sum((steps - config.start_step(steps, k)) * h * w / side**2 for k, (h, w) in enumerate(sizes, 1))
    return max(1, round(work))


def run_case(
    model: DemoModel | DemoVideoModel,
    case: Case,
    labels: torch.Tensor,
    *,
    steps: int,
    guidance: float,
    eta: float,
    seed: int,
    batch: int,
    frames: int | None = None,
    progress=None,
    base_samples: np.ndarray | None = None,
    done=None,
) -> tuple[np.ndarray, dict]:
    """Sample one case: `sample` at the case's size under its method, or for the cascade
    `cascade_sample` from `base_samples` (the base-size case's samples, same labels). `done`: the
    resumable store of finished batches (`sample`'s, or per sample `cascade_sample`'s)."""
    from ...engine.patch import (
        apply_attn_sf,
        remove_attn_sf,
        remove_scalecrafter,
        scalecrafter,
    )

    base = int(model.unet.config.sample_size)
    size = base * case.scale
    info: dict = {}
    kw = dict(
        steps=steps, guidance=guidance, eta=eta, seed=seed, batch=batch, frames=frames, progress=progress, done=done
    )
    if case.method == "cascade":
        if base_samples is None:
            raise ValueError("the cascade case refines the base-size samples: run the base case first")
        remove_scalecrafter(model.unet)
        tick = None if progress is None else (lambda k: progress(k * cascade_work(steps, case.scale)))
        images, info = cascade_sample(
            model,
            labels,
            base_samples,
            size,
            size,
            steps=steps,
            guidance=guidance,
            eta=eta,
            seed=seed,
            progress=tick,
            done=done,
        )
        info["cascade"] = CascadeConfig().to_dict()
    elif case.method.startswith("scalecrafter"):
        with scalecrafter(
            model.unet,
            height=size,
            width=size,
            preset="auto",
            ndcfg=case.ndcfg,
            dispersion=case.dispersion,
            progressive=case.progressive,
            batch_layout=BATCH_LAYOUT,
        ) as handle:
            info["plan"] = handle.plan.name
            info["patched_convs"] = handle.patched_convs
            images = sample(model, labels, size, size, **kw)
            info["damped_passes"] = handle.damped_passes
    elif case.method == "attn-sf":
        try:
            info["attn_layers_scaled"] = apply_attn_sf(model.unet, height=size, width=size)
            images = sample(model, labels, size, size, **kw)
        finally:
            remove_attn_sf(model.unet)
    else:
        remove_scalecrafter(model.unet)
        images = sample(model, labels, size, size, **kw)
    return images, info


def benchmark(
    model: DemoModel | DemoVideoModel,
    *,
    samples: int = 8,
    steps: int = 25,
    guidance: float = 3.0,
    eta: float = 1.0,
    seed: int = 0,
    batch: int = 8,
    cases: list[Case] | None = None,
    frames: int | None = None,
    progress_bar: bool = True,
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Run every case on the same labels and the same per-sample starting noise (per size).
    Returns (rows, images (or clips) per case label); rows carry the shares and cleanliness, and
    for clips (a DemoVideoModel; `frames` per clip, default the adapter's) the video metrics with
    motion relative to the base-size case."""
    from tqdm import tqdm

    cases = cases or default_cases()
    video = isinstance(model, DemoVideoModel)
    if video and frames is None:
        frames = int(model.config["frames"])
    n_classes = len(model.class_names)
    labels = torch.arange(samples) % n_classes

    # progress in base-size UNet frame-steps: a 4x step counts 16 (its pixel count) per frame
    def work(c: Case) -> int:
        if c.method == "cascade":
            return cascade_work(steps, c.scale) * samples
        return steps * -(-samples // batch) * c.scale**2

    total = sum(work(c) for c in cases) * (frames or 1)
    bar = tqdm(total=total, desc="scv demo", unit="step", disable=not progress_bar, leave=False)
    rows, images = [], {}
    base = None
    try:
        for case in cases:
            bar.set_postfix_str(case.label)
            t0 = time.time()
            weight = (1 if case.method == "cascade" else case.scale**2) * (frames or 1)  # cascade_work weighs its own
            imgs, info = run_case(
                model,
                case,
                labels,
                steps=steps,
                guidance=guidance,
                eta=eta,
                seed=seed,
                batch=batch,
                frames=frames,
                progress=lambda k, w=weight: bar.update(k * w),
                base_samples=images.get("direct 1x"),
            )
            if video:
                summary = video_metrics.summarize_clips(imgs, case.scale)
                summary["per_sample"] = summary.pop("per_clip")
                paths = video_metrics.trajectory_stats(imgs, case.scale)
                summary.update(followed=paths["followed_clips"], net=paths["net"], fit=paths["fit"])
            else:
                summary = metrics.summarize(imgs, case.scale)
            if case.scale == 1 and case.method == "direct":
                base = summary
            per_sample = summary.pop("per_sample")
            rows.append(
                {
                    "method": case.method,
                    "scale": case.scale,
                    **summary,
                    "seconds": round(time.time() - t0, 1),
                    **info,
                    "per_sample": per_sample,
                }
            )
            images[case.label] = imgs
    finally:
        bar.close()
    if base is None:
        base = {"bg_noise": min(r["bg_noise"] for r in rows), "motion": float("nan"), "net": None, "fit": None}
    for r in rows:
        r["clean"] = metrics.cleanliness(r["bg_noise"], base["bg_noise"])
        if video:  # motion relative to the base clips: per frame (counts jitter), net and fitted (do not)
            r["motion_ratio"] = video_metrics.motion_ratio(r["motion"], base["motion"])
            for key in ("net", "fit"):
                r[f"{key}_ratio"] = video_metrics.motion_ratio(r[key], base[key])
    return rows, images


def format_table(rows: list[dict]) -> str:
    head = (
        "| method | scale (per side) | size | n | single object | repetition (>=2) | mean objects "
        "| background noise | clean (base = 1) |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        size = 32 * r["scale"]
        lines.append(
            f"| {r['method']} | {r['scale']}x | {size}x{size} | {r['n']} | {r['single']:.0%} | "
            f"{r['repetition']:.0%} | {r['mean_objects']:.2f} | {r['bg_noise']:.4f} | {r['clean']:.2f} |"
        )
    return "\n".join(lines)


def image_caption(row: dict) -> str:
    return (
        f"{row['method']}\n{row['scale']}x ({32 * row['scale']}px)\n"
        f"single {row['single']:.0%}  rep {row['repetition']:.0%}\nclean {row['clean']:.2f}"
    )


def save_grid(
    rows: list[dict],
    images: dict[str, np.ndarray],
    path: Path,
    columns: int = 6,
    cell: int = 128,
    caption=image_caption,
) -> None:
    """One row per case (its caption on the left), the case's first `columns` images across
    (for a video contact sheet: one clip's frames)."""
    from PIL import Image, ImageDraw

    label_w, pad = 230, 4
    keys = [f"{r['method']} {r['scale']}x" for r in rows]
    ncol = min(columns, min(len(images[k]) for k in keys))
    W = label_w + ncol * (cell + pad) + pad
    H = len(keys) * (cell + pad) + pad
    canvas = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r_i, (row, key) in enumerate(zip(rows, keys)):
        y = pad + r_i * (cell + pad)
        draw.multiline_text((6, y + 8), caption(row), fill=(0, 0, 0), spacing=4)
        for c in range(ncol):
            im = Image.fromarray((np.clip(images[key][c], 0, 1) * 255).round().astype(np.uint8))
            im = im.resize((cell, cell), Image.NEAREST)
            canvas.paste(im, (label_w + pad + c * (cell + pad), y))
    outputs.save_image(canvas, path)


def output_paths(out_dir: Path | None, json_path: Path | None) -> dict[str, Path]:
    """What `write_outputs` writes, by name: the folder's grid, table and results, and the --json file."""
    paths = {}
    if out_dir is not None:
        out_dir = Path(out_dir)
        paths.update(grid=out_dir / "grid.png", table=out_dir / "table.md", results=out_dir / "results.json")
    if json_path is not None:
        paths["json"] = Path(json_path)
    return paths


def write_outputs(rows: list[dict], images: dict, out_dir: Path | None, json_path: Path | None, meta: dict) -> dict:
    """Write every output of `output_paths`, each atomically; returns them by name."""
    paths = output_paths(out_dir, json_path)
    for path in paths.values():
        outputs.prepare_out_dir(path.parent)
    if "grid" in paths:
        save_grid(rows, images, paths["grid"])
        outputs.atomic_write_text(paths["table"], format_table(rows) + "\n")
        outputs.atomic_write_text(paths["results"], json.dumps({"cases": rows, **meta}, indent=1) + "\n")
    if "json" in paths:
        public = [{k: v for k, v in r.items() if k != "per_sample"} for r in rows]
        outputs.atomic_write_text(paths["json"], json.dumps({"cases": public, **meta}, indent=1) + "\n")
    return paths


def checked_outputs(args, default_out: str, output_paths) -> tuple[Path, Path | None]:
    """--out (default `default_out`) and --json as paths, refused before any work where
    `output_paths(out_dir, json_path)` would replace earlier outputs without --overwrite or
    cannot be written."""
    out_dir = outputs.path_argument(default_out if args.out is None else args.out)
    json_path = None if args.json is None else outputs.path_argument(args.json, "--json", "file")
    outputs.check_targets(output_paths(out_dir, json_path).values(), args.overwrite)
    for flag, folder in (("--out", out_dir), ("--json", json_path and json_path.parent)):
        if folder is not None:
            outputs.check_writable(folder, flag)
    return out_dir, json_path
