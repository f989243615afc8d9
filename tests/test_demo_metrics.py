"""Demo metrics on constructed images: one object, two objects, blank, noise, speckles, wrong scale."""

import numpy as np
import pytest
import torch

from scalecrafter_video.models.shapes.data import BACKGROUND, make_batch, render
from scalecrafter_video.models.shapes.metrics import (
    background_noise,
    cleanliness,
    label_components,
    structure,
    summarize,
)


def _canvas(size):
    return np.ones((size, size, 3), np.float32) * np.asarray(BACKGROUND, np.float32)


def _shape(label, d, cx, cy, color=(0.9, 0.15, 0.15), scale=1.0):
    img = render(
        torch.tensor([label]),
        torch.tensor([float(d)]),
        torch.tensor([[float(cx), float(cy)]]),
        torch.tensor([color]),
        scale=scale,
    )
    return img[0].permute(1, 2, 0).numpy()


def test_components_counts_and_4_connectivity():
    m = np.zeros((6, 6), bool)
    m[0, 0] = m[1, 1] = True  # diagonal: two 4-components
    m[3:5, 3:6] = True
    m[5, 5] = True
    labels, n = label_components(m)
    assert n == 3
    assert labels[3, 3] == labels[5, 5] != labels[0, 0] != labels[1, 1]
    # U shape: two arms joined at the bottom are one component (merging of provisional labels)
    u = np.zeros((5, 5), bool)
    u[:, 0] = u[:, 4] = u[4, :] = True
    assert label_components(u)[1] == 1


@pytest.mark.parametrize("label", [0, 1, 2])
@pytest.mark.parametrize("scale", [1, 2, 4])
def test_one_object_at_the_right_scale_is_single(label, scale):
    img = _shape(label, 17, 16, 16, scale=scale)
    s = structure(img, scale)
    assert s.single and not s.repetition and s.objects == 1, s


def test_training_images_are_all_single():
    x, _ = make_batch(64, torch.Generator().manual_seed(3))
    imgs = ((x + 1) / 2).permute(0, 2, 3, 1).numpy()
    assert all(structure(im, 1).single for im in imgs)


def test_two_objects_is_repetition():
    img = _canvas(64)
    a = _shape(0, 16, 16, 16)
    b = _shape(1, 16, 16, 16, color=(0.2, 0.3, 0.95))
    img[:32, :32] = a
    img[32:, 32:] = b
    s = structure(img, 2)
    assert s.repetition and not s.single and s.objects == 2


def test_blank_is_not_single():
    s = structure(_canvas(64), 2)
    assert not s.single and not s.repetition and s.objects == 0


def test_pure_noise_is_not_single():
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(0.5, 0.5, (128, 128, 3)), 0, 1).astype(np.float32)
    s = structure(img, 4)
    assert not s.single


def test_base_size_object_in_4x_canvas_is_wrong_scale():
    img = _canvas(128)
    img[40:72, 40:72] = _shape(0, 18, 16, 16)
    s = structure(img, 4)
    assert not s.single and not s.repetition and "scale" in s.reason


def test_isolated_speckles_do_not_count_as_objects():
    img = _shape(1, 17, 16, 16, scale=4)
    rng = np.random.default_rng(1)
    ys, xs = rng.integers(0, 128, 60), rng.integers(0, 128, 60)
    img[ys, xs] = (0.0, 1.0, 0.0)
    s = structure(img, 4)
    assert s.single and s.objects == 1


def test_broken_texture_is_not_single():
    img = _shape(0, 17, 16, 16, scale=4)
    rng = np.random.default_rng(2)
    inside = np.abs(img - 0.5).max(-1) > 0.2
    img[inside] = rng.uniform(0, 1, (inside.sum(), 3))
    s = structure(img, 4)
    assert not s.single


def test_background_noise_and_cleanliness():
    clean = _shape(0, 17, 16, 16, scale=4)
    rng = np.random.default_rng(3)
    noisy = np.clip(clean + rng.normal(0, 0.05, clean.shape), 0, 1).astype(np.float32)
    speck = clean.copy()
    ys, xs = rng.integers(0, 128, 300), rng.integers(0, 128, 300)
    speck[ys, xs] = np.clip(speck[ys, xs] + 0.15, 0, 1)
    n_clean, n_noisy, n_speck = (background_noise(i) for i in (clean, noisy, speck))
    assert n_clean < 1e-3  # object edges are excluded
    assert n_noisy > 0.02 and n_speck > 0.005
    assert cleanliness(n_clean, n_clean) == pytest.approx(1.0)
    assert cleanliness(n_noisy, n_clean) < cleanliness(n_speck, n_clean) < 0.5


def test_summarize_shares():
    imgs = [_shape(0, 17, 16, 16, scale=2), _canvas(64)]
    two = _canvas(64)
    two[:32, :32] = _shape(0, 16, 16, 16)
    two[32:, 32:] = _shape(0, 16, 16, 16)
    r = summarize(imgs + [two, two], 2)
    assert r["n"] == 4 and r["single"] == 0.25 and r["repetition"] == 0.5
