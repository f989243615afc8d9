"""Synthetic "one object per image" data set for the demo model.

Every 32x32 image holds exactly one filled shape (circle, square or triangle, the class) in one of
six saturated colours on a fixed mid-grey background. Objects fill a good part of the canvas (side
or diameter 14-20 px), so at 4x per side a base-size object is clearly at the wrong scale, and a
model that only knows 32x32 images repeats objects when sampled directly on a larger canvas.

Clips (for the motion model) hold the same kind of object moving at constant velocity (random
direction, SPEED_RANGE px per frame) and bouncing off the borders (the centre stays as far from the
edges as in the still images). Images and clips are generated on the fly from a seeded
torch.Generator; values are in [-1, 1] (model space).
"""

from __future__ import annotations

import math

import torch

CLASS_NAMES = ("circle", "square", "triangle")
IMAGE_SIZE = 32
BACKGROUND = (0.5, 0.5, 0.5)  # in [0, 1]
SIZE_RANGE = (14.0, 20.0)  # object extent (diameter / side / triangle base) in base pixels
MARGIN = 2.0  # minimum distance between the object's bounding box and the canvas edge
PALETTE = (
    (0.90, 0.15, 0.15),  # red
    (0.15, 0.80, 0.20),  # green
    (0.20, 0.30, 0.95),  # blue
    (0.95, 0.85, 0.10),  # yellow
    (0.85, 0.20, 0.85),  # magenta
    (0.10, 0.80, 0.85),  # cyan
)
COLOR_JITTER = 0.05
FRAMES = 8  # frames per training clip
SPEED_RANGE = (0.5, 1.5)  # object speed in base pixels per frame


def _shape_sdf(kind: torch.Tensor, cx, cy, size, xs, ys) -> torch.Tensor:
    """Signed distance (pixels, negative inside) of each shape; all args broadcast to (B, H, W)."""
    dx = xs - cx
    dy = ys - cy
    r = size / 2
    circle = torch.sqrt(dx * dx + dy * dy) - r
    square = torch.maximum(dx.abs(), dy.abs()) - r
    # equilateral triangle pointing up, base = size, centred on its bounding box
    h = size * math.sqrt(3) / 2
    top = cy - h / 2
    # edges: the bottom (y <= cy + h / 2), and the two sloped edges through the apex (cx, top), whose
    # outward normals are (+-cos30, -sin30) in image (y-down) coordinates
    n = math.sqrt(3) / 2
    d_bottom = dy - h / 2
    d_right = dx * n - (ys - top) * 0.5
    d_left = -dx * n - (ys - top) * 0.5
    tri = torch.maximum(torch.maximum(d_bottom, d_right), d_left)
    return torch.where(kind == 0, circle, torch.where(kind == 1, square, tri))


def render(
    labels: torch.Tensor,
    sizes: torch.Tensor,
    centers: torch.Tensor,
    colors: torch.Tensor,
    image_size: int = IMAGE_SIZE,
    scale: float = 1.0,
    canvas: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Render images in [0, 1], shape (B, 3, H, W), H x W = canvas * scale (all geometry scaled);
    `canvas` is (height, width) in base pixels, default image_size x image_size."""
    canvas_h, canvas_w = canvas or (image_size, image_size)
    coords = [(torch.arange(int(round(c * scale)), dtype=torch.float32) + 0.5) / scale for c in (canvas_h, canvas_w)]
    ys, xs = torch.meshgrid(*coords, indexing="ij")
    b = labels.shape[0]
    view = (b, 1, 1)
    sdf = _shape_sdf(
        labels.view(view), centers[:, 0].view(view), centers[:, 1].view(view), sizes.view(view), xs[None], ys[None]
    )
    alpha = (0.5 - sdf * scale).clamp(0, 1)[:, None]  # one output pixel of antialiasing
    bg = torch.tensor(BACKGROUND, dtype=torch.float32).view(1, 3, 1, 1)
    return bg * (1 - alpha) + colors.view(b, 3, 1, 1) * alpha


def sample_params(n: int, generator: torch.Generator, canvas: tuple[float, float] = (IMAGE_SIZE, IMAGE_SIZE)):
    """Random labels, sizes, centres (x, y in base pixels) and colours for n images on a canvas of
    (height, width) base pixels (default the 32x32 training canvas)."""
    labels = torch.randint(0, len(CLASS_NAMES), (n,), generator=generator)
    lo, hi = SIZE_RANGE
    sizes = lo + (hi - lo) * torch.rand(n, generator=generator)
    half = sizes / 2
    middle = torch.tensor([canvas[1] / 2, canvas[0] / 2])  # (x, y)
    room = middle - half[:, None] - MARGIN  # max offset of the centre from the canvas centre, per axis
    offs = (torch.rand(n, 2, generator=generator) * 2 - 1) * room
    centers = middle + offs
    pal = torch.tensor(PALETTE, dtype=torch.float32)
    colors = pal[torch.randint(0, len(PALETTE), (n,), generator=generator)]
    colors = (colors + COLOR_JITTER * (torch.rand(n, 3, generator=generator) * 2 - 1)).clamp(0, 1)
    return labels, sizes, centers, colors


def render_at(n: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """n data-set images drawn directly at height x width pixels, in [0, 1], shape (n, 3, H, W): the
    true high-resolution counterpart of the 32x32 data (objects scaled by the shorter side / 32)."""
    scale = min(height, width) / IMAGE_SIZE
    canvas = (height / scale, width / scale)
    labels, sizes, centers, colors = sample_params(n, generator, canvas)
    return render(labels, sizes, centers, colors, scale=scale, canvas=canvas)


def make_batch(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(images in [-1, 1] of shape (n, 3, 32, 32), class labels (n,))."""
    labels, sizes, centers, colors = sample_params(n, generator)
    images = render(labels, sizes, centers, colors)
    return images * 2 - 1, labels


def bounce(
    start: torch.Tensor, velocity: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, frames: int
) -> torch.Tensor:
    """Positions (n, frames, 2) of points moving from `start` at `velocity` per frame and reflected
    at the walls [lo, hi] (per point, broadcast over x and y): the triangle wave of the free path."""
    t = torch.arange(frames, dtype=torch.float32).view(1, -1, 1)
    span = (hi - lo).clamp_min(1e-6).view(-1, 1, 1)
    q = torch.remainder(start[:, None] + velocity[:, None] * t - lo.view(-1, 1, 1), 2 * span)
    return lo.view(-1, 1, 1) + torch.where(q > span, 2 * span - q, q)


def clip_params(n: int, generator: torch.Generator, frames: int = FRAMES):
    """Labels, sizes, colours (one per clip) and centres per frame (n, frames, 2) for n clips."""
    labels, sizes, centers, colors = sample_params(n, generator)
    lo, hi = SPEED_RANGE
    speed = lo + (hi - lo) * torch.rand(n, generator=generator)
    angle = 2 * math.pi * torch.rand(n, generator=generator)
    velocity = torch.stack([speed * torch.cos(angle), speed * torch.sin(angle)], dim=1)
    room = IMAGE_SIZE / 2 - sizes / 2 - MARGIN
    path = bounce(centers, velocity, IMAGE_SIZE / 2 - room, IMAGE_SIZE / 2 + room, frames)
    return labels, sizes, path, colors


def make_clips(n: int, generator: torch.Generator, frames: int = FRAMES) -> tuple[torch.Tensor, torch.Tensor]:
    """(clips in [-1, 1] of shape (n, 3, frames, 32, 32), class labels (n,)): the layout
    UNetMotionModel takes (batch, channels, frames, height, width)."""
    labels, sizes, path, colors = clip_params(n, generator, frames)
    frame_images = render(
        labels.repeat_interleave(frames),
        sizes.repeat_interleave(frames),
        path.reshape(-1, 2),
        colors.repeat_interleave(frames, dim=0),
    )
    clips = frame_images.view(n, frames, 3, IMAGE_SIZE, IMAGE_SIZE).permute(0, 2, 1, 3, 4)
    return clips * 2 - 1, labels
