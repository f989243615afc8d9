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

`trajectory_stats` separates motion from jitter on the clips with one object in every frame, and
`clip_evidence` compares a case with the base clips (ratios and shares with 95 % intervals) for
scripts/cascade_evidence.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .data import BACKGROUND, CLASS_NAMES
from .metrics import (
    SAME_COLOR_TOL,
    analyse,
    background_noise,
    background_pixels,
    bootstrap_ratio,
    cleanliness,
    color_spread,
    content_kept,
    share,
)

COLOR_TOL = SAME_COLOR_TOL  # max channel difference from the clip's median object colour counted as the same colour


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


def _checked(clip) -> np.ndarray:
    clip = np.asarray(clip, dtype=np.float32)
    if clip.ndim != 4 or clip.shape[-1] != 3:
        raise ValueError(f"expected a clip shaped (frames, height, width, 3), got {clip.shape}")
    return clip


def analyse_clip(clip, scale: float, background=BACKGROUND, judged=None) -> ClipReport:
    """Judge one clip (see the module's docstring); `judged` is the per-frame analyse() output when the
    caller has it already."""
    clip = _checked(clip)
    if judged is None:
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


def motion_ratio(motion: float | None, base_motion: float | None) -> float:
    """Motion relative to base size (both in base pixels per frame): 1.0 = kept, < 1 = suppressed;
    NaN where either is unknown (None or NaN: no clip followed) or base did not move."""
    unknown = motion is None or base_motion is None or not (np.isfinite(motion) and np.isfinite(base_motion))
    if unknown or base_motion <= 0:
        return float("nan")
    return float(motion / base_motion)


def track(judged, scale: float) -> np.ndarray | None:
    """The object's centre per frame (frames, 2), (x, y) in base pixels, when every frame of a clip
    holds exactly one object (None otherwise, or with fewer than 3 frames).

    Args:
        judged: Per frame, analyse()'s (Structure, ObjectInfo) of the clip.
        scale: Per-side factor the clip was drawn at.
    """
    centres = [
        None if info is None or st.objects != 1 else np.asarray(info.centroid, dtype=np.float64) / scale
        for st, info in judged
    ]
    if len(centres) < 3 or any(c is None for c in centres):
        return None
    return np.stack(centres)


def path_stats(path: np.ndarray) -> dict:
    """Motion of one followed path (frames, 2) in base pixels per frame.

    Returns:
        {"step": mean per-frame displacement (counts jitter), "net": first-to-last displacement /
        (frames - 1), "fit": speed of the least-squares line through the positions (slope of x and of
        y against the frame index; blind to jitter, uses every frame), "accel": mean change of the
        per-frame displacement vector (jitter)}. A bounce off a wall shortens net and fit alike.
    """
    path = np.asarray(path, dtype=np.float64)
    d = np.diff(path, axis=0)
    dd = np.diff(d, axis=0)
    t = np.arange(len(path), dtype=np.float64)
    t -= t.mean()
    slope = (t[:, None] * (path - path.mean(axis=0))).sum(axis=0) / (t * t).sum()
    return {
        "step": float(np.hypot(d[:, 0], d[:, 1]).mean()),
        "net": float(np.hypot(*(path[-1] - path[0]))) / (len(path) - 1),
        "fit": float(np.hypot(*slope)),
        "accel": float(np.hypot(dd[:, 0], dd[:, 1]).mean()) if len(dd) else 0.0,
    }


def trajectory_stats(clips, scale: float, background=BACKGROUND) -> dict:
    """Over the clips whose every frame holds exactly one object (`followed_clips` of them), in base
    pixels per frame, the means of path_stats(): `step` (what `motion` measures), `net`, `fit` and
    `accel`. None when no clip can be followed."""
    stats = []
    for clip in clips:
        path = track([analyse(frame, scale, background) for frame in _checked(clip)], scale)
        if path is not None:
            stats.append(path_stats(path))
    out = {"followed_clips": len(stats)}
    for key in ("step", "net", "fit", "accel"):
        out[key] = round(float(np.mean([st[key] for st in stats])), 4) if stats else None
    return out


def describe_clips(clips, scale: float, background=BACKGROUND) -> list[dict]:
    """Per clip, everything clip_evidence() needs, from one pass of the per-frame detector.

    Args:
        clips: Clips (N, frames, H, W, 3) in [0, 1] drawn at `scale` x the base size per side.
        scale: Per-side factor against the base size.
        background: Background colour.

    Returns:
        Per clip {"report": ClipReport, "path": track() or None, "motion": path_stats() or None,
        "object": (the clip's most common shape, the median colour of its object over the frames)
        or None when no frame has an object}.
    """
    out = []
    for clip in clips:
        clip = _checked(clip)
        judged = [analyse(frame, scale, background) for frame in clip]
        report = analyse_clip(clip, scale, background, judged=judged)
        path = track(judged, scale)
        colors = [info.color for _, info in judged if info is not None]
        obj = (report.shape, tuple(float(v) for v in np.median(np.asarray(colors), axis=0))) if colors else None
        out.append(
            {"report": report, "path": path, "motion": None if path is None else path_stats(path), "object": obj}
        )
    return out


MOTION_KEYS = {"step": "step_ratio", "net": "net_ratio", "fit": "fit_ratio"}


def clip_evidence(case: list[dict], base: list[dict], *, paired: bool, seed: int = 0) -> dict:
    """A case of clips against the base-size clips, both from describe_clips() with the same labels
    per index.

    Motion, on the clips with one object in every frame ("followed"), in base pixels per frame:
    `step_ratio` (per-frame displacement), `net_ratio` (first-to-last displacement per frame) and
    `fit_ratio` (least-squares velocity), each the case mean over the base mean with a 95 %
    bootstrap interval (bootstrap_ratio: paired over clips followed in both when clip i of the
    case grew from base clip i, unpaired otherwise). Shares with 95 % Wilson intervals: `single`
    (n = frames, which are correlated within a clip, so that interval is optimistic), `repetition`
    and `consistent` (n = clips), `content_kept` (n = base clips with an object). `color_spread_ratio`:
    colour_spread() of the clips' object colours over the base clips'. Also the demo's
    `motion_ratio` (every pair of consecutive one-object frames) and `clean`.

    Args:
        case: describe_clips() of the case.
        base: describe_clips() of the base clips.
        paired: Whether clip i of the case grew from base clip i (cascade, upsampled control).
        seed: Bootstrap seed.

    Returns:
        A dict of the numbers above, each ratio and share with its n and ci95.
    """
    reports = [d["report"] for d in case]
    base_reports = [d["report"] for d in base]
    n = len(case)
    frames = sum(r.frames for r in reports)

    def fmean(values):
        v = [x for x in values if x is not None and np.isfinite(x)]
        return float(np.mean(v)) if v else float("nan")

    out = {
        "n": n,
        "single": share(sum(r.single_frames for r in reports), frames),
        "repetition": share(sum(r.repetition for r in reports), n),
        "consistent": share(sum(r.consistent for r in reports), n),
        "followed": sum(d["path"] is not None for d in case),
    }
    for key, name in MOTION_KEYS.items():
        values = [None if d["motion"] is None else d["motion"][key] for d in case]
        base_values = [None if d["motion"] is None else d["motion"][key] for d in base]
        out[key] = fmean(values)
        out[name] = bootstrap_ratio(values, base_values, paired=paired, seed=seed)
    out["accel"] = fmean(None if d["motion"] is None else d["motion"]["accel"] for d in case)
    colors = [None if d["object"] is None else d["object"][1] for d in case]
    base_colors = [None if d["object"] is None else d["object"][1] for d in base]
    out["color_spread"] = color_spread([c for c in colors if c is not None])
    out["color_spread_ratio"] = bootstrap_ratio(colors, base_colors, paired=paired, statistic=color_spread, seed=seed)
    out["content_kept"] = content_kept([d["object"] for d in case], [d["object"] for d in base])
    out["motion"] = fmean(r.motion for r in reports)
    out["motion_ratio"] = motion_ratio(out["motion"], fmean(r.motion for r in base_reports))
    out["bg_noise"] = fmean(r.bg_noise for r in reports)
    out["clean"] = cleanliness(out["bg_noise"], fmean(r.bg_noise for r in base_reports))
    return out
