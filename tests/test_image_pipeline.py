"""Image front end: tiny pipelines, NDCFG inside a stock pipeline, model resolution and loading offline."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from scalecrafter_video import (
    Plan,
    Rule,
    ScaleCrafterError,
    apply_scalecrafter,
    remove_scalecrafter,
    scalecrafter,
)
from scalecrafter_video.jobs import checks, image, loading, sampling
from scalecrafter_video.jobs.family import defaults_family
from scalecrafter_video.jobs.registry import resolve_model
from scalecrafter_video.models.tiny import tiny_tokenizer


def sample(pipe, height=128, width=128, steps=4, seed=0, guidance=7.5):
    generator = torch.Generator("cpu").manual_seed(seed)
    return pipe(
        "a lighthouse",
        height=height,
        width=width,
        num_inference_steps=steps,
        guidance_scale=guidance,
        eta=1.0,
        generator=generator,
        output_type="latent",
    ).images


# ---- tiny pipelines -------------------------------------------------------------------------
def test_tiny_sd_layout(tiny_sd):
    unet = tiny_sd.unet
    assert [type(b).__name__ for b in unet.down_blocks] == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
    assert [type(b).__name__ for b in unet.up_blocks] == ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3
    assert tiny_sd.vae_scale_factor == 8 and unet.config.sample_size == 8
    assert defaults_family(unet.config) == "sd15"
    assert type(tiny_sd.scheduler).__name__ == "DDIMScheduler"
    assert tiny_sd.scheduler.config.steps_offset == 1 and tiny_sd.scheduler.config.timestep_spacing == "leading"
    out = tiny_sd("x", height=128, width=128, num_inference_steps=4, output_type="pil").images[0]
    assert out.size == (128, 128)


def test_tiny_sdxl_layout(tiny_sdxl):
    unet = tiny_sdxl.unet
    assert [type(b).__name__ for b in unet.down_blocks] == [
        "DownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
    ]
    assert unet.config.addition_embed_type == "text_time"
    assert type(tiny_sdxl.text_encoder_2).__name__ == "CLIPTextModelWithProjection"
    assert defaults_family(unet.config) == "sdxl"
    assert sample(tiny_sdxl, steps=2).shape == (1, 4, 16, 16)


def test_tiny_pipelines_are_seeded():
    from scalecrafter_video.models.tiny import tiny_pipeline

    a, b = tiny_pipeline("tiny-sd", seed=0), tiny_pipeline("tiny-sd", seed=0)
    assert all(torch.equal(x, y) for x, y in zip(a.unet.parameters(), b.unet.parameters(), strict=True))
    c = tiny_pipeline("tiny-sd", seed=1)
    assert not torch.equal(next(a.unet.parameters()), next(c.unet.parameters()))


def test_tiny_tokenizer_is_offline_and_non_empty():
    tok = tiny_tokenizer()
    ids = tok("A photo, of a cat!").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id and len(ids) > 5
    assert tok.unk_token_id not in ids[1:-1]
    assert tok.decode(ids, skip_special_tokens=True).replace(" ", "") == "aphoto,ofacat!"


# ---- NDCFG inside a stock diffusers pipeline ------------------------------------------------
RULES = (
    Rule("down_blocks.1", 2, 50),
    Rule("down_blocks.2", 2, 50),
    Rule("mid_block", 2, 50),
    Rule("up_blocks.1", 2, 50),
)


def test_ndcfg_with_damped_equal_to_main_is_plain_cfg(tiny_sd):
    same = Plan("damped-equals-main", main=RULES, damped=RULES, ndcfg_stop=50)
    plain = Plan("main-only", main=RULES)
    with scalecrafter(tiny_sd, height=128, width=128, preset=same, ndcfg=True) as handle:
        assert handle.plan.ndcfg_stop == 50
        ndcfg = sample(tiny_sd)
    with scalecrafter(tiny_sd, height=128, width=128, preset=plain, ndcfg=True):
        cfg = sample(tiny_sd)
    torch.testing.assert_close(ndcfg, cfg, rtol=1e-4, atol=1e-4)

    lighter = Plan("lighter-damped", main=RULES, damped=RULES[2:], ndcfg_stop=50)
    with scalecrafter(tiny_sd, height=128, width=128, preset=lighter, ndcfg=True):
        damped = sample(tiny_sd)
    assert (damped - cfg).abs().max() > 1e-2  # a different damped plan really changes the result
    with scalecrafter(tiny_sd, height=128, width=128, preset=lighter, ndcfg=False):
        switched_off = sample(tiny_sd)
    torch.testing.assert_close(switched_off, cfg, rtol=1e-4, atol=1e-4)


def test_patch_tri_state_in_pipeline(tiny_sd):
    baseline = sample(tiny_sd, steps=3)
    handle = apply_scalecrafter(tiny_sd, height=128, width=128)
    try:
        assert handle.patched_convs > 0
        patched = sample(tiny_sd, steps=3)
    finally:
        remove_scalecrafter(tiny_sd)
    assert (patched - baseline).abs().max() > 1e-2
    assert torch.equal(sample(tiny_sd, steps=3), baseline)


# ---- helpers --------------------------------------------------------------------------------
def test_check_size():
    checks.check_size(128, 64, 64)
    for (h, w, m), message in {
        (0, 64, 8): "positive",
        (64, -8, 8): "positive",
        (64, 16392, 8): "maximum",
        (100, 64, 8): "height 100 is not divisible by 8",
        (64, 72, 64): "width 72 is not divisible by 64",
        (64, 40, 64): "use 64",
    }.items():
        with pytest.raises(ScaleCrafterError, match=message):
            checks.check_size(h, w, m)


def test_resolve_model_aliases_and_paths(tmp_path):
    assert resolve_model("sd15") == loading.ModelRef(
        "sd15", "hub", "stable-diffusion-v1-5/stable-diffusion-v1-5", "sd15"
    )
    assert resolve_model("sd21").location == "stabilityai/stable-diffusion-2-1-base"
    assert resolve_model("sdxl").location == "stabilityai/stable-diffusion-xl-base-1.0"
    assert resolve_model("tiny-sdxl").kind == "tiny"
    assert resolve_model("owner/model").kind == "hub"
    assert resolve_model(str(tmp_path)).kind == "local"
    assert resolve_model("./relative/dir").kind == "local"
    with pytest.raises(ScaleCrafterError, match="valid hub id"):
        resolve_model("no spaces allowed")


def test_defaults_family_reads_the_config_not_the_name():
    assert defaults_family({"cross_attention_dim": 768}) == "sd15"
    assert defaults_family({"cross_attention_dim": 1024}) == "sd21"
    assert defaults_family({"cross_attention_dim": 2048, "addition_embed_type": "text_time"}) == "sdxl"


def test_vae_tiling_auto_rule():
    assert not sampling.wants_vae_tiling("auto", "sd15", 1536, 1536)
    assert sampling.wants_vae_tiling("auto", "sd15", 1024, 2048)
    assert not sampling.wants_vae_tiling("auto", "sdxl", 1024, 1024)
    assert sampling.wants_vae_tiling("auto", "sdxl", 1024, 1280)
    assert sampling.wants_vae_tiling("on", "sd15", 64, 64) and not sampling.wants_vae_tiling("off", "sdxl", 4096, 4096)


def test_hub_unreachable_is_one_line(monkeypatch, empty_hf_cache):
    monkeypatch.setattr(loading, "hub_offline", lambda: False)
    monkeypatch.setattr(loading, "hub_reachable", lambda timeout=0: False)
    with pytest.raises(ScaleCrafterError, match="hub is unreachable: run `hf download owner/model`"):
        image.inspect_model("owner/model")


# ---- loading saved pipelines offline --------------------------------------------------------
@pytest.fixture(scope="module")
def saved_tiny_sd(tmp_path_factory, tiny_sd):
    folder = tmp_path_factory.mktemp("saved") / "tiny-sd"
    tiny_sd.save_pretrained(folder)
    return folder


def test_local_folder_loads_and_checks_sizes_before_weights(scv, tmp_path, saved_tiny_sd):
    info = image.inspect_model(str(saved_tiny_sd))
    assert info.ref.kind == "local" and info.size_multiple == 64 and info.vae_scale_factor == 8
    code, out, err = scv(
        "generate", "--no-progress", "--model", saved_tiny_sd, "--prompt", "x", "--res", "72x64", "--out", tmp_path
    )
    assert code == 2 and "divisible by 64" in err
    code, out, err = scv(
        "generate",
        "--no-progress",
        "--steps",
        "2",
        "--model",
        saved_tiny_sd,
        "--prompt",
        "x",
        "--res",
        "128x128",
        "--out",
        tmp_path,
    )
    assert code == 0, err
    meta = json.loads(Path(out.strip()).with_suffix(".json").read_text())
    assert meta["model_source"] == "local" and meta["family"] == "sd15" and "note" not in meta


def test_cached_hub_model_loads_offline(scv, tmp_path, saved_tiny_sd, empty_hf_cache):
    repo = empty_hf_cache / "models--someone--tiny-sd"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(saved_tiny_sd, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    code, out, err = scv(
        "generate",
        "--no-progress",
        "--steps",
        "2",
        "--model",
        "someone/tiny-sd",
        "--prompt",
        "x",
        "--res",
        "128x128",
        "--out",
        tmp_path,
        "--method",
        "direct",
    )
    assert code == 0, err
    meta = json.loads(Path(out.strip()).with_suffix(".json").read_text())
    assert (
        meta["model_id"] == "someone/tiny-sd" and meta["model_source"] == "hub" and meta["model_revision"] == "0" * 40
    )


def test_incomplete_local_folder_is_one_line(scv, tmp_path, saved_tiny_sd):
    broken = tmp_path / "broken"
    shutil.copytree(saved_tiny_sd, broken)
    shutil.rmtree(broken / "unet")
    code, out, err = scv(
        "generate", "--no-progress", "--model", broken, "--prompt", "x", "--res", "128x128", "--out", tmp_path / "o"
    )
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scv: error: ") and "could not be loaded" in lines[0]
    assert not (tmp_path / "o").exists()
