"""Video metrics on constructed clips: single, repetition, consistent, motion_ratio, clean, and the
per-frame object description they rest on (shape from fill, colour, sub-pixel centre)."""

import math

import numpy as np
import pytest
import torch

from scalecrafter_video.models.shapes.data import (
    BACKGROUND,
    CLASS_NAMES,
    clip_params,
    render,
    sample_params,
)
from scalecrafter_video.models.shapes.metrics import analyse
from scalecrafter_video.models.shapes.video_metrics import (
    analyse_clip,
    motion_ratio,
    summarize_clips,
)

RED, BLUE = (0.9, 0.15, 0.15), (0.2, 0.3, 0.95)


def _frame(label, d, cx, cy, color=RED, scale=1.0):
    img = render(
        torch.tensor([label]),
        torch.tensor([float(d)]),
        torch.tensor([[float(cx), float(cy)]]),
        torch.tensor([color]),
        scale=scale,
    )
    return img[0].permute(1, 2, 0).numpy()


def _clip(label=0, d=17.0, start=(12.0, 14.0), velocity=(1.0, 0.5), frames=8, scale=1.0, color=RED):
    return np.stack(
        [_frame(label, d, start[0] + velocity[0] * t, start[1] + velocity[1] * t, color, scale) for t in range(frames)]
    )


def _blank(size):
    return np.ones((size, size, 3), np.float32) * np.asarray(BACKGROUND, np.float32)


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_shape_colour_and_centre_of_rendered_objects(scale):
    labels, sizes, centers, colors = sample_params(60, torch.Generator().manual_seed(scale))
    imgs = render(labels, sizes, centers, colors, scale=scale).permute(0, 2, 3, 1).numpy()
    for img, label, c, col in zip(imgs, labels, centers, colors, strict=True):
        _, info = analyse(img, scale)
        assert info.shape == CLASS_NAMES[label]
        assert np.abs(np.subtract(info.color, col.numpy())).max() < 0.02
        if label != 2:  # a triangle's area centroid is below its bounding-box centre
            assert np.hypot(*(np.subtract(info.centroid, c.numpy() * scale))) < 0.1 * scale


def test_a_coherent_moving_clip():
    r = analyse_clip(_clip(), 1)
    assert r.consistent and r.reason == "" and not r.repetition
    assert r.single_frames == 8 and r.shape == "circle"
    assert r.motion == pytest.approx(math.hypot(1.0, 0.5), abs=0.02)
    assert r.bg_change < 1e-6 and r.color_change < 1e-6


def test_training_clips_move_at_their_speed():
    labels, sizes, path, colors = clip_params(4, torch.Generator().manual_seed(3))
    for i in range(4):
        clip = np.stack(
            [
                render(labels[i : i + 1], sizes[i : i + 1], path[i, f][None], colors[i : i + 1])[0]
                .permute(1, 2, 0)
                .numpy()
                for f in range(8)
            ]
        )
        truth = (path[i, 1:] - path[i, :-1]).norm(dim=-1).mean().item()
        assert analyse_clip(clip, 1).motion == pytest.approx(truth, abs=0.05)


def test_motion_is_measured_in_base_pixels():
    base = analyse_clip(_clip(), 1)
    big = analyse_clip(_clip(scale=2, velocity=(1.0, 0.5)), 2)  # same path in base units, drawn 2x
    assert big.motion == pytest.approx(base.motion, rel=0.03)
    still = analyse_clip(_clip(velocity=(0.0, 0.0)), 1)
    assert still.motion < 1e-6
    assert motion_ratio(big.motion, base.motion) == pytest.approx(1.0, abs=0.03)
    assert motion_ratio(still.motion, base.motion) == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(motion_ratio(1.0, 0.0)) and math.isnan(motion_ratio(float("nan"), 1.0))
    assert math.isnan(motion_ratio(None, 1.0)) and math.isnan(motion_ratio(1.0, None))  # no clip followed


def test_object_missing_in_a_frame_is_not_consistent():
    clip = _clip()
    clip[3] = _blank(32)
    r = analyse_clip(clip, 1)
    assert not r.consistent and "no object in 1 of 8" in r.reason
    assert r.single_frames == 7


def test_shape_change_is_not_consistent():
    clip = _clip()
    clip[5:] = _clip(label=1)[5:]
    r = analyse_clip(clip, 1)
    assert not r.consistent and "shape changes" in r.reason


def test_colour_change_is_not_consistent():
    clip = _clip()
    clip[4:] = _clip(color=BLUE)[4:]
    r = analyse_clip(clip, 1)
    assert not r.consistent and r.reason == "colour changes"
    assert r.color_change > 0.1  # one jump of ~0.8 over 7 frame pairs


def test_two_objects_in_one_frame_is_repetition():
    clip = _clip(scale=2, d=16, start=(8.0, 8.0), velocity=(0.5, 0.0))
    clip[2] = _blank(64)
    clip[2][:32, :32] = _frame(0, 16, 16, 16)
    clip[2][32:, 32:] = _frame(0, 16, 16, 16)
    r = analyse_clip(clip, 2)
    assert r.repetition and r.single_frames < 8
    assert r.motion == pytest.approx(0.5, abs=0.02)  # followed across the single-object frames only
    copies = np.stack([clip[2]] * 4)
    assert math.isnan(analyse_clip(copies, 2).motion)


def test_background_flicker_and_noise():
    rng = np.random.default_rng(0)
    clip = _clip()
    noisy = np.clip(clip + rng.normal(0, 0.04, clip.shape), 0, 1).astype(np.float32)
    r_clean, r_noisy = analyse_clip(clip, 1), analyse_clip(noisy, 1)
    assert r_noisy.bg_change > 0.02 > r_clean.bg_change
    assert r_noisy.bg_noise > 5 * r_clean.bg_noise


def test_summary_shares():
    good = _clip()
    gone = _clip()
    gone[0] = _blank(32)
    rep = _clip(scale=2, d=16, start=(8.0, 8.0), velocity=(0.5, 0.0))
    rep[1] = _blank(64)
    rep[1][:32, :32] = _frame(1, 16, 16, 16)
    rep[1][32:, 32:] = _frame(1, 16, 16, 16)
    base = summarize_clips([good, gone], 1, prompts=["circle", "square"])
    assert base["n"] == 2 and base["consistent"] == 0.5 and base["repetition"] == 0.0
    assert base["single"] == pytest.approx(15 / 16) and base["class_match"] == 0.5
    big = summarize_clips([rep, _clip(scale=2)], 2)
    assert big["repetition"] == 0.5 and "class_match" not in big
    assert big["motion"] == pytest.approx(np.mean([c["motion"] for c in big["per_clip"]]))
    with pytest.raises(ValueError, match="unknown class"):
        summarize_clips([good], 1, prompts=["dog"])
    with pytest.raises(ValueError, match="frames, height, width, 3"):
        analyse_clip(good[0], 1)


def test_trajectory_stats_separate_motion_from_jitter():
    from scalecrafter_video.models.shapes.video_metrics import trajectory_stats

    steady = _clip(velocity=(1.0, 0.0), start=(12.0, 16.0))  # 1 px per frame, no wall in reach
    stats = trajectory_stats([steady], 1)
    assert stats["followed_clips"] == 1
    assert stats["step"] == pytest.approx(1.0, abs=0.1) and stats["net"] == pytest.approx(1.0, abs=0.1)
    assert stats["fit"] == pytest.approx(1.0, abs=0.1)
    assert stats["accel"] < 0.15
    # the same path with the object shaken 1 px up and down every other frame: per-frame steps grow,
    # the net displacement does not, and the jitter shows in accel
    shaken = np.stack([_frame(0, 17.0, 12.0 + t, 16.0 + (1.0 if t % 2 else 0.0), RED) for t in range(8)])
    jitter = trajectory_stats([shaken], 1)
    assert jitter["step"] > stats["step"] + 0.2 and jitter["net"] == pytest.approx(stats["net"], abs=0.15)
    assert jitter["accel"] > 1.0 and jitter["fit"] == pytest.approx(stats["fit"], abs=0.15)
    # drawn 2x larger along a 2x longer path: the same motion in base pixels
    big = trajectory_stats([_clip(velocity=(1.0, 0.0), start=(12.0, 16.0), scale=2.0)], 2)
    assert big["net"] == pytest.approx(stats["net"], abs=0.1)
    assert trajectory_stats([np.stack([_blank(32)] * 8)], 1) == {
        "followed_clips": 0,
        "step": None,
        "net": None,
        "fit": None,
        "accel": None,
    }
