"""Attn-SF baseline (Jin et al. 2023): entropy-preserving self-attention scale."""

from __future__ import annotations

import math


def attn_sf_scale(n_train: float, n_test: float) -> float:
    """Factor on the attention logits: sqrt(log_{N_train} N_test) (1 when N_test <= N_train).

    Args:
        n_train: tokens of the attention at the training size (e.g. height x width of its feature map).
        n_test: tokens of the same attention at the sampled size.

    Returns:
        The scale to multiply the logits (or the queries) by; 1.0 when `n_test <= n_train` or
        `n_train <= 1`.
    """
    if n_train <= 1 or n_test <= n_train:
        return 1.0
    return math.sqrt(math.log(n_test) / math.log(n_train))
