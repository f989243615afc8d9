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
    info = ObjectInfo(_centroid(img, comp, color, background), extent, float(fill), shape_from_fill(fill),
                      tuple(float(v) for v in color))
    if k >= 2:
        return Structure(k, False, True, extent, f"{k} objects"), info
    e_lo = SCALE_LO * lo * scale
    if scale >= 1.5:  # must also be larger than any base-size object
        e_lo = max(e_lo, 1.05 * hi)
    e_hi = SCALE_HI * hi * scale
    if not (e_lo <= extent <= e_hi):
        return Structure(1, False, False, extent, f"wrong scale (extent {extent:.0f}, want {e_lo:.0f}-{e_hi:.0f})"), info
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
    blur = sum(p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9.0
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
