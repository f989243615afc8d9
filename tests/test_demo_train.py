"""The demo training loop: LR schedules, early stop on a wall-clock limit with the steps done
recorded, checkpoints that reload with the architecture they were trained with."""

import io
import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from scalecrafter_video.commands.demo.train import lr_schedule, train  # noqa: E402
from scalecrafter_video.models.shapes.model import (  # noqa: E402
    CONFIG_NAME,
    UNET_CONFIG,
    load_demo_model,
)

TINY = dict(UNET_CONFIG, block_out_channels=(8, 8, 16), norm_num_groups=4, only_cross_attention=True)


def test_lr_schedules():
    const = lr_schedule(1e-3, steps=100, warmup=10, schedule="constant")
    cos = lr_schedule(1e-3, steps=100, warmup=10, schedule="cosine")
    assert const(0) == pytest.approx(1e-4) and cos(0) == pytest.approx(1e-4)
    assert const(10) == const(99) == 1e-3
    assert cos(10) == pytest.approx(1e-3) and cos(99) == pytest.approx(1e-4, rel=0.01)
    with pytest.raises(ValueError, match="unknown LR schedule"):
        lr_schedule(1e-3, 10, 1, "linear")


def test_train_stops_on_time_limit_and_reloads(tmp_path):
    seen = []
    info = train(
        steps=1000,
        batch=2,
        threads=1,
        warmup=1,
        out=tmp_path / "final",
        unet_config=TINY,
        max_seconds=0.0,
        ckpt_every=0,
        on_checkpoint=lambda s, u, e: seen.append(s),
        log=io.StringIO(),
    )
    assert info["training"]["steps"] == 1 and info["training"]["planned_steps"] == 1000
    assert seen == [1]
    # constant schedule: the recorded command reproduces the steps actually done
    assert "--steps 1 " in info["training"]["command"] and "--schedule constant" in info["training"]["command"]
    cfg = json.loads((tmp_path / "final" / CONFIG_NAME).read_text())
    assert cfg["unet"]["only_cross_attention"] is True and cfg["unet"]["block_out_channels"] == [8, 8, 16]
    model = load_demo_model(tmp_path / "final")
    assert model.unet.config.only_cross_attention is True
    assert not any(p.requires_grad for p in model.unet.parameters())


def test_train_is_reproducible_from_the_seed(tmp_path):
    def run(name):
        train(
            steps=2,
            batch=2,
            threads=1,
            warmup=1,
            out=tmp_path / name,
            unet_config=TINY,
            ckpt_every=0,
            log=io.StringIO(),
        )
        return load_demo_model(tmp_path / name).unet.state_dict()

    a, b = run("a"), run("b")
    assert all(torch.equal(a[k], b[k]) for k in a)
