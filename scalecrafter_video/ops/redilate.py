"""Re-dilated convolution (ScaleCrafter, He et al. 2024, sec. 3.2).

A k x k kernel trained at base resolution runs with dilation d at inference time, so its
receptive field grows by d while the weights stay as trained. Fractional factors resize the
input to round(H * ceil(d) / d) (the reference code's size, Python rounding), run the integer
dilation ceil(d), and resize the output back, bilinear both ways. One deliberate difference
from the reference: the output is resized back to the trained conv's output size, where the
reference uses int(H / stride), which for an odd input to a stride-2 conv is one row short
and changes the UNet's internal shapes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Factor = tuple[float, float]


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Output length of a convolution along one axis (PyTorch's formula).

    Args:
        size: the input length.
        kernel: the kernel length.
        stride: the stride.
        padding: the zero padding on each side.
        dilation: the dilation.

    Returns:
        floor((size + 2 padding - dilation (kernel - 1) - 1) / stride) + 1.
    """
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def redilated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int | tuple[int, int] = 1,
    factor: float | Factor = 1.0,
    groups: int = 1,
    base_padding: int | tuple[int, int] | None = None,
) -> torch.Tensor:
    """Cross-correlate `x` (N, C, H, W) with `weight` re-dilated by `factor` = d or (dh, dw).

    The output has the size the plain "same"-padded conv (dilation 1, padding `base_padding`,
    default (k-1)/2) would give, so the layer is a drop-in replacement. Integer factors run one
    dilated conv with padding d*(k-1)/2; fractional ones go through bilinear resizes.

    Args:
        x: the input (N, C, H, W).
        weight: the trained kernel (out, in / groups, kh, kw), odd sizes.
        bias: the conv's bias, or None.
        stride: the conv's stride, one int or (sh, sw).
        factor: the re-dilation factor, d or (dh, dw), each >= 1; 1 runs the plain conv.
        groups: the conv's groups.
        base_padding: the trained conv's padding, one int or (ph, pw); default (k-1)/2.

    Returns:
        The output (N, out, H', W'), H' x W' being the trained conv's output size.

    Raises:
        ValueError: a factor below 1.
    """
    kh, kw = weight.shape[-2:]
    sh, sw = _pair(stride)
    ph, pw = _pair(base_padding) if base_padding is not None else ((kh - 1) // 2, (kw - 1) // 2)
    dh, dw = (factor, factor) if isinstance(factor, (int, float)) else factor
    if dh < 1 or dw < 1:
        raise ValueError(f"re-dilation factors must be >= 1, got {(dh, dw)}")
    H, W = x.shape[-2:]
    out_hw = (conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw))
    ih, iw = math.ceil(dh), math.ceil(dw)
    padding = (ih * (kh - 1) // 2, iw * (kw - 1) // 2)
    if ih == dh and iw == dw:
        if (ih, iw) == (1, 1):
            return F.conv2d(x, weight, bias, (sh, sw), (ph, pw), 1, groups)
        return F.conv2d(x, weight, bias, (sh, sw), padding, (ih, iw), groups)
    scaled = (max(1, round(H * (ih / dh))), max(1, round(W * (iw / dw))))
    y = F.interpolate(x, size=scaled, mode="bilinear", align_corners=False)
    y = F.conv2d(y, weight, bias, (sh, sw), padding, (ih, iw), groups)
    return F.interpolate(y, size=out_hw, mode="bilinear", align_corners=False)
