"""Loading real diffusers folders offline: an SD-1.5-layout base + a motion adapter (AnimateDiff
route) and a saved TextToVideoSDPipeline (UNet3D route), both built from the tiny parts."""

from __future__ import annotations

import json

import pytest

from scalecrafter_video.engine.errors import ScaleCrafterError
from scalecrafter_video.jobs.generate import run_job
from scalecrafter_video.jobs.options import GenerateOptions
from scalecrafter_video.models import tiny as tv
from scalecrafter_video.outputs.media import read_video


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from diffusers import StableDiffusionPipeline

    root = tmp_path_factory.mktemp("models")
    tok = tv.tiny_tokenizer()
    sd = StableDiffusionPipeline(
        vae=tv.tiny_vae(),
        text_encoder=tv.tiny_text_encoder(tok),
        tokenizer=tok,
        unet=tv.tiny_unet2d(),
        scheduler=tv.tiny_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    sd.save_pretrained(root / "sd-base")
    tv.tiny_motion_adapter(max_frames=8).save_pretrained(root / "adapter8")
    tv.tiny_pipeline("tiny-video3d").save_pretrained(root / "t2v")
    return root


def _opts(out, **kw):
    base = dict(prompts=["a boat"], height=128, width=128, steps=2, frames=4, out_dir=out, video=True, progress=False)
    base.update(kw)
    return GenerateOptions(**base)


def test_animatediff_from_local_base_and_adapter(folders, tmp_path):
    (mp4,) = run_job(_opts(tmp_path, model=str(folders / "sd-base"), motion_adapter=str(folders / "adapter8")))
    assert read_video(mp4).shape == (4, 128, 128, 3)
    meta = json.loads(mp4.with_suffix(".json").read_text())
    assert meta["pipeline"] == "AnimateDiffPipeline" and meta["unet_class"] == "UNetMotionModel"
    assert meta["motion_adapter"] == str(folders / "adapter8") and meta["model_source"] == "local"
    assert meta["beta_schedule"] == "linear" and meta["scheduler_class"] == "DDIMScheduler"
    # base from the UNet config (sample_size 8 x VAE 8 = 64 px), not the 512 px AnimateDiff family size
    assert meta["base_size"] == [64, 64] and meta["plan"]["main"] and meta["patched_convs"] > 0


def test_adapter_frame_limit_read_before_weights(folders, tmp_path):
    with pytest.raises(ScaleCrafterError, match=r"9 frames is more than .*\(8"):
        run_job(_opts(tmp_path, model=str(folders / "sd-base"), motion_adapter=str(folders / "adapter8"), frames=9))


def test_text_to_video_from_local_folder(folders, tmp_path):
    (mp4,) = run_job(_opts(tmp_path, model=str(folders / "t2v"), method="direct"))
    assert read_video(mp4).shape == (4, 128, 128, 3)
    meta = json.loads(mp4.with_suffix(".json").read_text())
    assert meta["pipeline"] == "TextToVideoSDPipeline" and meta["family"] == "modelscope"
    assert meta["plan"] is None and meta["method"] == "direct" and meta["guidance"] == 9.0


def test_image_folder_without_adapter_is_refused_clearly(folders, tmp_path):
    with pytest.raises(ScaleCrafterError, match="motion adapter 'guoyww/animatediff-motion-adapter-v1-5-2'"):
        run_job(_opts(tmp_path, model=str(folders / "sd-base")))


def test_adapter_folder_without_weights_names_the_adapter(folders, tmp_path):
    broken = tmp_path / "adapter-config-only"
    broken.mkdir()
    (broken / "config.json").write_text((folders / "adapter8" / "config.json").read_text())
    with pytest.raises(ScaleCrafterError, match=r"^motion adapter '.*adapter-config-only' could not be loaded") as e:
        run_job(_opts(tmp_path / "out", model=str(folders / "sd-base"), motion_adapter=str(broken)))
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
