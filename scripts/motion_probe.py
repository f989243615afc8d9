#!/usr/bin/env python
"""Where does motion go at 2x? Probes of the shipped shapes32 motion model (docs/results/demo-video.md, "Why motion
drops at 2x"): `python scripts/motion_probe.py --out probe.json CASE [CASE ...] [--samples 24]`.

Cases (DDIM; --steps 10, --guidance 3, --eta 1 unless given; seed 0; the video demo's labels and
starting noise):
  base                        32 px, no patch
  direct:S                    S x per side, no patch
  plan:NAME:S                 re-dilation (factor S, no NDCFG) on the blocks and window of NAME:
                              derived (the engine's rule), derived-all-steps, derived-stop15,
                              all-blocks, all-blocks-all-steps, deep-only, up-only, down-only
  shift:K:S                   the derived plan, sampled on a schedule whose SNR is divided by K
                              (the UNet told the timestep of the noise level it actually sees)
  temporal:SCOPE:S            the derived plan, and the motion modules of SCOPE run on their input
                              resized by 1/S (area); their residual is resized back (bilinear) and
                              added. SCOPE: all; deep (all but the outermost level); window (all,
                              during the plan's window only); plan (the re-dilated blocks' modules,
                              during the plan's window)
Per case: the video metrics (summarize_clips) plus trajectory statistics of the clips whose every
frame holds one object: `step` (mean per-frame centroid displacement, base px: the metric of
motion_ratio), `net` (first-to-last displacement / (frames - 1): insensitive to jitter) and `accel`
(mean change of the per-frame displacement: jitter; about 0.2 for the training clips).
Results are merged into --out as each case finishes.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from scalecrafter_video.commands.demo import sampling  # noqa: E402
from scalecrafter_video.engine.patch import remove_scalecrafter, scalecrafter  # noqa: E402
from scalecrafter_video.engine.plan import ref_step  # noqa: E402
from scalecrafter_video.models.shapes.motion_model import load_motion_model  # noqa: E402
from scalecrafter_video.models.shapes.pipeline import ShapesPipeline  # noqa: E402
from scalecrafter_video.models.shapes.video_metrics import (  # noqa: E402
    summarize_clips,
    trajectory_stats,
)

ALL = ["down_blocks.0", "down_blocks.1", "down_blocks.2", "mid_block", "up_blocks.0", "up_blocks.1", "up_blocks.2"]
DERIVED = ALL[1:-1]  # the engine's rule for this 3-level UNet: every block but the outermost two
PLANS = {  # blocks, window end in reference DDIM-50 steps (the derived plan stops at 30)
    "derived": (DERIVED, 30),
    "derived-all-steps": (DERIVED, 50),
    "derived-stop15": (DERIVED, 15),
    "all-blocks": (ALL, 30),
    "all-blocks-all-steps": (ALL, 50),
    "deep-only": (["down_blocks.2", "mid_block", "up_blocks.0"], 30),
    "up-only": (["mid_block", "up_blocks.0", "up_blocks.1"], 30),
    "down-only": (["down_blocks.1", "down_blocks.2", "mid_block"], 30),
}


class TemporalResample:
    """Run each chosen motion module on its input resized by 1/factor (area), add its residual back
    resized to the full grid (bilinear). The module's weights are untouched."""

    def __init__(self, unet):
        import torch.nn.functional as F

        self.factor, self.scope, self.t = 1, "all", 1000.0
        unet.register_forward_pre_hook(self._time, with_kwargs=True)
        for name, mod in unet.named_modules():
            if type(mod).__name__ == "AnimateDiffTransformer3D":
                level = 0 if name.startswith(("down_blocks.0.", "up_blocks.2.")) else 1
                orig = mod.forward

                def fwd(hidden_states, *args, _orig=orig, _level=level, **kwargs):
                    f = self.factor
                    outer, late = _level == 0, ref_step(self.t) >= PLANS["derived"][1]
                    active = (
                        f != 1
                        and not (self.scope in ("deep", "plan") and outer)
                        and not (self.scope in ("window", "plan") and late)
                    )
                    if not active:
                        return _orig(hidden_states, *args, **kwargs)
                    h, w = hidden_states.shape[-2:]
                    small = F.interpolate(hidden_states, size=(round(h / f), round(w / f)), mode="area")
                    delta = _orig(small, *args, **kwargs) - small
                    return hidden_states + F.interpolate(delta, size=(h, w), mode="bilinear", align_corners=False)

                mod.forward = fwd

    def _time(self, module, args, kwargs):
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        self.t = float(t.flatten()[0]) if torch.is_tensor(t) else float(t)


class SnrShift:
    """Sample on alphas_cumprod with SNR / k; a forward pre-hook gives the UNet the timestep whose
    trained noise level matches (so the model is told the truth about its input)."""

    def __init__(self, unet):
        self.k, self.tmap = 1.0, None
        unet.register_forward_pre_hook(self._remap, with_kwargs=True)
        original = ShapesPipeline.from_model.__func__

        def from_model(cls, model):
            pipe = original(cls, model)
            if self.k != 1.0:
                ac = pipe.scheduler.alphas_cumprod.double()
                snr = ac / (1 - ac)
                shifted = snr / self.k
                pipe.scheduler.alphas_cumprod = (shifted / (1 + shifted)).float()
                self.tmap = torch.stack([(snr.log() - v).abs().argmin() for v in shifted.log()])
            return pipe

        ShapesPipeline.from_model = classmethod(from_model)

    def _remap(self, module, args, kwargs):
        if self.k == 1.0:
            return None
        t = args[1]
        return (args[0], self.tmap[t.long().cpu()].to(t.device), *args[2:]), kwargs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cases", nargs="+")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--samples", type=int, default=24)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--eta", type=float, default=1.0)
    ap.add_argument("--motion-model", type=Path, default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = load_motion_model(a.motion_model)
    shift = SnrShift(model.unet)
    temporal = TemporalResample(model.unet)
    labels = torch.arange(a.samples) % len(model.class_names)
    results = json.loads(a.out.read_text()) if a.out.exists() else {}
    sampled_otherwise = (a.steps, a.guidance, a.eta) != (10, 3.0, 1.0)
    for case in a.cases:
        parts = case.split(":")
        kind, scale = parts[0], int(parts[-1]) if len(parts) > 1 else 1
        size = 32 * scale
        plan = None
        shift.k = float(parts[1]) if kind == "shift" else 1.0
        temporal.factor = scale if kind == "temporal" else 1
        temporal.scope = parts[1] if kind == "temporal" else "all"
        if kind in ("plan", "shift", "temporal"):
            blocks, stop = PLANS[parts[1] if kind == "plan" else "derived"]
            plan = {
                "name": case,
                "units": "samples",
                "main": [{"selector": b, "factor": scale, "stop": stop} for b in blocks],
            }
        elif kind not in ("base", "direct"):
            raise SystemExit(f"unknown case {case!r}")
        t0 = time.time()
        remove_scalecrafter(model.unet)
        kw = dict(steps=a.steps, guidance=a.guidance, eta=a.eta, seed=0, batch=8)
        if plan is None:
            clips = sampling.sample(model, labels, size, size, **kw)
        else:
            with scalecrafter(
                model.unet, height=size, width=size, preset=plan, ndcfg=False, batch_layout=sampling.BATCH_LAYOUT
            ):
                clips = sampling.sample(model, labels, size, size, **kw)
        s = summarize_clips(clips, scale)
        row = {
            k: (round(s[k], 4) if isinstance(s[k], float) else s[k])
            for k in ("n", "single", "repetition", "consistent", "motion", "bg_noise")
        }
        row.update(trajectory_stats(clips, scale), seconds=round(time.time() - t0, 1))
        if sampled_otherwise:  # such a case gets its own key and says how it was sampled
            case = f"{case} (steps {a.steps}, guidance {a.guidance:g}, eta {a.eta:g})"
        results[case] = row
        a.out.write_text(json.dumps(results, indent=1) + "\n")
        print(case, row, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
