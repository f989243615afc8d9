"""One table of known model ids -> family; the architecture decides the rest; where it cannot
(ModelScope vs Zeroscope share the UNet3D layout) --family is required. Never a folder's name."""

import json

import pytest

from scalecrafter_video.engine.errors import ScaleCrafterError
from scalecrafter_video.engine.families import meta_unet
from scalecrafter_video.jobs.family import KNOWN_MODELS, job_family
from scalecrafter_video.jobs.generate import run_job
from scalecrafter_video.jobs.options import GenerateOptions
from scalecrafter_video.jobs.registry import resolve_model


@pytest.mark.parametrize(
    "model, family",
    [
        ("zeroscope", "zeroscope"),
        ("cerspense/zeroscope_v2_576w", "zeroscope"),
        ("modelscope", "modelscope"),
        ("animatediff", "animatediff"),
        ("sd15", "animatediff"),
        ("someone/zeroscope-finetune", None),
        ("tiny-video3d", "modelscope"),
    ],
)
def test_video_family_from_the_id_table_only(model, family):
    assert resolve_model(model, video=True).family == family
    assert resolve_model(model, video=True, family="zeroscope").family == "zeroscope"  # --family wins


def _image_family(model, config, family=None):
    return job_family(resolve_model(model, family=family), "UNet2DConditionModel", config, video=False, option=family)


def test_image_family_from_the_architecture_then_the_name_then_the_config():
    sd21_like = {"cross_attention_dim": 1024}
    assert _image_family("sd21", {"cross_attention_dim": 768}) == "sd21"  # no layout in a partial config: the id
    assert _image_family("someone/fine-tune", sd21_like) == "sd21"  # nothing names it: its config's defaults
    assert _image_family("sdxl", {}, "sd15") == "sd15"  # --family wins over the id table
    assert set(KNOWN_MODELS.values()) <= {"sd15", "sd21", "sdxl", "modelscope", "zeroscope"}
    sd15 = {k: v for k, v in meta_unet("sd15").config.items() if not k.startswith("_")}
    assert _image_family("sdxl", sd15) == "sd15"  # the architecture first: an SD 1.5 UNet under any id
    with pytest.raises(ScaleCrafterError, match="--family sd21 does not fit .* sd15 layout"):
        _image_family("someone/fine-tune", sd15, "sd21")


def _unet3d_folder(root, name):
    folder = root / name
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text(
        json.dumps({"_class_name": "TextToVideoSDPipeline", "unet": ["diffusers", "UNet3DConditionModel"]})
    )
    config = {k: v for k, v in meta_unet("modelscope").config.items() if not k.startswith("_")}
    (folder / "unet" / "config.json").write_text(json.dumps(config))
    return folder


def test_unet3d_folder_needs_family_whatever_its_name(tmp_path, scv):
    """A local folder with the ModelScope/Zeroscope layout: refused before loading, even when its
    name says "zeroscope"; with --family the check passes (and loading, of no weights, fails)."""
    folder = _unet3d_folder(tmp_path, "my-zeroscope-copy")
    opts = dict(
        prompts=["x"],
        height=320,
        width=576,
        model=str(folder),
        steps=2,
        frames=2,
        out_dir=tmp_path / "out",
        video=True,
        progress=False,
    )
    code, out, err = scv(
        "generate", "--video", "--model", folder, "--res", "576x320", "--prompt", "x", "--out", tmp_path / "out"
    )
    assert code == 2 and "--family" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ScaleCrafterError, match="several model families.*pass family= one of modelscope, zeroscope"):
        run_job(GenerateOptions(**opts))
    assert not (tmp_path / "out").exists()
    with pytest.raises(ScaleCrafterError, match="could not be loaded"):
        run_job(GenerateOptions(**opts, family="zeroscope"))


def test_family_must_match_the_kind(tmp_path, scv):
    code, out, err = scv(
        "generate", "--model", "tiny-sd", "--family", "zeroscope", "--res", "128x128", "--out", tmp_path
    )
    assert code == 2 and "video family" in err
    code, out, err = scv(
        "generate", "--video", "--model", "tiny-video", "--family", "sdxl", "--res", "128x128", "--out", tmp_path
    )
    assert code == 2 and "image family" in err
