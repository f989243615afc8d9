"""Size-aware patching: the plan follows the size actually sampled, explicit sizes are enforced,
the per-side scale is limited, and the family comes from the architecture or family=."""

import pytest
import torch

from helpers import run
from scalecrafter_video import ScaleCrafterError, apply_scalecrafter, remove_scalecrafter, scalecrafter
from scalecrafter_video.engine.families import meta_unet


@pytest.fixture(scope="module")
def unet(bare_unet):
    return bare_unet  # sample_size 8


def test_bare_unet_without_sizes_follows_each_call(unet):
    plain = {size: run(unet, size=size) for size in (8, 16, 32)}
    with scalecrafter(unet, 16, 16, ndcfg=False):
        at_2x = run(unet, size=16)
    with scalecrafter(unet, 32, 32, ndcfg=False):
        at_4x = run(unet, size=32)
    with scalecrafter(unet, batch_layout=None, ndcfg=False) as handle:
        assert handle.plan is None  # nothing resolved before the first call
        assert torch.equal(run(unet, size=8), plain[8])  # base size: as trained
        assert handle.plan.main == () and handle.plan.name == "as-trained"
        assert torch.equal(run(unet, size=32), at_4x)
        assert handle.plan.name == "derived-32x32" and handle.plan is handle.plan_for(32, 32)  # cached per size
        assert torch.equal(run(unet, size=16), at_2x)
        assert handle.plan.target == (16, 16) and handle.unet_calls == 3
    assert not torch.equal(at_4x, plain[32]) and not torch.equal(at_2x, plain[16])


def test_explicit_size_mismatch_is_one_line_error(unet):
    with scalecrafter(unet, height=32, width=32):
        with pytest.raises(
            ScaleCrafterError, match=r"called at height=16, width=16 .*applied for height=32, width=32"
        ) as e:
            run(unet, size=16)
    assert "\n" not in str(e.value)
    assert remove_scalecrafter(unet) is False


def test_pipeline_plan_follows_the_pipeline_call(tiny_sd):
    """Pixels for a pipeline: a 16x16 latent is 128 px; 64 px (the base) runs as trained."""

    def sample(height):
        g = torch.Generator().manual_seed(0)
        return tiny_sd(
            "x", height=height, width=height, num_inference_steps=2, generator=g, output_type="latent"
        ).images

    plain64, plain128 = sample(64), sample(128)
    with scalecrafter(tiny_sd, 128, 128):
        fixed128 = sample(128)
        with pytest.raises(
            ScaleCrafterError, match="called at height=64, width=64 .*applied for height=128, width=128"
        ):
            sample(64)
    with scalecrafter(tiny_sd) as handle:
        assert torch.equal(sample(64), plain64)
        assert torch.equal(sample(128), fixed128) and handle.plan.target == (128, 128)
    assert not torch.equal(fixed128, plain128)


def test_scale_above_the_limit_names_the_units(unet, tiny_sd):
    with pytest.raises(
        ScaleCrafterError, match=r"32x the base size .*max_scale=8; sizes were read as the UNet's own sample units"
    ) as e:
        apply_scalecrafter(unet, height=256, width=256)  # pixels passed to a bare UNet
    assert "\n" not in str(e.value)
    with pytest.raises(ScaleCrafterError, match=r"9x the base size .*sizes were read as pixels"):
        apply_scalecrafter(tiny_sd, height=576, width=64)
    with scalecrafter(unet, height=128, width=128, max_scale=16) as handle:  # the documented way to go further
        assert handle.plan.target == (128, 128)
    with scalecrafter(unet, ndcfg=False):  # following each call: refused at the call
        with pytest.raises(ScaleCrafterError, match="max_scale"):
            run(unet, size=72)
    with pytest.raises(ScaleCrafterError, match="max_scale must be"):
        apply_scalecrafter(unet, 16, 16, max_scale=0.5)
    with pytest.raises(ScaleCrafterError, match="both height and width"):
        apply_scalecrafter(unet, height=16)
    assert remove_scalecrafter(unet) is False and remove_scalecrafter(tiny_sd) is False


class _MetaPipeline:
    def __init__(self, unet):
        self.unet, self.vae_scale_factor = unet, 8


def test_unet3d_family_comes_from_family_not_a_guess():
    """ModelScope and Zeroscope share the UNet3D layout: a pipeline must name its family."""
    pipe = _MetaPipeline(meta_unet("modelscope"))
    with pytest.raises(
        ScaleCrafterError, match="several model families.*pass family= one of modelscope, zeroscope"
    ) as e:
        apply_scalecrafter(pipe, height=576, width=1024)
    assert "\n" not in str(e.value)
    with scalecrafter(pipe, height=576, width=1024, family="zeroscope") as handle:
        assert handle.plan.name == "zeroscope-1024x576" and handle.plan.base == (320, 576)
    with scalecrafter(pipe, height=512, width=512, family="modelscope") as handle:
        assert handle.plan.name == "modelscope-512x512"
    with scalecrafter(pipe.unet, height=64, width=64) as handle:  # a bare UNet: sample units, no family needed
        assert handle.family is None and handle.plan.base == (32, 32)
