"""The demo's motion model: a MotionAdapter sized for shapes32, assembled with
UNetMotionModel.from_unet2d, spatial weights frozen and bit-identical to the shipped UNet; float16
adapter files with their config; training that only moves the motion modules."""

import io
import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from scalecrafter_video import ScaleCrafterError
from scalecrafter_video.commands.demo.train_motion import (
    loss_weights,
    sample_timesteps,
    train_motion,
)
from scalecrafter_video.commands.demo.train_motion import main as train_main
from scalecrafter_video.models.shapes.model import load_demo_model
from scalecrafter_video.models.shapes.motion_model import (
    ADAPTER_CONFIG,
    MOTION_WEIGHTS_NAME,
    assemble,
    build_motion_adapter,
    is_motion_parameter,
    load_motion_model,
    motion_config,
    motion_state,
    read_motion_config,
    save_motion_adapter,
)

TINY_RUN = dict(batch=2, frames=4, threads=1, warmup=1, probe_clips=3, probe_steps=1, log=io.StringIO())


@pytest.fixture(scope="module")
def image_model():
    return load_demo_model()


def _spatial(unet):
    return {k: v for k, v in unet.state_dict().items() if not is_motion_parameter(k)}


def test_adapter_is_sized_for_shapes32_and_spatial_weights_are_the_shipped_ones(image_model):
    adapter = build_motion_adapter()
    assert tuple(adapter.config.block_out_channels) == tuple(image_model.unet.config.block_out_channels)
    unet = assemble(image_model.unet, adapter)
    assert type(unet).__name__ == "UNetMotionModel"
    shipped = image_model.unet.state_dict()
    spatial = _spatial(unet)
    assert set(spatial) == set(shipped)
    assert all(torch.equal(spatial[k], shipped[k]) for k in shipped)
    trainable = {n for n, p in unet.named_parameters() if p.requires_grad}
    assert trainable and all(is_motion_parameter(n) for n in trainable)
    assert set(motion_state(unet)) == set(adapter.state_dict())
    blocks = {n.split(".motion_modules")[0] for n in trainable}
    assert {"down_blocks.0", "down_blocks.2", "mid_block", "up_blocks.0", "up_blocks.2"} <= blocks
    # zero output projections: the untrained model is the image model frame by frame
    assert all(not torch.any(v) for k, v in motion_state(unet).items() if "proj_out" in k)


def test_save_and_load_round_trip(tmp_path, image_model):
    unet = assemble(image_model.unet, build_motion_adapter(seed=1))
    with torch.no_grad():
        for k, p in unet.named_parameters():
            if "proj_out.weight" in k:
                p.normal_(0, 0.02)
    cfg = motion_config(ADAPTER_CONFIG, 8, {"training": {"steps": 7}})
    path = save_motion_adapter(unet, tmp_path, cfg)
    assert path == tmp_path / MOTION_WEIGHTS_NAME and path.stat().st_size <= 5 * 1024 * 1024
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # the user's umask, like every other output
    assert json.loads(path.with_suffix(".json").read_text()) == read_motion_config(path) == json.loads(json.dumps(cfg))
    stored = load_file(str(path))
    assert all(v.dtype == torch.float16 for v in stored.values())
    model = load_motion_model(tmp_path)
    assert model.config["training"]["steps"] == 7 and model.class_names == ["circle", "square", "triangle"]
    loaded = motion_state(model.unet)
    assert all(torch.equal(loaded[k], stored[k].float()) for k in stored)
    assert all(torch.equal(v, image_model.unet.state_dict()[k]) for k, v in _spatial(model.unet).items())
    assert not any(p.requires_grad for p in model.unet.parameters())


def test_missing_or_foreign_weights_are_one_line_errors(tmp_path):
    with pytest.raises(ScaleCrafterError, match="motion model not found .* train it with") as err:
        load_motion_model(tmp_path)
    assert "\n" not in str(err.value)
    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(other))
    with pytest.raises(ScaleCrafterError, match="not a shapes32 motion adapter"):
        load_motion_model(other)


def test_high_noise_share_draws_noisy_timesteps():
    g = torch.Generator().manual_seed(0)
    assert (sample_timesteps(4000, g, 1.0) >= 500).all()
    uniform = sample_timesteps(4000, g, 0.0)
    half = sample_timesteps(4000, g, 0.5)
    assert 0.45 < (uniform >= 500).float().mean() < 0.55
    assert 0.7 < (half >= 500).float().mean() < 0.8


def test_x0_weights_are_inverse_snr_clamped():
    alpha_bar = torch.tensor([0.9, 0.5, 0.2, 0.01])
    assert loss_weights(alpha_bar, None) is None and loss_weights(alpha_bar, 0) is None
    w = loss_weights(alpha_bar, 10.0)
    assert torch.allclose(w, torch.tensor([1.0, 1.0, 4.0, 10.0]))  # plain loss where SNR >= 1


def test_training_moves_only_the_motion_modules_and_probes_coherence(tmp_path, image_model):
    log = io.StringIO()
    record = train_motion(**dict(TINY_RUN, steps=2, probe_every=1, log=log), out=tmp_path / "a.safetensors")
    text = log.getvalue()
    assert "probe step 0: consistent" in text and "probe step 2" in text and "step 1 loss" in text
    probes = record["training"]["probes"]
    assert [p["step"] for p in probes] == [0, 1, 2]
    assert {"consistent", "single", "motion", "bg_change", "color_change"} <= set(probes[0])
    model = load_motion_model(tmp_path / "a.safetensors")
    shipped = image_model.unet.state_dict()
    assert all(torch.equal(v, shipped[k]) for k, v in _spatial(model.unet).items())
    assert any(torch.any(v) for k, v in motion_state(model.unet).items() if "proj_out" in k)
    assert record["training"]["steps"] == 2 and record["training"]["s_per_step"] > 0
    # the recorded command reproduces the run (constant LR: the steps actually done)
    assert "--steps 2 --batch 2 --frames 4" in record["training"]["command"]
    assert "--heads 1,2,4" in record["training"]["command"]


def test_training_is_seeded_stops_on_time_and_resumes(tmp_path):
    a = train_motion(**dict(TINY_RUN, steps=2, probe_every=0), out=tmp_path / "a.safetensors")
    train_motion(**dict(TINY_RUN, steps=2, probe_every=0), out=tmp_path / "b.safetensors")
    wa, wb = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "b.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa) and a["training"]["probes"] == []
    stopped = train_motion(**dict(TINY_RUN, steps=100, probe_every=0), max_seconds=0.0, out=tmp_path / "c.safetensors")
    assert stopped["training"]["steps"] == 1 and stopped["training"]["planned_steps"] == 100
    resumed = train_motion(
        **dict(TINY_RUN, steps=1, probe_every=0),
        resume=tmp_path / "a.safetensors",
        x0_weight_cap=10.0,
        out=tmp_path / "d.safetensors",
    )
    assert resumed["total_steps"] == 3 and len(resumed["training_history"]) == 2
    assert resumed["training"]["x0_weight_cap"] == 10.0


def test_training_script_refuses_bad_arguments(tmp_path, capsys):
    assert train_main(["--resume", str(tmp_path / "nothing.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert train_main(["--minutes", "0"]) == 2
    assert train_main(["--high-noise-share", "2"]) == 2
    assert not list(tmp_path.iterdir())
