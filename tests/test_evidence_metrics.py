"""Evidence metrics on constructed clips and images (scripts/cascade_evidence.py): per-frame, net and
trajectory-fit motion ratios with bootstrap intervals, Wilson shares, colour spread, content kept."""

import numpy as np
import pytest
import torch

from scalecrafter_video.models.shapes.data import (
    PALETTE,
    clip_params,
    render,
    sample_params,
)
from scalecrafter_video.models.shapes.metrics import (
    bootstrap_ratio,
    color_spread,
    content_kept,
    describe_images,
    image_evidence,
    share,
    wilson_interval,
)
from scalecrafter_video.models.shapes.video_metrics import (
    clip_evidence,
    describe_clips,
    path_stats,
)

torch.set_num_threads(1)
N = 6  # clips per case: two per class


def _params(seed=0):
    labels, sizes, path, colors = clip_params(N, torch.Generator().manual_seed(seed))
    labels = torch.arange(N) % 3
    return labels, sizes, path, colors


def _clips(labels, sizes, path, colors, scale=1.0):
    """(N, frames, H, W, 3) in [0, 1]: each clip's object rendered along its path at `scale`."""
    n, frames = path.shape[:2]
    imgs = render(
        labels.repeat_interleave(frames),
        sizes.repeat_interleave(frames),
        path.reshape(-1, 2),
        colors.repeat_interleave(frames, dim=0),
        scale=scale,
    )
    size = imgs.shape[-1]
    return imgs.view(n, frames, 3, size, size).permute(0, 1, 3, 4, 2).numpy()


def _bicubic(clips, factor):
    x = torch.from_numpy(clips).permute(0, 1, 4, 2, 3).flatten(0, 1)
    y = torch.nn.functional.interpolate(x, scale_factor=factor, mode="bicubic", align_corners=False).clamp(0, 1)
    n, f = clips.shape[:2]
    return y.view(n, f, 3, *y.shape[-2:]).permute(0, 1, 3, 4, 2).numpy()


def _ratio(ev, key):
    return ev[key]["value"]


def test_wilson_interval_and_share():
    assert wilson_interval(0, 0) is None
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0
    s = share(3, 12)
    assert s["value"] == 0.25 and s["n"] == 12 and s["k"] == 3 and s["interval"] == "wilson"
    assert share(0, 0)["value"] is None


def test_bootstrap_ratio_paired_and_unpaired():
    base = [1.0, 2.0, 3.0, None, 4.0]
    same = bootstrap_ratio(base, base, paired=True)
    assert same["value"] == 1.0 and same["ci95"] == [1.0, 1.0] and same["n"] == 4
    half = bootstrap_ratio([None if v is None else v / 2 for v in base], base, paired=True)
    assert half["value"] == pytest.approx(0.5) and half["ci95"] == pytest.approx([0.5, 0.5])
    rng = np.random.default_rng(1)
    a, b = rng.normal(2.0, 0.3, 40), rng.normal(1.0, 0.3, 40)
    r = bootstrap_ratio(a, b, paired=False)
    assert r["ci95"][0] < r["value"] < r["ci95"][1] and 1.6 < r["value"] < 2.4
    assert r == bootstrap_ratio(a, b, paired=False)  # fixed seed: same interval on a rerun
    assert "unpaired" in r["interval"] and r["n"] == r["n_base"] == 40
    assert bootstrap_ratio([1.0], [0.0], paired=False)["value"] is None
    assert bootstrap_ratio([1.0], [2.0], paired=False)["ci95"] is None  # one sample: no interval
    with pytest.raises(ValueError, match="paired"):
        bootstrap_ratio([1.0], [1.0, 2.0], paired=True)


def test_path_stats_of_a_straight_and_a_shaken_path():
    t = np.arange(8.0)
    straight = np.stack([10 + t, 12 + 0.5 * t], axis=1)
    st = path_stats(straight)
    assert st["step"] == pytest.approx(np.hypot(1, 0.5)) and st["net"] == pytest.approx(np.hypot(1, 0.5))
    assert st["fit"] == pytest.approx(np.hypot(1, 0.5)) and st["accel"] == pytest.approx(0.0, abs=1e-12)
    shaken = straight + np.stack([np.zeros(8), np.where(t % 2 == 1, 1.0, 0.0)], axis=1)
    sh = path_stats(shaken)
    assert sh["step"] > st["step"] + 0.3 and sh["fit"] == pytest.approx(st["fit"], abs=0.1)


@pytest.mark.parametrize("how", ["rendered", "bicubic"])
def test_a_clip_set_drawn_2x_keeps_every_ratio_at_one(how):
    params = _params()
    small = _clips(*params)
    big = _clips(*params, scale=2.0) if how == "rendered" else _bicubic(small, 2)
    base = describe_clips(small, 1)
    ev = clip_evidence(describe_clips(big, 2), base, paired=True)
    assert ev["followed"] == N and ev["single"]["value"] == 1.0 and ev["repetition"]["value"] == 0.0
    for key in ("step_ratio", "net_ratio", "fit_ratio"):
        assert _ratio(ev, key) == pytest.approx(1.0, abs=0.03), key
        assert ev[key]["n"] == N and ev[key]["ci95"][0] <= ev[key]["value"] <= ev[key]["ci95"][1]
    assert _ratio(ev, "color_spread_ratio") == pytest.approx(1.0, abs=0.02)
    assert ev["content_kept"]["value"] == 1.0 and ev["content_kept"]["n"] == N
    assert ev["consistent"]["value"] == 1.0 and ev["motion_ratio"] == pytest.approx(1.0, abs=0.03)
    own = clip_evidence(base, base, paired=True)
    assert all(own[k]["value"] == 1.0 and own[k]["ci95"] == [1.0, 1.0] for k in ("net_ratio", "fit_ratio"))


def test_slower_clips_read_slower():
    labels, sizes, path, colors = _params()
    slow_path = path[:, :1] + 0.5 * (path - path[:, :1])
    base = describe_clips(_clips(labels, sizes, path, colors), 1)
    ev = clip_evidence(describe_clips(_clips(labels, sizes, slow_path, colors, scale=2.0), 2), base, paired=True)
    for key in ("step_ratio", "net_ratio", "fit_ratio"):
        assert _ratio(ev, key) == pytest.approx(0.5, abs=0.04), key


def test_a_jittered_clip_set_has_per_frame_ratio_above_net_ratio():
    labels, sizes, path, colors = _params()
    frames = path.shape[1]
    # shake every other frame by 1 base px across the direction of motion
    d = path[:, -1] - path[:, 0]
    normal = torch.stack([-d[:, 1], d[:, 0]], dim=1) / d.norm(dim=1, keepdim=True).clamp_min(1e-6)
    shake = (torch.arange(frames) % 2).float().view(1, -1, 1) * normal[:, None]
    base = describe_clips(_clips(labels, sizes, path, colors), 1)
    ev = clip_evidence(describe_clips(_clips(labels, sizes, path + shake, colors, scale=2.0), 2), base, paired=True)
    assert ev["followed"] == N
    assert _ratio(ev, "step_ratio") > _ratio(ev, "net_ratio") + 0.2
    assert _ratio(ev, "net_ratio") == pytest.approx(1.0, abs=0.1)
    assert _ratio(ev, "fit_ratio") == pytest.approx(1.0, abs=0.15)
    assert ev["accel"] > 1.0


def test_a_tiled_clip_set_repeats():
    small = _clips(*_params())
    tiled = np.tile(small, (1, 1, 2, 2, 1))  # four copies of each base frame on the 2x canvas
    ev = clip_evidence(describe_clips(tiled, 2), describe_clips(small, 1), paired=False)
    assert ev["repetition"]["value"] == 1.0 and ev["repetition"]["n"] == N and ev["single"]["value"] == 0.0
    assert ev["followed"] == 0
    assert ev["net_ratio"]["value"] is None and ev["net_ratio"]["n"] == 0 and ev["net_ratio"]["n_base"] == N
    assert ev["repetition"]["ci95"][0] > 0.5


def test_a_hue_collapsed_set_has_a_small_colour_spread():
    labels, sizes, centers, _ = sample_params(12, torch.Generator().manual_seed(2))
    palette = torch.tensor(PALETTE, dtype=torch.float32)
    colors = palette[torch.arange(12) % len(PALETTE)]
    red = torch.tensor(PALETTE[0])
    collapsed = 0.15 * colors + 0.85 * red
    base_imgs = render(labels, sizes, centers, colors).permute(0, 2, 3, 1).numpy()
    kept = render(labels, sizes, centers, colors, scale=4.0).permute(0, 2, 3, 1).numpy()
    hue = render(labels, sizes, centers, collapsed, scale=4.0).permute(0, 2, 3, 1).numpy()
    base = describe_images(base_imgs, 1)
    good = image_evidence(describe_images(kept, 4), base, paired=True)
    bad = image_evidence(describe_images(hue, 4), base, paired=True)
    assert good["single"]["value"] == 1.0 and good["content_kept"]["value"] == 1.0
    assert good["color_spread_ratio"]["value"] == pytest.approx(1.0, abs=0.02)
    assert bad["color_spread_ratio"]["value"] < 0.3 and bad["color_spread_ratio"]["ci95"][1] < 0.5
    assert bad["content_kept"]["value"] <= 3 / 12  # only the red-ish ones keep their colour
    assert color_spread([PALETTE[0]]) != color_spread([PALETTE[0]])  # one colour: NaN


def test_content_kept_needs_class_and_colour():
    base = [("circle", (0.9, 0.1, 0.1)), ("square", (0.1, 0.8, 0.2)), None, ("triangle", (0.2, 0.3, 0.9))]
    case = [("circle", (0.8, 0.2, 0.1)), ("circle", (0.1, 0.8, 0.2)), ("circle", (0.5, 0.5, 0.5)), None]
    kept = content_kept(case, base)
    assert kept["k"] == 1 and kept["n"] == 3  # class changed, no base object (not counted), object lost
    with pytest.raises(ValueError):
        content_kept(case[:2], base)
