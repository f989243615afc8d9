"""`scv demo --video`: the shapes32 motion model at base size, 2x and 4x per side, directly, with
Attn-SF, with ScaleCrafter (the engine's derived plan for the bare motion UNet, with and without
NDCFG) and with the base-guided cascade, scored with the video metrics. Writes one MP4 per case
(its clips side by side), a PNG contact sheet (frames across, cases down), the table and JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .run import Case, save_grid

VIDEO_DEFAULTS = dict(samples=3, steps=10)  # one clip per class; the default run must fit 10 min on 2 CPU cores
FPS = 4
DISPLAY = 128  # pixels per clip side in the MP4s and the contact sheet (nearest-neighbour upscaling)
PAD = 4


def format_video_table(rows: list[dict]) -> str:
    head = (
        "| method | scale (per side) | size | n | single (frames) | repetition (clips) | consistent | "
        "motion (base px/frame) | motion ratio | net ratio | fit ratio | followed | background noise | "
        "clean (base = 1) |"
    )
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        size = 32 * r["scale"]
        lines.append(
            f"| {r['method']} | {r['scale']}x | {size}x{size} | {r['n']} | {r['single']:.0%} | "
            f"{r['repetition']:.0%} | {r['consistent']:.0%} | {r['motion']:.2f} | {r['motion_ratio']:.2f} | "
            f"{r['net_ratio']:.2f} | {r['fit_ratio']:.2f} | {r['followed']}/{r['n']} | "
            f"{r['bg_noise']:.4f} | {r['clean']:.2f} |"
        )
    return "\n".join(lines)


def video_caption(row: dict) -> str:
    return (
        f"{row['method']}\n{row['scale']}x ({32 * row['scale']}px)\n"
        f"single {row['single']:.0%}  rep {row['repetition']:.0%}\n"
        f"consistent {row['consistent']:.0%}\nmotion {row['motion_ratio']:.2f}  net {row['net_ratio']:.2f}"
    )


def tile_clips(clips: np.ndarray, count: int, display: int = DISPLAY) -> np.ndarray:
    """The first `count` clips (N, F, H, W, 3) side by side, each upscaled to `display` px (nearest),
    white gaps between: (F, display, width, 3) in [0, 1]."""
    clips = np.asarray(clips)[:count]
    k = max(1, display // clips.shape[2])
    big = clips.repeat(k, axis=2).repeat(k, axis=3)
    n, f, h, w, _ = big.shape
    out = np.ones((f, h, n * (w + PAD) - PAD, 3), dtype=np.float32)
    for i, clip in enumerate(big):
        out[:, :, i * (w + PAD) : i * (w + PAD) + w] = clip
    return out


def json_safe(value):
    """NaN (no object to measure) as null, so the JSON is strict."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def case_file(case: Case) -> str:
    return f"{case.method}-{case.scale}x.mp4"


def video_output_paths(cases: list[Case]):
    """`output_paths(out_dir, json_path)` for these cases: an MP4 per case, contact_sheet.png,
    table.md, results.json, and the --json file."""

    def output_paths(out_dir: Path | None, json_path: Path | None) -> dict[str, Path]:
        paths = {}
        if out_dir is not None:
            out_dir = Path(out_dir)
            paths.update({case.label: out_dir / case_file(case) for case in cases})
            paths.update(
                contact_sheet=out_dir / "contact_sheet.png",
                table=out_dir / "table.md",
                results=out_dir / "results.json",
            )
        if json_path is not None:
            paths["json"] = Path(json_path)
        return paths

    return output_paths


def write_video_outputs(
    rows: list[dict], clips: dict[str, np.ndarray], paths: dict[str, Path], meta: dict, clips_per_video: int = 6
) -> dict[str, Path]:
    """Write `paths` (from video_output_paths), each atomically: the MP4s (a case's first clips
    side by side), the contact sheet (sample 0 of every case, frames across), the table, the full
    results (per-clip reasons) and the public JSON. Returns `paths`."""
    from ...outputs import files as outputs
    from ...outputs.media import write_mp4

    for path in paths.values():
        outputs.prepare_out_dir(path.parent)
    labels = [f"{r['method']} {r['scale']}x" for r in rows]
    if "table" in paths:
        for label in labels:
            write_mp4(paths[label], tile_clips(clips[label], clips_per_video), FPS, overwrite=True)
        first = {label: clips[label][0] for label in labels}
        frames = min(len(v) for v in first.values())
        save_grid(rows, first, paths["contact_sheet"], columns=frames, cell=DISPLAY, caption=video_caption)
        outputs.atomic_write_text(paths["table"], format_video_table(rows) + "\n")
        doc = json_safe({"cases": rows, **meta})
        outputs.atomic_write_text(paths["results"], json.dumps(doc, indent=1, allow_nan=False) + "\n")
    if "json" in paths:
        public = [{k: v for k, v in r.items() if k != "per_sample"} for r in rows]
        doc = json_safe({"cases": public, **meta})
        outputs.atomic_write_text(paths["json"], json.dumps(doc, indent=1, allow_nan=False) + "\n")
    return paths


def run_video_demo(args) -> int:
    import torch

    from ...engine.errors import ScaleCrafterError
    from ...models.shapes.motion_model import load_motion_model
    from .run import benchmark, checked_outputs, default_cases

    samples = VIDEO_DEFAULTS["samples"] if args.samples is None else args.samples
    steps = VIDEO_DEFAULTS["steps"] if args.steps is None else args.steps
    if samples < 1 or steps < 1:
        raise ScaleCrafterError("--samples and --steps must be at least 1")
    if any(s < 1 for s in args.scales):
        raise ScaleCrafterError("--scales must be positive integers (per-side factors, e.g. 2 4)")
    cases: list[Case] = default_cases(tuple(s for s in args.scales if s > 1), variants=False)
    output_paths = video_output_paths(cases)
    out_dir, json_path = checked_outputs(args, "out/demo-video", output_paths)
    model = load_motion_model(args.motion_model)
    frames = args.frames or int(model.config["frames"])
    limit = model.unet.config.motion_max_seq_length
    if not 1 <= frames <= limit:
        raise ScaleCrafterError(f"--frames must be 1-{limit} (the motion modules' length), got {frames}")
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, clips = benchmark(
        model,
        samples=samples,
        steps=steps,
        guidance=args.guidance,
        eta=args.eta,
        seed=args.seed,
        batch=args.batch,
        cases=cases,
        frames=frames,
        progress_bar=not args.no_progress,
    )
    meta = {
        "model": "shapes32 + shapes32_motion",
        "adapter": str(args.motion_model or "shipped"),
        "samples": samples,
        "frames": frames,
        "steps": steps,
        "guidance": args.guidance,
        "eta": args.eta,
        "seed": args.seed,
        "sampler": "DDIM",
        "fps": FPS,
        "torch_threads": torch.get_num_threads(),
    }
    written = write_video_outputs(rows, clips, output_paths(out_dir, json_path), meta)
    print(format_video_table(rows))
    for k, v in written.items():
        print(f"{k}: {v}", file=sys.stderr)
    return 0
