"""Dispersed convolution (ScaleCrafter, He et al. 2024, sec. 3.3).

A trained k x k kernel `a` becomes a K x K kernel b = R a that enlarges the receptive field
smoothly. R (K^2 x k^2, shared by every channel pair) solves, over every n x n input x,

    min || conv_b(Up x) - Up(conv_a x) ||^2 + eta^2 || conv_b(x) - conv_a(x) ||^2

(structure-level plus pixel-level calibration). Up is bilinear with aligned corners,
n -> scale (n - 1) + 1; conv is cross-correlation with zero "same" padding.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch


def _upsample_matrix(n: int, scale: int) -> np.ndarray:
    """(m x n) matrix of 1-D linear interpolation with aligned corners, m = scale (n-1) + 1."""
    m = scale * (n - 1) + 1
    up = np.zeros((m, n))
    for i in range(m):
        pos = i / scale
        lo = min(int(np.floor(pos)), n - 1)
        frac = pos - lo
        up[i, lo] += 1.0 - frac
        if frac > 0:
            up[i, lo + 1] += frac
    return up


def _conv_operator(image: np.ndarray, k: int) -> np.ndarray:
    """Matrix M with conv_kernel(image).ravel() = M @ kernel.ravel() (same padding, k odd)."""
    h, w = image.shape
    c = k // 2
    padded = np.pad(image, c)
    rows = np.empty((h * w, k * k))
    for p in range(h):
        for q in range(w):
            rows[p * w + q] = padded[p : p + k, q : q + k].ravel()
    return rows


@cache
def _transform(k: int, K: int, scale: int, eta: float, n: int) -> np.ndarray:
    up = _upsample_matrix(n, scale)
    A_rows, B_rows = [], []
    for j in range(n * n):
        x = np.zeros(n * n)
        x[j] = 1.0
        x = x.reshape(n, n)
        up_x = up @ x @ up.T
        S_b = _conv_operator(up_x, K)
        P_a = _conv_operator(x, k)
        # Up(conv_a x) is linear in a: upsample each column of P_a reshaped to an image.
        S_a = np.stack([(up @ P_a[:, t].reshape(n, n) @ up.T).ravel() for t in range(k * k)], axis=1)
        P_b = _conv_operator(x, K)
        A_rows += [S_b, eta * P_b]
        B_rows += [S_a, eta * P_a]
    A = np.concatenate(A_rows)
    B = np.concatenate(B_rows)
    R, *_ = np.linalg.lstsq(A, B, rcond=None)
    return R


def dispersion_transform(k: int = 3, K: int = 5, scale: int = 2, eta: float = 0.05, n: int = 3) -> np.ndarray:
    """The K*K x k*k matrix R mapping a k x k kernel (row-major taps) to its dispersed K x K kernel.

    R is the least-squares solution of the module docstring's objective; it depends only on the
    arguments, is shared by every channel pair, and is cached.

    Args:
        k: the trained kernel size (odd).
        K: the dispersed kernel size (odd, larger than `k`).
        scale: the upsampling factor of the structure-level term.
        eta: the weight of the pixel-level term.
        n: the side of the n x n inputs the objective is taken over.

    Returns:
        A new (K*K, k*k) float64 array (a copy: changing it does not touch the cache).

    Raises:
        ValueError: `k` or `K` is even, or `K <= k`.
    """
    if not (k % 2 and K % 2 and K > k):
        raise ValueError(f"dispersion needs odd kernel sizes with K > k, got k={k}, K={K}")
    return _transform(k, K, scale, float(eta), n).copy()


def disperse_kernel(weight: torch.Tensor, R: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Apply R to every (out, in) k x k slice of a conv weight.

    Args:
        weight: a conv weight (out, in, k, k).
        R: the transform from `dispersion_transform`, (K*K, k*k).

    Returns:
        The dispersed weight (out, in, K, K), in `weight`'s dtype and on its device (computed in
        float32).
    """
    R = torch.as_tensor(R, dtype=torch.float32, device=weight.device)
    K = int(round(R.shape[0] ** 0.5))
    out_c, in_c = weight.shape[:2]
    flat = weight.reshape(out_c, in_c, -1).to(torch.float32)
    return (flat @ R.T).reshape(out_c, in_c, K, K).to(weight.dtype)
