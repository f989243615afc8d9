"""Moving-shapes clips: seeded, drawn with the image data's classes, colours and renderer, one object
per frame moving at constant speed and bouncing off the borders."""

import numpy as np
import pytest
import torch

from scalecrafter_video.models.shapes.data import (
    IMAGE_SIZE,
    MARGIN,
    SPEED_RANGE,
    bounce,
    clip_params,
    make_clips,
    render,
)
from scalecrafter_video.models.shapes.metrics import analyse


def test_clips_are_seeded_and_shaped_for_the_motion_unet():
    a, la = make_clips(5, torch.Generator().manual_seed(1))
    b, lb = make_clips(5, torch.Generator().manual_seed(1))
    c, _ = make_clips(5, torch.Generator().manual_seed(2))
    assert a.shape == (5, 3, 8, IMAGE_SIZE, IMAGE_SIZE)  # (batch, channels, frames, H, W)
    assert torch.equal(a, b) and torch.equal(la, lb) and not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1


def test_every_frame_is_the_image_renderer_on_the_clip_path():
    labels, sizes, path, colors = clip_params(3, torch.Generator().manual_seed(0), frames=6)
    clips, lab = make_clips(3, torch.Generator().manual_seed(0), frames=6)
    assert torch.equal(lab, labels)
    for f in range(6):
        frame = render(labels, sizes, path[:, f], colors) * 2 - 1
        assert torch.equal(clips[:, :, f], frame)


def test_constant_speed_and_bounce_inside_the_canvas():
    n, frames = 400, 8
    labels, sizes, path, colors = clip_params(n, torch.Generator().manual_seed(5), frames=frames)
    half = sizes[:, None, None] / 2
    assert (path - half >= MARGIN - 1e-4).all() and (path + half <= IMAGE_SIZE - MARGIN + 1e-4).all()
    step = (path[:, 1:] - path[:, :-1]).norm(dim=-1)
    lo, hi = SPEED_RANGE
    assert (step <= hi + 1e-4).all()
    # away from the walls a step is the full speed; the median is inside the speed range
    assert lo - 1e-4 <= step.median() <= hi
    # some clips bounce: a velocity component changes sign
    d = path[:, 1:] - path[:, :-1]
    assert ((d[:, 1:] * d[:, :-1]) < 0).any()


def test_bounce_reflects_at_the_walls():
    start = torch.tensor([[9.0, 5.0]])
    path = bounce(start, torch.tensor([[1.0, 0.0]]), torch.tensor([5.0]), torch.tensor([10.0]), 5)
    assert path[0, :, 0].tolist() == [9.0, 10.0, 9.0, 8.0, 7.0]
    assert path[0, :, 1].tolist() == [5.0] * 5


@pytest.mark.parametrize("seed", [0, 1])
def test_every_training_frame_holds_one_object_of_the_clip_class(seed):
    from scalecrafter_video.models.shapes.data import CLASS_NAMES

    clips, labels = make_clips(6, torch.Generator().manual_seed(seed))
    frames = ((clips + 1) / 2).permute(0, 2, 3, 4, 1).numpy()
    for clip, label in zip(frames, labels, strict=True):
        infos = [analyse(f, 1) for f in clip]
        assert all(s.single for s, _ in infos)
        assert {i.shape for _, i in infos} == {CLASS_NAMES[label]}
        colors = np.array([i.color for _, i in infos])
        assert np.ptp(colors, axis=0).max() < 0.02
