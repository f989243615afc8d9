"""MP4 / PNG writing and the motion statistic (no model needed)."""

from __future__ import annotations

import os
import stat
import subprocess

import numpy as np
import pytest

from scalecrafter_video.engine.errors import ScaleCrafterError
from scalecrafter_video.outputs.media import motion_stats, read_video, write_mp4, write_png_frames


def _clip(n=8, h=64, w=96, seed=0):
    return np.random.default_rng(seed).random((n, h, w, 3), dtype=np.float32)


def _stream_line(path):
    import imageio_ffmpeg

    err = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(path)], capture_output=True, text=True).stderr
    return next(line for line in err.splitlines() if "Video:" in line)


def test_mp4_roundtrip_h264_yuv420p(tmp_path):
    p = write_mp4(tmp_path / "clip.mp4", _clip(), fps=8)
    v = read_video(p)
    assert v.shape == (8, 64, 96, 3) and v.dtype == np.uint8
    line = _stream_line(p)
    assert "h264" in line and "yuv420p" in line and "8 fps" in line
    assert sorted(x.name for x in tmp_path.iterdir()) == ["clip.mp4"]  # no temp file left


def test_mp4_odd_size_is_padded_to_even(tmp_path):
    v = read_video(write_mp4(tmp_path / "odd.mp4", _clip(3, 33, 45), fps=4))
    assert v.shape == (3, 34, 46, 3)


def test_mp4_lossy_but_close(tmp_path):
    # a smooth gradient survives H.264 at crf 18 within a few grey levels
    y, x = np.mgrid[0:64, 0:64] / 63.0
    frame = np.stack([x, y, (x + y) / 2], axis=-1).astype(np.float32)
    clip = np.stack([np.roll(frame, k, axis=1) for k in range(4)])
    v = read_video(write_mp4(tmp_path / "g.mp4", clip, fps=4)).astype(np.float32) / 255
    assert np.abs(v - clip).mean() < 0.03


def test_mp4_no_overwrite_and_overwrite(tmp_path):
    p = write_mp4(tmp_path / "a.mp4", _clip(2), fps=8)
    before = p.read_bytes()
    with pytest.raises(ScaleCrafterError, match="exists"):
        write_mp4(p, _clip(4), fps=8)
    assert p.read_bytes() == before
    write_mp4(p, _clip(4), fps=8, overwrite=True)
    assert read_video(p).shape[0] == 4


def test_mp4_failed_encode_leaves_nothing(tmp_path, monkeypatch):
    import imageio_ffmpeg

    def broken(path, *args, **kwargs):
        def gen():
            yield  # primed by send(None)
            raise RuntimeError("encoder died")  # on the first frame

        return gen()

    monkeypatch.setattr(imageio_ffmpeg, "write_frames", broken)
    with pytest.raises(RuntimeError, match="encoder died"):
        write_mp4(tmp_path / "x.mp4", _clip(3), fps=8)
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs(tmp_path):
    with pytest.raises(ScaleCrafterError, match="fps"):
        write_mp4(tmp_path / "a.mp4", _clip(2), fps=0)
    with pytest.raises(ValueError, match="frames"):
        write_mp4(tmp_path / "a.mp4", np.zeros((2, 8, 8)), fps=8)


def test_png_frames(tmp_path):
    from PIL import Image

    d = write_png_frames(tmp_path / "frames", _clip(3, 16, 24))
    names = sorted(x.name for x in d.iterdir())
    assert names == ["frame_0000.png", "frame_0001.png", "frame_0002.png"]
    assert Image.open(d / names[0]).size == (24, 16)
    with pytest.raises(ScaleCrafterError, match="exists"):
        write_png_frames(d, _clip(1, 16, 24))
    assert [x.name for x in tmp_path.iterdir()] == ["frames"]


def test_motion_stats_values():
    still = np.repeat(_clip(1), 5, axis=0)
    s = motion_stats(still)
    assert s["frames"] == 5 and s["mean_abs_frame_diff"] == 0 and s["temporal_std"] < 1e-6
    # alternating black / white frames: every step changes every pixel by 1
    flicker = np.stack([np.full((16, 16, 3), float(i % 2), np.float32) for i in range(4)])
    f = motion_stats(flicker)
    assert f["mean_abs_frame_diff"] == pytest.approx(1.0)
    assert f["coarse_abs_frame_diff"] == pytest.approx(1.0)
    assert f["first_last_abs_diff"] == pytest.approx(1.0)
    assert f["temporal_std"] == pytest.approx(0.5)
    assert motion_stats(_clip(1))["mean_abs_frame_diff"] == 0.0
    # uint8 and float give the same answer
    u = (flicker * 255).astype(np.uint8)
    assert motion_stats(u)["mean_abs_frame_diff"] == pytest.approx(1.0)


def test_motion_stats_orders_moving_vs_static():
    rng = np.random.default_rng(1)
    base = rng.random((32, 32, 3), dtype=np.float32)
    moving = np.stack([np.roll(base, 4 * k, axis=1) for k in range(6)])
    slow = np.stack([np.roll(base, k // 3, axis=1) for k in range(6)])
    assert motion_stats(moving)["mean_abs_frame_diff"] > motion_stats(slow)["mean_abs_frame_diff"] > 0


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_mp4_and_frame_folder_follow_the_umask(tmp_path, umask_022):
    """Like a plain write: MP4 0644 and frame folder 0755 (with 0644 PNGs) under umask 022."""
    mp4 = write_mp4(tmp_path / "clip.mp4", _clip(2), fps=8)
    frames = write_png_frames(tmp_path / "frames", _clip(2, 16, 16))
    assert stat.S_IMODE(mp4.stat().st_mode) == 0o644
    assert stat.S_IMODE(frames.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in frames.iterdir()} == {0o644}
    write_png_frames(frames, _clip(3, 16, 16), overwrite=True)  # replaced whole
    assert len(list(frames.iterdir())) == 3 and stat.S_IMODE(frames.stat().st_mode) == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "frames"]


def test_tiny_video_mp4_is_0644(tmp_path, umask_022):
    from scalecrafter_video.jobs.generate import run_job
    from scalecrafter_video.jobs.options import GenerateOptions

    (mp4,) = run_job(
        GenerateOptions(
            prompts=["x"],
            height=64,
            width=64,
            model="tiny-video",
            steps=1,
            frames=2,
            out_dir=tmp_path,
            video=True,
            progress=False,
            save_frames=True,
        )
    )
    assert stat.S_IMODE(mp4.stat().st_mode) == 0o644
    assert stat.S_IMODE(mp4.with_suffix(".json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / f"{mp4.stem}-frames").stat().st_mode) == 0o755
