"""FID and KID on precomputed feature sets, computed by torchmetrics (no matrix square roots here).

Features are extracted once per image set and then compared in many pairs (generated vs real, vs
base-size generations, crops vs crops), so torchmetrics gets them through an identity "extractor".
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000  # torchmetrics' default; capped by the smaller set


class _Precomputed(nn.Module):
    """The identity, announcing the feature width, so torchmetrics takes features as its input."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def fid(real: torch.Tensor, fake: torch.Tensor) -> float | None:
    """Frechet distance between the Gaussians fitted to two feature sets (N, D); None below 2 each."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    if len(real) < 2 or len(fake) < 2:
        return None
    metric = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]))
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def kid(
    real: torch.Tensor,
    fake: torch.Tensor,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Unbiased squared MMD with the cubic polynomial kernel, mean and std over random subsets of
    min(subset_size, len(real), len(fake)) samples (seeded); None below 2 samples each."""
    from torchmetrics.image.kid import KernelInceptionDistance

    size = min(subset_size, len(real), len(fake))
    if size < 2:
        return None
    with warnings.catch_warnings():  # "will save all extracted features in buffer": features are all we have
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=_Precomputed(real.shape[1]), subsets=subsets, subset_size=size)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)
