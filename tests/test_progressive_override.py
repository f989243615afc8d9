"""`progressive=False` (`--no-progressive`) holds every factor for its whole window; None keeps the
plan's own decay, so the reference plans are unchanged by default."""

import json

import pytest
import torch

from scalecrafter_video.engine.presets import get_preset


def _mid_factor(plan, step):
    return plan.factors(981 - 20 * step, ["mid_block.resnets.0.conv1"])["mid_block.resnets.0.conv1"]


def test_reference_4x_plan_decays_and_the_override_holds_it():
    _, plan = get_preset("sd15-2048x2048")
    # method.md: d=4, tau=35 -> steps 0-8 use 4, 9-17 use 3, 18-34 use 2, 35-49 none
    assert [_mid_factor(plan, i)[0] for i in (0, 8, 9, 17, 18, 34)] == [4, 4, 3, 3, 2, 2]
    held = plan.with_progressive(False)
    assert all(_mid_factor(held, i) == (4.0, 4.0) for i in range(35))
    assert held.factors(981 - 20 * 35, ["mid_block.resnets.0.conv1"]) == {}  # window unchanged
    assert held.damped and not any(r.progressive for r in held.main + held.damped)
    assert plan.with_progressive(True) == plan


def test_cli_plan_no_progressive(scv):
    code, out, _ = scv("plan", "--family", "sd15", "--res", "2048x2048", "--json")
    assert code == 0
    default = json.loads(out)["steps"]
    code, out, _ = scv("plan", "--family", "sd15", "--res", "2048x2048", "--json", "--no-progressive")
    assert code == 0
    held = json.loads(out)["steps"]
    assert default[20]["main"]["mid_block.resnets.0.conv1"] == 2
    assert held[20]["main"]["mid_block.resnets.0.conv1"] == 4
    assert default[0] == held[0] and default[40] == held[40]


@pytest.fixture(scope="module")
def unet():
    from diffusers import UNet2DConditionModel

    from scalecrafter_video.models.shapes.model import UNET_CONFIG

    torch.manual_seed(0)
    return UNet2DConditionModel(**UNET_CONFIG).eval()


def test_apply_with_progressive_false_changes_late_steps_only(unet):
    from scalecrafter_video import scalecrafter

    x = torch.randn(2, 3, 128, 128)
    ctx = torch.randn(2, 1, unet.config.cross_attention_dim)

    def run(t, **kw):
        with torch.no_grad(), scalecrafter(unet, height=128, width=128, ndcfg=False, **kw) as handle:
            return unet(x, t, encoder_hidden_states=ctx).sample, handle.plan

    early_decay, plan = run(981)
    early_held, held_plan = run(981, progressive=False)
    assert any(r.progressive for r in plan.main) and not any(r.progressive for r in held_plan.main)
    assert torch.equal(early_decay, early_held)  # step 0: both at the full factor
    late_decay, _ = run(981 - 20 * 20)
    late_held, _ = run(981 - 20 * 20, progressive=False)
    assert not torch.allclose(late_decay, late_held)  # step 20: factor 2 vs 4 on the deepest level


def test_generate_no_progressive_is_recorded(scv, tmp_path):
    code, out, err = scv(
        "generate", "--model", "tiny-sd", "--res", "512x512", "--steps", "2", "--no-progressive", "--out", tmp_path
    )
    assert code == 0, err
    sidecar = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert sidecar["progressive"] is False
    assert sidecar["plan"]["main"] and not any(r["progressive"] for r in sidecar["plan"]["main"])
