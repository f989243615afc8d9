"""Per-clip metrics for the video demo, built on the image demo's per-frame detector (metrics.py).

A clip is a float array (frames, H, W, 3) in [0, 1] drawn at `scale` x the base size per side.

- single: share of frames with exactly one well-formed object at the expected scale (the image
  rule, per frame);
- repetition: share of clips with any frame of two or more objects;
- consistent: share of clips whose object (the largest, where there are copies) keeps its class
  (shape) and colour and is present in every frame;
- motion: mean per-frame displacement of the object's centre, in base pixels (pixels / scale),
  between consecutive frames that both hold exactly one object; motion_ratio = motion / motion at
  base size (1.0 = motion kept, below 1 = suppressed);
- clean: background noise relative to base size, as in the image demo (per frame, averaged);
- bg_change / color_change: mean frame-to-frame change of the background pixels and of the
  object's colour (temporal flicker; 0 for a perfectly coherent clip).

`trajectory_stats` separates motion from jitter on the clips with one object in every frame.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .data import BACKGROUND, CLASS_NAMES
from .metrics import analyse, background_noise, background_pixels

COLOR_TOL = 0.2  # max channel difference from the clip's median object colour that counts as the same colour


@dataclass
class ClipReport:
    frames: int
    single_frames: int  # frames judged single by the image rule
    repetition: bool  # some frame has two or more objects
    consistent: bool  # an object in every frame, same shape and colour throughout
    shape: str  # the most common shape of the object over the frames ("" if never present)
    motion: float  # mean displacement of the object's centre per frame, base pixels (nan: no two
    # consecutive frames with exactly one object)
    bg_noise: float
    bg_change: float  # mean |x[t+1] - x[t]| over pixels that are background (away from objects) in both frames
    color_change: float  # mean max-channel change of the object's colour between frames (same pairs as motion)
    reason: str  # why the clip is not consistent ("" when it is)

    def to_dict(self):
        return asdict(self)


def _finite_mean(values) -> float:
    v = [x for x in values if np.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def analyse_clip(clip, scale: float, background=BACKGROUND) -> ClipReport:
    clip = np.asarray(clip, dtype=np.float32)
    if clip.ndim != 4 or clip.shape[-1] != 3:
        raise ValueError(f"expected a clip shaped (frames, height, width, 3), got {clip.shape}")
    judged = [analyse(frame, scale, background) for frame in clip]
    infos = [info for _, info in judged]
    present = [info is not None for info in infos]
    shapes = [info.shape for info in infos if info is not None]
    colors = np.array([info.color for info in infos if info is not None], dtype=np.float32)
    shape = max(set(shapes), key=shapes.count) if shapes else ""
    if not all(present):
        reason = f"no object in {present.count(False)} of {len(present)} frames"
    elif len(set(shapes)) > 1:
        reason = "shape changes (" + ", ".join(sorted(set(shapes))) + ")"
    elif np.abs(colors - np.median(colors, axis=0)).max() > COLOR_TOL:
        reason = "colour changes"
    else:
        reason = ""
    # follow the object only between frames that hold exactly one: with copies the largest one
    # can switch from copy to copy, which is not motion
    alone = [info if s.objects == 1 else None for s, info in judged]
    pairs = [(a, b) for a, b in zip(alone, alone[1:]) if a is not None and b is not None]
    steps = [np.hypot(b.centroid[0] - a.centroid[0], b.centroid[1] - a.centroid[1]) / scale for a, b in pairs]
    color_steps = [float(np.abs(np.subtract(b.color, a.color)).max()) for a, b in pairs]
    bg = [background_pixels(frame, background) for frame in clip]
    bg_steps = []
    for t in range(len(clip) - 1):
        both = bg[t] & bg[t + 1]
        if both.any():
            bg_steps.append(float(np.abs(clip[t + 1] - clip[t])[both].mean()))
    return ClipReport(
        frames=len(clip),
        single_frames=sum(s.single for s, _ in judged),
        repetition=any(s.repetition for s, _ in judged),
        consistent=reason == "",
        shape=shape,
        motion=float(np.mean(steps)) if steps else float("nan"),
        bg_noise=_finite_mean(background_noise(frame, background) for frame in clip),
        bg_change=float(np.mean(bg_steps)) if bg_steps else float("nan"),
        color_change=float(np.mean(color_steps)) if color_steps else float("nan"),
        reason=reason,
    )


def summarize_clips(clips, scale: float, prompts: list[str] | None = None, background=BACKGROUND) -> dict:
    """Shares and means over the clips of one case (motion_ratio and clean are relative to the
    base-size case: motion_ratio() here, metrics.cleanliness()). With `prompts` (the class asked
    for, per clip), `class_match` is the share of clips whose object has that shape."""
    reports = [analyse_clip(c, scale, background) for c in clips]
    n = len(reports)
    frames = sum(r.frames for r in reports)
    out = {
        "n": n,
        "single": sum(r.single_frames for r in reports) / max(1, frames),
        "repetition": sum(r.repetition for r in reports) / max(1, n),
        "consistent": sum(r.consistent for r in reports) / max(1, n),
        "motion": _finite_mean(r.motion for r in reports),
        "bg_noise": _finite_mean(r.bg_noise for r in reports),
        "bg_change": _finite_mean(r.bg_change for r in reports),
        "color_change": _finite_mean(r.color_change for r in reports),
        "per_clip": [r.to_dict() for r in reports],
    }
    if prompts is not None:
        if len(prompts) != n:
            raise ValueError(f"{len(prompts)} prompts for {n} clips")
        unknown = set(prompts) - set(CLASS_NAMES)
        if unknown:
            raise ValueError(f"unknown class name(s) {sorted(unknown)}; the shapes are {', '.join(CLASS_NAMES)}")
        out["class_match"] = sum(r.shape == p for r, p in zip(reports, prompts)) / max(1, n)
    return out


def motion_ratio(motion: float, base_motion: float) -> float:
    """Motion relative to base size (both in base pixels per frame): 1.0 = kept, < 1 = suppressed."""
    if not (np.isfinite(motion) and np.isfinite(base_motion)) or base_motion <= 0:
        return float("nan")
    return float(motion / base_motion)


def trajectory_stats(clips, scale: float, background=BACKGROUND) -> dict:
    """Over the clips whose every frame holds exactly one object (`followed_clips` of them), in base
    pixels: `step`, the mean per-frame centroid displacement (what `motion` measures); `net`, the
    first-to-last displacement / (frames - 1), blind to jitter; `accel`, the mean change of the
    per-frame displacement vector (jitter; 0 for constant velocity away from the walls). None when
    no clip can be followed."""
    steps, nets, accels = [], [], []
    for clip in clips:
        centres = []
        for frame in np.asarray(clip, dtype=np.float32):
            judged, info = analyse(frame, scale, background)
            centres.append(None if info is None or judged.objects != 1 else np.asarray(info.centroid) / scale)
        if len(centres) < 3 or any(c is None for c in centres):
            continue
        path = np.stack(centres)
        d = np.diff(path, axis=0)
        steps.append(float(np.hypot(d[:, 0], d[:, 1]).mean()))
        nets.append(float(np.hypot(*(path[-1] - path[0]))) / (len(path) - 1))
        dd = np.diff(d, axis=0)
        accels.append(float(np.hypot(dd[:, 0], dd[:, 1]).mean()))
    mean = (lambda v: round(float(np.mean(v)), 4) if v else None)
    return {"followed_clips": len(steps), "step": mean(steps), "net": mean(nets), "accel": mean(accels)}
