"""run_job on video options / `scv generate --video` end to end on the tiny offline video pipelines."""

from __future__ import annotations

import json
import re

import pytest

from scalecrafter_video.engine.errors import ScaleCrafterError
from scalecrafter_video.jobs.generate import run_job
from scalecrafter_video.jobs.options import GenerateOptions
from scalecrafter_video.outputs.media import read_video


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _opts(tmp_path, **kw):
    base = dict(
        prompts=["a red fox running"],
        height=128,
        width=128,
        model="tiny-video",
        steps=3,
        frames=8,
        out_dir=tmp_path,
        video=True,
        progress=False,
    )
    base.update(kw)
    return GenerateOptions(**base)


def _sidecar(path):
    return json.loads(path.with_suffix(".json").read_text())


def test_tiny_video_compare_and_frames(tmp_path):
    paths = run_job(_opts(tmp_path, compare=True, save_frames=True, fps=6))
    main, direct = paths
    assert re.fullmatch(r"a-red-fox-running-128x128-scalecrafter-8f-seed0-[0-9a-f]{8}\.mp4", main.name), main.name
    assert direct.name == main.stem + "-direct.mp4"
    for p in paths:
        v = read_video(p)
        assert v.shape == (8, 128, 128, 3)
        assert len(list((tmp_path / f"{p.stem}-frames").glob("frame_*.png"))) == 8
    meta, dmeta = _sidecar(main), _sidecar(direct)
    assert meta["kind"] == "video" and meta["frames"] == 8 and meta["fps"] == 6
    assert (meta["width"], meta["height"]) == (128, 128) and meta["seed"] == 0
    assert meta["unet_class"] == "UNetMotionModel" and meta["pipeline"] == "AnimateDiffPipeline"
    assert meta["method"] == "scalecrafter" and meta["family"] == "animatediff" and "noise" in meta["note"]
    rules = {r["selector"]: r["factor"] for r in meta["plan"]["main"]}
    assert rules["down_blocks.1"] == 2 and "down_blocks.0" not in rules and meta["patched_convs"] > 0
    assert meta["versions"]["diffusers"] and meta["guidance"] == 7.5 and meta["eta"] == 1.0
    assert 0 < meta["motion"]["mean_abs_frame_diff"] < 1 and meta["motion"]["frames"] == 8
    assert dmeta["method"] == "direct" and dmeta["plan"] is None
    assert meta["compare"]["direct_motion"] == dmeta["motion"]
    assert meta["compare"]["motion_ratio"] == pytest.approx(
        meta["motion"]["mean_abs_frame_diff"] / dmeta["motion"]["mean_abs_frame_diff"], rel=1e-4
    )
    # the two runs differ (the plan acts), yet share the seed's starting noise
    assert meta["motion"] != dmeta["motion"]
    # existing outputs are refused before any model loads
    import scalecrafter_video.jobs.video as video

    def forbidden(*a, **k):
        raise AssertionError("loaded a model for a job that must be refused first")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(video, "load_video_pipeline", forbidden)
        with pytest.raises(ScaleCrafterError, match="already exists"):
            run_job(_opts(tmp_path, compare=True, save_frames=True, fps=6))


def test_tiny_video3d_through_cli(tmp_path, capsys):
    from scalecrafter_video.commands.cli import main

    rc = main(
        [
            "generate",
            "--video",
            "--model",
            "tiny-video3d",
            "--res",
            "128x128",
            "--frames",
            "8",
            "--steps",
            "3",
            "--out",
            str(tmp_path),
            "--prompt",
            "waves",
            "--no-progress",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    mp4s = sorted(tmp_path.glob("*.mp4"))
    assert len(mp4s) == 1 and str(mp4s[0]) in capsys.readouterr().out
    assert read_video(mp4s[0]).shape == (8, 128, 128, 3)
    meta = _sidecar(mp4s[0])
    assert meta["unet_class"] == "UNet3DConditionModel" and meta["pipeline"] == "TextToVideoSDPipeline"
    assert meta["command"][:3] == ["scv", "generate", "--video"] and meta["frames"] == 8
    assert meta["motion"]["mean_abs_frame_diff"] > 0


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import scalecrafter_video.outputs.media as media

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(media, "write_mp4", boom)
    with pytest.raises(OSError, match="disk full"):
        run_job(_opts(tmp_path, model="tiny-video3d", frames=2, height=64, width=64, save_frames=True))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(frames=0), "frames must be"),
        (dict(frames=33), r"33 frames is more than 'tiny-video' supports \(32"),
        (dict(height=96), "not divisible by 64"),
        (dict(width=100), "not divisible by 8"),
        (dict(fps=0), "fps"),
        (dict(model="tiny-video3d", motion_adapter="guoyww/animatediff-motion-adapter-v1-5-2"), "only applies"),
        (dict(model="scv-test/no-such-video-model"), "scv-test/no-such-video-model.*not in the local"),
        (dict(model="animatediff"), "stable-diffusion-v1-5.*HF_HUB_OFFLINE"),
    ],
)
def test_errors_before_loading(tmp_path, kw, match, no_weights_or_network):
    with pytest.raises(ScaleCrafterError, match=match) as info:
        run_job(_opts(tmp_path / "out", **kw))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_missing_motion_adapter_offline(tmp_path, no_weights_or_network):
    """An SD 1.5 base that is present (local folder) with an adapter that is not: one line, before loading."""
    base = tmp_path / "sd15-local"
    base.mkdir()
    (base / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]})
    )
    with pytest.raises(ScaleCrafterError, match="motion adapter 'scv-test/no-such-adapter' is not in the local") as e:
        run_job(_opts(tmp_path / "out", model=str(base), motion_adapter="scv-test/no-such-adapter"))
    assert "`hf download scv-test/no-such-adapter`" in str(e.value) and "--motion-adapter /path" in str(e.value)
    # the default adapter is named the same way when --motion-adapter is not given
    with pytest.raises(ScaleCrafterError, match="guoyww/animatediff-motion-adapter-v1-5-2"):
        run_job(_opts(tmp_path / "out", model=str(base)))


@pytest.mark.parametrize("model", ["tiny-video", "tiny-video3d"])
def test_4x_plan_runs_ndcfg_and_dispersion_in_the_pipeline(tmp_path, monkeypatch, model):
    """At 4x pixels per side the derived plan is graded, with a damped (NDCFG) window and dispersion
    layers: the pipeline runs the damped pass on the unconditional half (one extra UNet pass while
    the window is open) and still writes a clean video."""
    import scalecrafter_video.jobs.video as video

    real_load = video.load_video_pipeline
    calls = []

    def load(*a, **k):
        loaded = real_load(*a, **k)
        loaded.pipe.unet.conv_in.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
        return loaded

    monkeypatch.setattr(video, "load_video_pipeline", load)
    (mp4,) = run_job(_opts(tmp_path, model=model, height=256, width=256, frames=2, steps=2, dispersion=True))
    meta = _sidecar(mp4)
    plan = meta["plan"]
    assert plan["ndcfg_stop"] == 35 and plan["damped"] and plan["dispersion"] and meta["dispersion"] is True
    # DDIM-2 timesteps 501 (reference step 24: NDCFG on) and 1 (off): main, damped half, main
    assert calls == [2 * 2, 1 * 2, 2 * 2]
    assert (meta["ndcfg_layout"], meta["unet_calls"], meta["damped_passes"]) == ("uncond,cond", 2, 1)
    assert read_video(mp4).shape == (2, 256, 256, 3)
