"""Pure ops: re-dilation equivalences, fractional shapes, dispersion check values, NDCFG, Attn-SF."""

import math

import pytest
import torch
import torch.nn.functional as F

from scalecrafter_video.ops import (
    attn_sf_scale,
    disperse_kernel,
    dispersion_transform,
    ndcfg_batch,
    ndcfg_combine,
    redilated_conv2d,
)


@pytest.fixture
def conv():
    torch.manual_seed(0)
    return torch.nn.Conv2d(4, 6, 3, padding=1)


@pytest.mark.parametrize("stride", [1, 2])
def test_factor_one_equals_original_conv_exactly(conv, stride):
    conv.stride = (stride, stride)
    x = torch.randn(2, 4, 17, 12)
    assert torch.equal(redilated_conv2d(x, conv.weight, conv.bias, stride, 1.0), conv(x))


@pytest.mark.parametrize("d", [2, 3, 4])
def test_integer_redilation_on_upsampled_input_equals_upsampled_output(conv, d):
    x = torch.randn(1, 4, 12, 12)
    up = F.interpolate(x, scale_factor=d, mode="nearest")
    got = redilated_conv2d(up, conv.weight, conv.bias, 1, d)
    want = F.interpolate(conv(x), scale_factor=d, mode="nearest")
    m = 2 * d  # away from the zero-padded borders
    torch.testing.assert_close(got[..., m:-m, m:-m], want[..., m:-m, m:-m], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(conv(up)[..., m:-m, m:-m], want[..., m:-m, m:-m], atol=1e-3)


def test_integer_factor_is_one_dilated_conv(conv):
    x = torch.randn(1, 4, 16, 16)
    want = F.conv2d(x, conv.weight, conv.bias, 1, 3, 3)
    assert torch.equal(redilated_conv2d(x, conv.weight, conv.bias, 1, 3), want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "stride,factor,size", [(1, 2.5, (20, 20)), (2, 2.5, (21, 20)), (1, (1.5, 3.0), (16, 24)), (2, (2, 4), (16, 32))]
)
def test_fractional_and_anisotropic_shapes_and_dtypes(conv, stride, factor, size, dtype):
    conv = conv.to(dtype)
    conv.stride = (stride, stride)
    x = torch.randn(2, 4, *size, dtype=dtype)
    out = redilated_conv2d(x, conv.weight, conv.bias, stride, factor)
    assert out.shape == conv(x).shape and out.dtype == dtype


def test_anisotropic_integer_uses_per_axis_dilation(conv):
    x = torch.randn(1, 4, 16, 16)
    want = F.conv2d(x, conv.weight, conv.bias, 1, (2, 4), (2, 4))
    assert torch.equal(redilated_conv2d(x, conv.weight, conv.bias, 1, (2, 4)), want)


def test_factors_below_one_are_refused(conv):
    with pytest.raises(ValueError):
        redilated_conv2d(torch.randn(1, 4, 8, 8), conv.weight, conv.bias, 1, 0.5)


def test_dispersion_check_values():
    R = dispersion_transform(k=3, K=5, scale=2, eta=0.05, n=3)
    assert R.shape == (25, 9)
    assert abs(R[12, 4] - 1.0) < 1e-9
    assert abs(R[12, [0, 1, 2, 3, 5, 6, 7, 8]]).max() < 0.2
    for (i, j), value in {(0, 0): 0.6488, (2, 1): 0.7958, (6, 0): 0.1328, (12, 1): -0.1433}.items():
        assert abs(R[i, j] - value) < 5e-5, (i, j, R[i, j])


def test_dispersed_kernel_keeps_structure_calibration(conv):
    """conv_b(Up x) ~ Up(conv_a x): the solved objective holds on random inputs (one channel)."""
    R = dispersion_transform()
    a = conv.weight[:1, :1].double()
    b = disperse_kernel(a.float(), R).double()
    assert b.shape == (1, 1, 5, 5)
    x = torch.randn(1, 1, 9, 9, dtype=torch.float64)
    up = lambda t: F.interpolate(t, size=(17, 17), mode="bilinear", align_corners=True)  # noqa: E731
    lhs = F.conv2d(up(x), b, padding=2)[..., 4:-4, 4:-4]
    rhs = up(F.conv2d(x, a, padding=1))[..., 4:-4, 4:-4]
    plain = F.conv2d(up(x), a, padding=1)[..., 4:-4, 4:-4]
    assert (lhs - rhs).norm() < 0.35 * (plain - rhs).norm()


def test_ndcfg_batch_turns_pipeline_cfg_into_ndcfg():
    u_main, c_main, u_damped = torch.randn(3, 2, 4, 8, 8)
    out = ndcfg_batch(torch.cat([u_main, c_main]), u_damped)
    u, c = out.chunk(2)
    w = 7.5
    torch.testing.assert_close(u + w * (c - u), ndcfg_combine(u_damped, u_main, c_main, w))


def test_attn_sf_scale():
    assert attn_sf_scale(4096, 4096) == 1.0
    assert attn_sf_scale(4096, 1024) == 1.0
    assert math.isclose(attn_sf_scale(4096, 4096 * 4), math.sqrt(math.log(16384) / math.log(4096)))


def reference_redilated_conv(x, conv, factor):
    """The reference code's fractional re-dilation (its ReDilateConvProcessor), restated: resize the
    input to round(H * ceil(d) / d), conv with dilation and padding ceil(d), resize back to
    int(H / stride), bilinear both ways."""
    dilation = math.ceil(factor)
    scale = float(dilation / factor)
    h, w = x.shape[-2:]
    y = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bilinear")
    y = F.conv2d(y, conv.weight, conv.bias, conv.stride, dilation, dilation)
    return F.interpolate(y, size=(int(h / conv.stride[0]), int(w / conv.stride[1])), mode="bilinear")


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize(
    "factor, size", [(2.5, (13, 20)), (1.125, (15, 18)), (1.5, (9, 14)), (3.5, (10, 22)), (2.0, (12, 16))]
)
def test_fractional_redilation_equals_the_reference_operator(conv, stride, factor, size):
    """Bit for bit, wherever the reference keeps the trained output size (every input at stride 1,
    even inputs at stride 2); 13 x 2.5 and 15 x 1.125 are sizes where flooring the resize differs."""
    conv.stride = (stride, stride)
    if stride == 2:
        size = tuple(s + s % 2 for s in size)
    x = torch.randn(2, 4, *size, generator=torch.Generator().manual_seed(3))
    assert torch.equal(
        redilated_conv2d(x, conv.weight, conv.bias, stride, factor), reference_redilated_conv(x, conv, factor)
    )


def test_odd_input_at_stride_2_keeps_the_trained_output_size(conv):
    """The one deliberate difference: the reference resizes a stride-2 output to int(H / 2), a row
    short of the trained conv for odd H (it changes the UNet's internal shapes); we keep conv(x)'s."""
    conv.stride = (2, 2)
    x = torch.randn(1, 4, 21, 15)
    ours = redilated_conv2d(x, conv.weight, conv.bias, 2, 2.5)
    assert ours.shape == conv(x).shape == (1, 6, 11, 8)
    assert reference_redilated_conv(x, conv, 2.5).shape == (1, 6, 10, 7)
