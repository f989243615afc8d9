#!/usr/bin/env python
"""`scv upscale` on the shipped motion model, end to end through files: does a clip keep its
trajectory and its object? `python scripts/upscale_evidence.py [--samples 24] [--steps 25]
[--scale 2] [--threads 1] [--out samples/cascade_evidence/upscale-24]`.

Samples the base clips as scripts/cascade_evidence.py does (shapes32-motion, 32 px, DDIM, guidance
3, eta 1, seed 0, clip i of class i mod 3), writes each as an MP4 (H.264, yuv420p, as `scv generate`
writes clips), runs `scv upscale CLIP --model shapes32-motion --prompt CLASS --res SxS` on it (the
command's own defaults otherwise) and reads the upscaled MP4 back. Two cases against the base clips
(paired, clip i with clip i; models/shapes/video_metrics.clip_evidence):

  read back   the base MP4 decoded again (what the encoder alone changes: the metric control)
  upscaled    `scv upscale`'s output

Writes DIR/results.json and DIR/table.md; the MP4s stay in DIR/inputs and DIR/upscaled.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from cascade_evidence import fmt_ratio, fmt_share  # noqa: E402

from scalecrafter_video.commands.demo.run import Case, run_case  # noqa: E402
from scalecrafter_video.commands.demo.video_demo import json_safe  # noqa: E402
from scalecrafter_video.models.shapes import video_metrics  # noqa: E402
from scalecrafter_video.models.shapes.motion_model import load_motion_model  # noqa: E402
from scalecrafter_video.outputs import files as outputs  # noqa: E402
from scalecrafter_video.outputs.media import read_video, write_mp4  # noqa: E402

FPS = 8
KEYS = ("single", "repetition", "consistent", "step_ratio", "net_ratio", "fit_ratio", "color_spread_ratio")


def read_clip(path: Path) -> np.ndarray:
    return read_video(path).astype(np.float32) / 255.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=24)
    ap.add_argument("--steps", type=int, default=25, help="DDIM steps of the base clips and of scv upscale")
    ap.add_argument("--scale", type=int, default=2, help="per-side factor")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "samples" / "cascade_evidence" / "upscale-24")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from scalecrafter_video.commands.cli import main as scv

    out = outputs.prepare_out_dir(a.out)
    model = load_motion_model()
    labels = torch.arange(a.samples) % len(model.class_names)
    kw = dict(guidance=3.0, eta=1.0, seed=0, batch=8, frames=int(model.config["frames"]))
    base, _ = run_case(model, Case("direct", 1), labels, steps=a.steps, **kw)
    size = 32 * a.scale
    read_back, upscaled = [], []
    t0 = time.time()
    for i, label in enumerate(labels.tolist()):
        name = model.class_names[label]
        clip = write_mp4(out / "inputs" / f"clip{i:02d}-{name}.mp4", base[i], FPS, overwrite=True)
        read_back.append(read_clip(clip))
        target = out / "upscaled" / f"clip{i:02d}"
        code = scv(
            ["upscale", str(clip), "--model", "shapes32-motion", "--prompt", name, "--res", f"{size}x{size}"]
            + ["--steps", str(a.steps), "--out", str(target), "--no-progress", "--skip-existing"]
        )
        if code != 0:
            raise SystemExit(f"scv upscale failed on {clip} (exit {code})")
        (written,) = sorted(target.glob("*.mp4"))
        upscaled.append(read_clip(written))
        print(f"clip {i}: {written.name}", file=sys.stderr, flush=True)
    seconds = time.time() - t0
    base_desc = video_metrics.describe_clips(base, 1)
    doc = {
        "settings": {"samples": a.samples, "steps": a.steps, "scale": a.scale, "fps": FPS, "seed": 0},
        "command": " ".join(["python scripts/upscale_evidence.py", *(sys.argv[1:] if argv is None else argv)]),
        "date": datetime.date.today().isoformat(),
        "upscale_seconds": round(seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "cases": {},
    }
    for case, clips, scale in (("read back", read_back, 1), ("upscaled", upscaled, a.scale)):
        ev = video_metrics.clip_evidence(
            video_metrics.describe_clips(np.stack(clips), scale), base_desc, paired=True, seed=0
        )
        doc["cases"][case] = ev
        print(f"{case}: net {fmt_ratio(ev['net_ratio'])}, kept {fmt_share(ev['content_kept'])}", file=sys.stderr)
    lines = [
        f"# scv upscale of {a.samples} shapes32-motion clips to {a.scale}x (DDIM {a.steps}, through MP4 files)",
        "",
        "Paired with the base clips (clip i against clip i); ratios: case / base with a 95 % bootstrap "
        "interval; shares: 95 % Wilson interval.",
        "",
        "| case | single (frames) | repetition | consistent | per-frame ratio | net ratio | fit ratio | "
        "colour spread | content kept |",
        "|" + "---|" * 9,
    ]
    for case, ev in doc["cases"].items():
        lines.append(
            f"| {case} | {fmt_share(ev['single'])} | {fmt_share(ev['repetition'])} | {fmt_share(ev['consistent'])} | "
            f"{fmt_ratio(ev['step_ratio'])} | {fmt_ratio(ev['net_ratio'])} | {fmt_ratio(ev['fit_ratio'])} | "
            f"{fmt_ratio(ev['color_spread_ratio'])} | {fmt_share(ev['content_kept'])} |"
        )
    lines += [
        "",
        f"- `{doc['command']}`: {seconds / 60:.1f} min for the {a.samples} upscales, {doc['torch_threads']} "
        f"thread(s), {doc['date']}",
        "",
    ]
    outputs.atomic_write_text(out / "results.json", json.dumps(json_safe(doc), indent=1, allow_nan=False) + "\n")
    outputs.atomic_write_text(out / "table.md", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
