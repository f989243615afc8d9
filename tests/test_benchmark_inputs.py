"""benchmarks/unet_step.py builds the inputs each UNet kind expects (the AnimateDiff GPU run once
failed on the per-frame text context) and times direct and ScaleCrafter steps."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
torch.set_num_threads(1)

import unet_step  # noqa: E402


def test_motion_unet_inputs_and_timing():
    import diffusers

    from scalecrafter_video import scalecrafter

    torch.manual_seed(0)
    unet = diffusers.UNetMotionModel(block_out_channels=(32, 32, 32, 32), layers_per_block=1, cross_attention_dim=16,
                                     norm_num_groups=8, motion_num_attention_heads=2, sample_size=8,
                                     motion_max_seq_length=8).eval()
    dev = torch.device("cpu")
    kw = unet_step.inputs(unet, "animatediff", 256, 256, 4, 16, dev, torch.float32)  # latent 32 = 4x base 8
    assert kw["sample"].shape == (2, 4, 4, 32, 32)
    assert kw["encoder_hidden_states"].shape[0] == 2 * 4  # one context per frame
    assert unet_step.time_step(unet, kw, 981, dev, repeats=1) > 0
    with scalecrafter(unet, 32, 32, base=8, ndcfg=True, batch_layout="uncond,cond") as handle:
        assert handle.plan.damped  # 4x: the NDCFG pass runs on the unconditional half of every frame
        assert unet_step.time_step(unet, kw, 981, dev, repeats=1) > 0
    assert handle.damped_passes == handle.unet_calls > 0
