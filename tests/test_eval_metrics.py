"""FID/KID as `scv eval` computes them (torchmetrics on precomputed features), the clean resize,
full-resolution crops and the download-free feature extractor. No weights needed."""

import numpy as np
import pytest
import torch

from scalecrafter_video.commands.evaluation.features import (
    RandomConvFeatures,
    build_extractor,
    extract,
)
from scalecrafter_video.commands.evaluation.metrics import fid, kid
from scalecrafter_video.commands.evaluation.resize import clean_resize, random_crops
from scalecrafter_video.engine.errors import ScaleCrafterError


def _gaussian(n, mean, cov, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, len(mean), generator=g, dtype=torch.float64)
    return torch.as_tensor(mean, dtype=torch.float64) + z @ torch.linalg.cholesky(torch.as_tensor(cov)).T


def _psd_sqrt(m):
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _frechet(mu1, s1, mu2, s2):
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), by symmetric eigendecompositions."""
    root = _psd_sqrt(s1)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(_psd_sqrt(root @ s2 @ root)))


def test_identical_sets_give_fid_zero():
    x = _gaussian(300, [0.0] * 6, np.eye(6), 0)
    assert abs(fid(x, x)) < 1e-8


def test_identical_image_sets_give_fid_zero_through_the_extractor():
    rng = np.random.default_rng(0)
    images = [clean_resize(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)) for _ in range(12)]
    f = extract(RandomConvFeatures(), images, batch=5)
    assert f.shape == (12, 1120) and f.dtype == torch.float64
    assert abs(fid(f, f)) < 1e-4


def test_fid_of_two_gaussian_sets_matches_the_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -0.5, 2.0]), np.array([0.5, 0.0, 0.0, 1.0])
    a = np.array([[1.0, 0.3, 0, 0], [0.3, 2.0, 0.4, 0], [0, 0.4, 0.5, 0.1], [0, 0, 0.1, 1.5]])
    b = np.array([[0.8, -0.2, 0.1, 0], [-0.2, 1.0, 0, 0.3], [0.1, 0, 1.2, 0], [0, 0.3, 0, 0.6]])
    x, y = _gaussian(20000, mu1, a, 1), _gaussian(20000, mu2, b, 2)
    got = fid(x, y)
    # exactly the Frechet distance of the fitted Gaussians (sample means, unbiased covariances) ...
    sample = _frechet(x.mean(0).numpy(), np.cov(x.numpy().T), y.mean(0).numpy(), np.cov(y.numpy().T))
    assert got == pytest.approx(sample, rel=1e-6)
    # ... which converges to the population's closed form
    assert got == pytest.approx(_frechet(mu1, a, mu2, b), rel=0.03)


def test_kid_is_unbiased_and_detects_a_shift():
    unbiased, biased = [], []
    for seed in range(20):
        x, y = _gaussian(60, [0.0] * 8, np.eye(8), 2 * seed), _gaussian(60, [0.0] * 8, np.eye(8), 2 * seed + 1)
        unbiased.append(kid(x, y, subsets=1)[0])

        def k(p, q):  # the same cubic kernel, with the diagonal terms kept
            return (p @ q.T / 8 + 1) ** 3

        biased.append(float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()))
    assert np.mean(biased) > 0.05  # the V-statistic is biased upwards by about 2 E k(x, x) / m
    assert abs(np.mean(unbiased)) < 0.05 * np.mean(biased)
    shifted = kid(_gaussian(60, [0.0] * 8, np.eye(8), 100), _gaussian(60, [1.0] * 8, np.eye(8), 101))
    assert shifted[0] > 10 * np.std(unbiased)


def test_kid_is_seeded_and_small_sets_give_none():
    x, y = _gaussian(50, [0.0] * 3, np.eye(3), 0), _gaussian(80, [0.0] * 3, np.eye(3), 1)
    assert kid(x, y, subset_size=20, seed=3) == kid(x, y, subset_size=20, seed=3)
    assert kid(x[:1], y) is None and fid(x[:1], y) is None


def test_clean_resize_shape_constant_and_identity():
    flat = np.full((64, 96, 3), 77, dtype=np.uint8)
    out = clean_resize(flat)
    assert out.shape == (299, 299, 3) and out.dtype == np.uint8 and (out == 77).all()
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (299, 299, 3), dtype=np.uint8)
    assert np.array_equal(clean_resize(img), img)
    # bicubic overshoot is clipped to [0, 255], as clean-fid does, not wrapped around
    edge = np.zeros((32, 32, 3), dtype=np.uint8)
    edge[:, 16:] = 255
    out = clean_resize(edge)
    assert out[:, :140].max() == 0 and out[:, 160:].min() == 255


def test_crops_are_windows_of_the_full_resolution_image():
    h, w = 300, 520
    ys, xs = np.mgrid[0:h, 0:w]
    img = np.stack([ys % 256, xs % 256, (ys // 256) * 16 + xs // 256], axis=2).astype(np.uint8)
    crops = random_crops(img, 64, 10, np.random.default_rng(0))
    assert len(crops) == 10
    for c in crops:
        assert c.shape == (64, 64, 3)
        y0 = int(c[0, 0, 0]) + 256 * (int(c[0, 0, 2]) // 16)
        x0 = int(c[0, 0, 1]) + 256 * (int(c[0, 0, 2]) % 16)
        assert np.array_equal(c, img[y0 : y0 + 64, x0 : x0 + 64])  # one pixel per pixel: nothing resized
    with pytest.raises(ValueError):
        random_crops(img, 301, 1, np.random.default_rng(0))


def test_random_features_are_deterministic_and_seeded():
    x = torch.randint(0, 256, (3, 3, 299, 299), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(RandomConvFeatures(0)(x), RandomConvFeatures(0)(x))
    assert not torch.equal(RandomConvFeatures(0)(x), RandomConvFeatures(1)(x))


def test_inception_without_weights_offline_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ScaleCrafterError) as err:
        build_extractor("inception")
    message = str(err.value)
    assert "\n" not in message
    assert "pip install" in message or "--inception-weights" in message
    with pytest.raises(ScaleCrafterError, match="is not a file"):
        build_extractor("inception", tmp_path / "missing.pth")
