"""Dispersed kernels: R built once per patch, each conv's kernel computed once per weight version
within a UNet call (main and damped pass share it), fresh after any change of the weight, and
integer re-dilation factors never resize."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import scalecrafter_video.engine.dispersed as dispersed
import scalecrafter_video.engine.patch as patch
from helpers import inputs, tiny_unet
from scalecrafter_video import scalecrafter
from scalecrafter_video.engine.dispersed import DispersedKernels
from scalecrafter_video.ops import redilate
from scalecrafter_video.ops.dispersion import disperse_kernel, dispersion_transform


@pytest.fixture
def counted(monkeypatch):
    """Counts disperse_kernel calls made by the patch."""
    calls = []

    def counting(weight, R):
        calls.append(weight)
        return disperse_kernel(weight, R)

    monkeypatch.setattr(dispersed, "disperse_kernel", counting)
    return calls


def test_kernel_is_kept_per_weight_version():
    kernels = DispersedKernels(dispersion_transform())
    weight, conv = torch.randn(4, 3, 3, 3), "a conv"
    first = kernels.kernel(weight, conv)
    assert kernels.kernel(weight, conv) is first
    assert kernels.kernel(weight, "another conv") is not first
    with torch.no_grad():
        weight.mul_(2)  # in place: a new version
    second = kernels.kernel(weight, conv)
    assert second is not first and torch.equal(second, disperse_kernel(weight, dispersion_transform()))
    assert kernels.kernel(weight.to(torch.float16), conv).dtype == torch.float16
    assert kernels.kernel(weight.to("meta"), conv).device.type == "meta"
    assert kernels.transform(torch.device("cpu")) is kernels.transform(torch.device("cpu"))
    kernels.clear()
    assert kernels.kernel(weight, conv) is not second


def test_one_kernel_per_conv_per_call_shared_by_both_passes(counted, monkeypatch, bare_unet):
    transforms = []
    monkeypatch.setattr(patch, "dispersion_transform", lambda: transforms.append(1) or dispersion_transform())
    unet = bare_unet
    x = inputs(batch=2, size=32, t=981)
    with torch.no_grad(), scalecrafter(unet, 32, 32, dispersion=True, reuse=False, batch_layout="uncond,cond"):
        unet(**x)
        per_call = len(counted)
        assert per_call > 0 and len({id(w) for w in counted}) == per_call  # each conv once
        unet(**x)
        assert len(counted) == 2 * per_call  # dropped at the end of a call, computed again
    assert transforms == [1]


@pytest.mark.parametrize("how", ["no_grad in place", "through .data"])
def test_weight_changes_between_calls_are_seen(how):
    unet = tiny_unet()  # its own: the test changes a weight
    x = inputs(batch=2, size=32, t=981)
    conv = unet.mid_block.resnets[0].conv1
    with torch.no_grad(), scalecrafter(unet, 32, 32, dispersion=True):
        before = unet(**x).sample
        if how == "no_grad in place":
            conv.weight.mul_(1.5)
        else:  # peft's merge (fuse_lora) adds the LoRA delta this way: no version bump
            conv.weight.data += 0.5 * conv.weight.data
        changed = unet(**x).sample
    with torch.no_grad(), scalecrafter(unet, 32, 32, dispersion=True):
        fresh = unet(**x).sample
    assert not torch.allclose(changed, before, atol=1e-4)
    assert torch.equal(changed, fresh)


@pytest.mark.parametrize("factor", [2, 3.0, (2, 4), (3.0, 1.0)])
def test_integer_factors_never_resize(monkeypatch, factor):
    def no_resize(*args, **kwargs):
        raise AssertionError("an integer factor was resized")

    monkeypatch.setattr(redilate.F, "interpolate", no_resize)
    x, w = torch.randn(1, 2, 12, 12), torch.randn(3, 2, 3, 3)
    dh, dw = factor if isinstance(factor, tuple) else (factor, factor)
    want = F.conv2d(x, w, None, 1, (int(dh), int(dw)), (int(dh), int(dw)))
    assert torch.equal(redilate.redilated_conv2d(x, w, None, 1, factor), want)
