"""Video files and the motion statistic.

- `write_mp4`: H.264 (libx264), yuv420p, even width and height (odd sizes are padded by repeating the
  last row / column), `+faststart`, so the file plays in browsers. Written atomically
  (`outputs.atomic_path`, permissions from the umask): a failed encode leaves nothing behind.
- `write_png_frames`: one PNG per frame in a folder, all or nothing (`outputs.atomic_dir`).
- `motion_stats`: how much a clip moves, measured on [0, 1] frames before encoding (no optical flow).

Frames everywhere here are float arrays in [0, 1] or uint8 arrays, shaped (frames, height, width, 3).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..engine.errors import ScaleCrafterError
from .files import atomic_dir, atomic_path


def to_uint8(frames) -> np.ndarray:
    """(F, H, W, 3) float in [0, 1] (numpy or torch) or uint8 -> contiguous uint8."""
    if hasattr(frames, "detach"):
        frames = frames.detach().float().cpu().numpy()
    a = np.asarray(frames)
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"expected frames shaped (frames, height, width, 3), got {a.shape}")
    if a.dtype != np.uint8:
        a = np.clip(np.rint(a.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


def to_float(frames) -> np.ndarray:
    if hasattr(frames, "detach"):
        frames = frames.detach().float().cpu().numpy()
    a = np.asarray(frames)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    return np.clip(a.astype(np.float32), 0.0, 1.0)


def pad_even(frames: np.ndarray) -> np.ndarray:
    """yuv420p needs even sizes: repeat the last row / column where a side is odd."""
    _, h, w, _ = frames.shape
    ph, pw = h % 2, w % 2
    if ph or pw:
        frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    return frames


def write_mp4(path: str | os.PathLike, frames, fps: float, *, overwrite: bool = False, crf: int = 18) -> Path:
    """Encode frames as an H.264 / yuv420p MP4 at `path`, atomically. Returns the path."""
    import imageio_ffmpeg

    path = Path(path)
    if not fps > 0:
        raise ScaleCrafterError(f"fps must be positive, got {fps}")
    if path.exists() and not overwrite:
        raise ScaleCrafterError(f"{path} exists; pass --overwrite to replace it or choose another --out")
    a = pad_even(to_uint8(frames))
    if a.shape[0] < 1:
        raise ScaleCrafterError("no frames to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # keeps the suffix: ffmpeg picks the container from it
        writer = imageio_ffmpeg.write_frames(
            str(tmp),
            (a.shape[2], a.shape[1]),
            fps=fps,
            codec="libx264",
            pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p",
            macro_block_size=1,  # sizes are made even above; never let ffmpeg rescale
            quality=None,
            output_params=["-crf", str(crf), "-movflags", "+faststart"],
            ffmpeg_log_level="error",
        )
        writer.send(None)
        for f in a:
            writer.send(f)
        writer.close()
    return path


def write_png_frames(folder: str | os.PathLike, frames, *, overwrite: bool = False) -> Path:
    """Write frame_0000.png ... into `folder` (created whole from a temporary sibling)."""
    from PIL import Image

    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise ScaleCrafterError(f"{folder} exists; pass --overwrite to replace it or choose another --out")
    a = to_uint8(frames)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(folder, replace=overwrite) as tmp:
        for i, f in enumerate(a):
            Image.fromarray(f).save(tmp / f"frame_{i:04d}.png")
    return folder


def frames_dir_of(video_path: str | os.PathLike) -> Path:
    """The folder of lossless PNG frames written next to a video (`--save-frames`): `<stem>-frames`."""
    path = Path(video_path)
    return path.with_name(f"{path.stem}-frames")


def read_png_frames(folder: str | os.PathLike) -> np.ndarray:
    """A `write_png_frames` folder back as uint8 (F, H, W, 3), in frame order."""
    from PIL import Image

    paths = sorted(Path(folder).glob("frame_*.png"))
    if not paths:
        raise ValueError(f"{folder} holds no frame_*.png files")
    frames = []
    for p in paths:
        with Image.open(p) as im:
            frames.append(np.asarray(im.convert("RGB")))
    return np.stack(frames)


def read_video(path: str | os.PathLike) -> np.ndarray:
    """Decode a video to uint8 (F, H, W, 3) with decord."""
    import decord

    vr = decord.VideoReader(str(path), ctx=decord.cpu(0))
    return vr.get_batch(list(range(len(vr)))).asnumpy()


def motion_stats(frames) -> dict[str, float | int]:
    """Flow-free motion measures of one clip (frames in [0, 1]; uint8 is rescaled).

    - mean_abs_frame_diff: mean |x[t+1] - x[t]| over frames, pixels and RGB. The headline number.
    - coarse_abs_frame_diff: the same on 8x8-average-pooled luma, which follows where large regions
      move and ignores fine texture flicker.
    - temporal_std: per-pixel standard deviation over time, averaged.
    - first_last_abs_diff: mean |x[last] - x[0]| (net change over the clip).
    A clip of one frame has no motion: all zeros.
    """
    x = to_float(frames)
    if x.ndim != 4:
        raise ValueError(f"expected (frames, height, width, 3), got {x.shape}")
    n = x.shape[0]
    if n < 2:
        return {
            "frames": n,
            "mean_abs_frame_diff": 0.0,
            "coarse_abs_frame_diff": 0.0,
            "temporal_std": 0.0,
            "first_last_abs_diff": 0.0,
        }
    luma = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    _, h, w = luma.shape
    k = 8 if min(h, w) >= 16 else 1
    hh, ww = h // k * k, w // k * k
    coarse = luma[:, :hh, :ww].reshape(n, hh // k, k, ww // k, k).mean(axis=(2, 4))
    return {
        "frames": n,
        "mean_abs_frame_diff": float(np.abs(np.diff(x, axis=0)).mean()),
        "coarse_abs_frame_diff": float(np.abs(np.diff(coarse, axis=0)).mean()),
        "temporal_std": float(x.std(axis=0).mean()),
        "first_last_abs_diff": float(np.abs(x[-1] - x[0]).mean()),
    }
