"""Per-sample metrics for the demo: structure (one well-formed object at the expected scale) and
cleanliness (residual background noise). Pure numpy; images are float arrays in [0, 1], (H, W, 3).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .data import BACKGROUND, CLASS_NAMES, SIZE_RANGE

FG_THRESHOLD = 0.2  # max-abs channel difference from the background that counts as foreground
MIN_OBJECT_FRACTION = 0.2  # a component is an object if its area >= this x the smallest base object
FILL_MIN = 0.35  # area / bounding-box area of a well-formed object (triangle 0.5, circle 0.79)
INTERIOR_STD_MAX = 0.15  # colour std inside an object's eroded interior (flat fill)
SCALE_LO, SCALE_HI = 0.75, 1.3  # accepted extent: [lo * min_size * s, hi * max_size * s]
SQUARE_FILL_MIN = (1 + np.pi / 4) / 2  # fill of a square 1, of a circle pi/4, of a triangle 0.5
CIRCLE_FILL_MIN = (np.pi / 4 + 0.5) / 2


def foreground_mask(img: np.ndarray, background=BACKGROUND, threshold: float = FG_THRESHOLD) -> np.ndarray:
    diff = np.abs(np.asarray(img, dtype=np.float32) - np.asarray(background, dtype=np.float32))
    return diff.max(axis=-1) > threshold


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected component labels (0 = background, 1..n) by union-find over runs; no scipy."""
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    labels = np.zeros((h, w), dtype=np.int32)
    parent = [0]

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    nxt = 1
    for y in range(h):
        row = mask[y]
        if not row.any():
            continue
        # runs of True in this row
        padded = np.concatenate(([False], row, [False]))
        d = np.diff(padded.astype(np.int8))
        starts, ends = np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]
        for s, e in zip(starts, ends):
            above = labels[y - 1, s:e] if y > 0 else np.zeros(0, np.int32)
            roots = {find(int(v)) for v in np.unique(above) if v}
            if roots:
                r = min(roots)
                for o in roots:
                    parent[o] = r
            else:
                r = nxt
                parent.append(r)
                nxt += 1
            labels[y, s:e] = r
    if nxt == 1:
        return labels, 0
    roots = np.array([find(i) for i in range(nxt)])
    uniq = np.unique(roots[1:])
    remap = np.zeros(nxt, dtype=np.int32)
    remap[uniq] = np.arange(1, len(uniq) + 1)
    return remap[roots][labels], len(uniq)


def _erode(mask: np.ndarray) -> np.ndarray:
    m = np.pad(mask, 1, constant_values=False)
    return m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(r):
        m = np.pad(out, 1, constant_values=False)
        out = m[1:-1, 1:-1] | m[:-2, 1:-1] | m[2:, 1:-1] | m[1:-1, :-2] | m[1:-1, 2:]
    return out


@dataclass
class Structure:
    objects: int  # components at least object-sized (MIN_OBJECT_FRACTION of the smallest base object)
    single: bool  # exactly one object, well-formed, at the expected scale
    repetition: bool  # two or more objects
    extent: float  # largest side of the largest object's bounding box (0 if none)
    reason: str  # why `single` is False ("" when True)

    def to_dict(self):
        return asdict(self)


@dataclass
class ObjectInfo:
    """The largest object of an image: where it is, what shape and colour it has."""

    centroid: tuple[float, float]  # (x, y) in pixels of the image
    extent: float
    fill: float  # area / bounding-box area
    shape: str  # one of CLASS_NAMES, from the fill (see shape_from_fill)
    color: tuple[float, float, float]  # median colour of the eroded interior (or of the whole object)


def shape_from_fill(fill: float) -> str:
    """Shape class from the fill of the bounding box: square 1.0, circle pi/4, triangle 0.5
    (the thresholds are the midpoints)."""
    if fill >= SQUARE_FILL_MIN:
        return CLASS_NAMES[1]
    if fill >= CIRCLE_FILL_MIN:
        return CLASS_NAMES[0]
    return CLASS_NAMES[2]


def _centroid(img: np.ndarray, comp: np.ndarray, color: np.ndarray, background) -> tuple[float, float]:
    """Sub-pixel centre (x, y) of an object: pixels of the object and a one-pixel ring around it,
    weighted by how far each is from the background towards the object's colour (its coverage)."""
    bg = np.asarray(background, dtype=np.float32)
    span = color - bg
    coverage = ((img - bg) @ span) / max(float(span @ span), 1e-6)
    weight = np.where(_dilate(comp, 1), np.clip(coverage, 0.0, 1.0), 0.0)
    ys, xs = np.mgrid[: img.shape[0], : img.shape[1]]
    total = float(weight.sum())
    return float((weight * xs).sum() / total) + 0.5, float((weight * ys).sum() / total) + 0.5


def analyse(img: np.ndarray, scale: float, background=BACKGROUND) -> tuple[Structure, ObjectInfo | None]:
    """Judge one sample drawn at `scale` x the base size per side (base canvas 32 px) and describe
    its largest object (None when there is no object-sized component)."""
    img = np.asarray(img, dtype=np.float32)
    mask = foreground_mask(img, background)
    labels, n = label_components(mask)
    lo, hi = SIZE_RANGE
    min_area = MIN_OBJECT_FRACTION * (0.5 * lo * lo * np.sqrt(3) / 2)  # smallest triangle
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    objs = [i + 1 for i, a in enumerate(areas) if a >= min_area]
    k = len(objs)
    if k == 0:
        return Structure(0, False, False, 0.0, "no object"), None
    big = max(objs, key=lambda i: areas[i - 1])
    comp = labels == big
    ys, xs = np.nonzero(comp)
    bh, bw = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    extent = float(max(bh, bw))
    fill = areas[big - 1] / float(bh * bw)
    inner = _erode(_erode(comp))
    pixels = img[inner] if inner.sum() >= 4 else img[comp]
    color = np.median(pixels, axis=0)
    info = ObjectInfo(
        _centroid(img, comp, color, background),
        extent,
        float(fill),
        shape_from_fill(fill),
        tuple(float(v) for v in color),
    )
    if k >= 2:
        return Structure(k, False, True, extent, f"{k} objects"), info
    e_lo = SCALE_LO * lo * scale
    if scale >= 1.5:  # must also be larger than any base-size object
        e_lo = max(e_lo, 1.05 * hi)
    e_hi = SCALE_HI * hi * scale
    if not (e_lo <= extent <= e_hi):
        return Structure(
            1, False, False, extent, f"wrong scale (extent {extent:.0f}, want {e_lo:.0f}-{e_hi:.0f})"
        ), info
    if fill < FILL_MIN:
        return Structure(1, False, False, extent, f"ill-formed (fill {fill:.2f})"), info
    if inner.sum() < 4:
        return Structure(1, False, False, extent, "ill-formed (no interior)"), info
    std = float(img[inner].std(axis=0).max())
    if std > INTERIOR_STD_MAX:
        return Structure(1, False, False, extent, f"ill-formed (interior std {std:.2f})"), info
    return Structure(1, True, False, extent, ""), info


def structure(img: np.ndarray, scale: float, background=BACKGROUND) -> Structure:
    """Judge one sample drawn at `scale` x the base size per side (base canvas 32 px)."""
    return analyse(img, scale, background)[0]


def background_pixels(img: np.ndarray, background=BACKGROUND, margin: int | None = None) -> np.ndarray:
    """Pixels more than `margin` px (default ~1 base pixel, at least 2) from any foreground pixel."""
    if margin is None:
        margin = max(2, int(round(np.shape(img)[0] / 32)))
    return ~_dilate(foreground_mask(img, background, threshold=0.35), margin)


def background_noise(img: np.ndarray, background=BACKGROUND, margin: int | None = None) -> float:
    """Residual noise of the background: RMS high-frequency energy (pixel minus its 3x3 mean)
    over background pixels (more than `margin` px away from any foreground pixel), in [0, 1] units.
    Speckles count (they are the residual noise); object edges do not."""
    img = np.asarray(img, dtype=np.float32)
    h, w = img.shape[:2]
    p = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    blur = sum(p[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9.0
    hp = img - blur
    bg = background_pixels(img, background, margin)
    if bg.sum() < 16:
        return float("nan")
    return float(np.sqrt((hp[bg] ** 2).mean()))


def summarize(images, scale: float, background=BACKGROUND) -> dict:
    """Shares of single / repeated-object samples and the mean background noise of a case."""
    st = [structure(im, scale, background) for im in images]
    noise = [background_noise(im, background) for im in images]
    finite = [v for v in noise if np.isfinite(v)]
    return {
        "n": len(st),
        "single": sum(s.single for s in st) / max(1, len(st)),
        "repetition": sum(s.repetition for s in st) / max(1, len(st)),
        "mean_objects": float(np.mean([s.objects for s in st])) if st else 0.0,
        "bg_noise": float(np.mean(finite)) if finite else float("nan"),
        "per_sample": [s.to_dict() for s in st],
    }


def cleanliness(bg_noise: float, base_bg_noise: float, floor: float = 0.005) -> float:
    """Cleanliness relative to base-size samples: (base noise + floor) / (noise + floor).
    1.0 = as clean as base-size samples; lower = noisier background. The floor keeps the ratio
    meaningful when the base samples are almost perfectly clean."""
    if not np.isfinite(bg_noise):
        return 0.0
    return float((base_bg_noise + floor) / (bg_noise + floor))


# --- Evidence statistics: shares with Wilson intervals, ratios with bootstrap intervals, colour spread,
# content kept. Shared by the image (below) and the video (video_metrics.py) comparisons of a case with base.

Z95 = 1.959963984540054  # two-sided 95 % normal quantile
SAME_COLOR_TOL = 0.2  # max channel difference between two object colours that counts as the same colour
BOOTSTRAP_RESAMPLES = 2000


def wilson_interval(successes: int, n: int, z: float = Z95) -> list[float] | None:
    """Wilson score interval of a binomial share.

    Args:
        successes: Number of successes.
        n: Number of trials.
        z: Normal quantile (default 95 % two-sided).

    Returns:
        [low, high] in [0, 1], or None when n is 0.
    """
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes <= 0 else max(0.0, float(centre - half))
    hi = 1.0 if successes >= n else min(1.0, float(centre + half))
    return [lo, hi]


def share(successes: int, n: int) -> dict:
    """A share with its count and 95 % Wilson interval.

    Args:
        successes: Number of successes.
        n: Number of trials (samples, clips or frames: say which where it is reported).

    Returns:
        {"value", "k", "n", "ci95", "interval": "wilson"}; value and ci95 are None when n is 0.
    """
    return {
        "value": successes / n if n else None,
        "k": int(successes),
        "n": int(n),
        "ci95": wilson_interval(successes, n),
        "interval": "wilson",
    }


def _valid(values) -> np.ndarray:
    """Per-sample validity of scalars (finite) or vectors (all finite); None is invalid."""
    return np.array(
        [v is not None and bool(np.all(np.isfinite(np.asarray(v, dtype=np.float64)))) for v in values], dtype=bool
    )


def _stack(values, keep: np.ndarray) -> np.ndarray:
    return np.array([np.asarray(v, dtype=np.float64) for v, k in zip(values, keep) if k])


def color_spread(colors) -> float:
    """Spread of object colours across samples: the root-mean-square distance (RGB in [0, 1]) of each
    colour from their mean. NaN for fewer than two colours.

    Args:
        colors: Sequence of RGB triples.
    """
    c = np.asarray(colors, dtype=np.float64).reshape(-1, 3)
    if len(c) < 2:
        return float("nan")
    return float(np.sqrt(((c - c.mean(axis=0)) ** 2).sum(axis=1).mean()))


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values))


def bootstrap_ratio(
    case, base, *, paired: bool, statistic=_mean, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> dict:
    """Ratio statistic(case) / statistic(base) with a 95 % percentile bootstrap interval.

    `case` and `base` hold one value per sample (a scalar, or a vector such as a colour; None or NaN
    where the sample cannot be measured). Paired (the case's sample i grew from base sample i, e.g.
    a cascade or the upsampled control): only the indices valid in both count, and the bootstrap
    resamples those indices jointly. Unpaired (e.g. direct sampling at 2x: same label, but its own
    starting noise at its own size): each side's valid samples, resampled independently.

    Args:
        case: Per-sample values of the case.
        base: Per-sample values of the base samples (aligned with `case` by index when paired).
        paired: Whether sample i of the case grew from base sample i.
        statistic: Function of an array of valid values (n, ...) to a float (default the mean).
        resamples: Bootstrap resamples.
        seed: Seed of the bootstrap's generator (fixed, so reruns give the same interval).

    Returns:
        {"value", "n" (case samples used; pairs when paired), "n_base", "ci95", "interval"}; value is
        None when the base statistic is not positive or a side has no valid sample, ci95 None when a
        side has fewer than two.
    """
    case, base = list(case), list(base)
    ok_c, ok_b = _valid(case), _valid(base)
    if paired:
        if len(case) != len(base):
            raise ValueError(f"paired ratio needs as many case samples as base samples ({len(case)} vs {len(base)})")
        ok_c = ok_b = ok_c & ok_b
    c, b = _stack(case, ok_c), _stack(base, ok_b)
    kind = "paired bootstrap over samples" if paired else "unpaired bootstrap (case and base resampled apart)"
    out = {
        "value": None,
        "n": len(c),
        "n_base": len(b),
        "ci95": None,
        "interval": f"{kind}, {resamples} resamples, seed {seed}, percentile",
    }
    if len(c) == 0 or len(b) == 0:
        return out
    sb = statistic(b)
    if not np.isfinite(sb) or sb <= 0:
        return out
    out["value"] = float(statistic(c) / sb)
    if len(c) < 2 or len(b) < 2:
        return out
    rng = np.random.default_rng(seed)
    ratios = []
    for _ in range(resamples):
        ic = rng.integers(0, len(c), len(c))
        ib = ic if paired else rng.integers(0, len(b), len(b))
        den = statistic(b[ib])
        if np.isfinite(den) and den > 0:
            ratios.append(statistic(c[ic]) / den)
    ratios = np.asarray([r for r in ratios if np.isfinite(r)])
    if len(ratios) >= resamples // 2:
        out["ci95"] = [float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))]
    return out


def same_object(a, b, tol: float = SAME_COLOR_TOL) -> bool:
    """Whether two detected objects, each (shape, colour) or None, have the same shape and a colour
    within `tol` per channel. False when either is None."""
    if a is None or b is None:
        return False
    return a[0] == b[0] and float(np.abs(np.subtract(a[1], b[1])).max()) <= tol


def content_kept(case_objects, base_objects) -> dict:
    """Share of samples whose object keeps the class and colour of the base sample with the same index
    (for a cascade: the base sample it grew from), with a 95 % Wilson interval.

    Args:
        case_objects: Per sample, (shape, colour) of the detected object, or None.
        base_objects: The same for the base samples, aligned by index.

    Returns:
        share() over the base samples that have an object (a case sample without one is not kept).
    """
    if len(case_objects) != len(base_objects):
        raise ValueError(f"{len(case_objects)} case samples for {len(base_objects)} base samples")
    pairs = [(c, b) for c, b in zip(case_objects, base_objects) if b is not None]
    return share(sum(same_object(c, b) for c, b in pairs), len(pairs))


def describe_images(images, scale: float, background=BACKGROUND) -> list[dict]:
    """Per image: its structure and its largest object, as image_evidence() takes them.

    Args:
        images: Images (N, H, W, 3) in [0, 1] drawn at `scale` x the base size per side.
        scale: Per-side factor against the base size.
        background: Background colour.

    Returns:
        Per image {"single", "repetition", "object": (shape, colour) or None, "bg_noise"}.
    """
    out = []
    for img in images:
        st, info = analyse(img, scale, background)
        out.append(
            {
                "single": st.single,
                "repetition": st.repetition,
                "object": None if info is None else (info.shape, info.color),
                "bg_noise": background_noise(img, background),
            }
        )
    return out


def image_evidence(case: list[dict], base: list[dict], *, paired: bool, seed: int = 0) -> dict:
    """A case of images against the base-size images (both from describe_images): single and
    repetition shares (Wilson), colour spread relative to base (bootstrap), content kept (same
    class and colour as the base image of the same index; Wilson) and cleanliness.

    Args:
        case: describe_images() of the case.
        base: describe_images() of the base-size samples (same labels per index).
        paired: Whether image i of the case grew from base image i (cascade, upsampled control);
            decides the bootstrap of the colour-spread ratio.
        seed: Bootstrap seed.

    Returns:
        {"n", "single", "repetition", "color_spread", "color_spread_ratio", "content_kept",
        "bg_noise", "clean"}.
    """
    n = len(case)
    colors = [None if d["object"] is None else d["object"][1] for d in case]
    base_colors = [None if d["object"] is None else d["object"][1] for d in base]
    noise = [d["bg_noise"] for d in case if np.isfinite(d["bg_noise"])]
    base_noise = [d["bg_noise"] for d in base if np.isfinite(d["bg_noise"])]
    bg = float(np.mean(noise)) if noise else float("nan")
    return {
        "n": n,
        "single": share(sum(d["single"] for d in case), n),
        "repetition": share(sum(d["repetition"] for d in case), n),
        "color_spread": color_spread([c for c in colors if c is not None]),
        "color_spread_ratio": bootstrap_ratio(colors, base_colors, paired=paired, statistic=color_spread, seed=seed),
        "content_kept": content_kept([d["object"] for d in case], [d["object"] for d in base]),
        "bg_noise": bg,
        "clean": cleanliness(bg, float(np.mean(base_noise)) if base_noise else float("nan")),
    }
