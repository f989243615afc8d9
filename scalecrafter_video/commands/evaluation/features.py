"""Feature extractors for FID/KID. Each takes uint8 images (N, 3, 299, 299) and returns (N, D) floats.

- `inception`: the FID Inception v3 (TensorFlow 2015-12-05 weights as ported by torch-fidelity),
  through torchmetrics: the network every published FID uses. Needs torch-fidelity and the weights
  file; nothing is downloaded when the weights are not found offline.
- `random`: a seeded random-weight conv net, built in code: no download, deterministic on a given
  machine, for tests and the offline demo. Its numbers are NOT comparable with published FIDs.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...engine.errors import ScaleCrafterError

logger = logging.getLogger(__name__)

EXTRACTORS = ("inception", "random")
INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
INCEPTION_WEIGHTS_FILE = INCEPTION_WEIGHTS_URL.rsplit("/", 1)[1]
RANDOM_NOTE = "seeded random-conv features: for relative comparisons only, NOT comparable with published FIDs"


class RandomConvFeatures(nn.Module):
    """Seven stride-2 3x3 conv + ReLU layers with seeded He-normal weights (299 px -> 3 px, so the
    deepest units see the whole image); the feature vector is the spatial mean of every layer's
    activations (1120 values): colour and edges from the first layers, object size and count from the
    deep ones. (With four layers, 2x2 tiles of small shapes scored as close to true large shapes as
    a second sample of true large shapes did; with seven, about 2.5x farther.)"""

    name = "random"
    note = RANDOM_NOTE

    def __init__(self, seed: int = 0, widths: tuple[int, ...] = (32, 64, 128, 128, 256, 256, 256)):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        layers, c_in = [], 3
        for c_out in widths:
            conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * (2.0 / (9 * c_in)) ** 0.5)
                conv.bias.zero_()
            layers.append(conv)
            c_in = c_out
        self.layers = nn.ModuleList(layers)
        self.num_features = sum(widths)
        self.requires_grad_(False).eval()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 127.5 - 1.0
        pooled = []
        for conv in self.layers:
            x = torch.relu(conv(x))
            pooled.append(x.mean(dim=(2, 3)))
        return torch.cat(pooled, dim=1)


def inception_weights(path: str | Path | None = None) -> Path | None:
    """The Inception weights file: `path` if given (must exist), else torch-fidelity's download in
    torch's hub cache if present, else None."""
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise ScaleCrafterError(f"--inception-weights {str(path)!r} is not a file; {_how_to_get_weights()}")
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE
    return cached if cached.is_file() else None


def _how_to_get_weights() -> str:
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE
    return (
        f"download {INCEPTION_WEIGHTS_URL} on a connected machine and pass --inception-weights FILE "
        f"(or put it at {cached}); or use --features random for a download-free run (not comparable "
        "with published FIDs)"
    )


def _can_download(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
        return False
    try:
        with socket.create_connection(("github.com", 443), timeout=timeout):
            return True
    except OSError:
        return False


def inception_extractor(weights: str | Path | None = None) -> nn.Module:
    """torchmetrics' FID Inception v3 (2048-d pool features) loaded from local weights; downloads
    them into torch's hub cache only when none are found and the network is reachable."""
    path = inception_weights(weights)
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
        from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE
    except Exception as exc:  # torch-fidelity imports torchvision: a wheel built for another torch fails here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ScaleCrafterError(
            f"the Inception extractor cannot be imported ({first}): pip install "
            "'scalecrafter_video[inception]' with torchvision matching your torch"
        ) from None
    if not _TORCH_FIDELITY_AVAILABLE:
        raise ScaleCrafterError(
            "the Inception extractor needs torch-fidelity (and torchvision matching your torch): "
            "pip install 'scalecrafter_video[inception]', or use --features random"
        )
    if path is None:
        if not _can_download():
            raise ScaleCrafterError(
                f"Inception weights not found and the network is unreachable: {_how_to_get_weights()}"
            )
        logger.warning("downloading the FID Inception weights into %s", torch.hub.get_dir())
    module = NoTrainInceptionV3(
        name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(path) if path else None
    )
    module.name, module.note, module.num_features = "inception", "FID Inception v3 (pool3, 2048-d)", 2048
    return module


def build_extractor(kind: str, weights: str | Path | None = None, seed: int = 0) -> nn.Module:
    if kind == "inception":
        return inception_extractor(weights)
    if kind == "random":
        if weights is not None:
            raise ScaleCrafterError("--inception-weights only applies to --features inception")
        return RandomConvFeatures(seed)
    raise ScaleCrafterError(f"unknown --features {kind!r}: choose one of {', '.join(EXTRACTORS)}")


@torch.no_grad()
def extract(extractor: nn.Module, images, batch: int = 32, device: str = "cpu", progress=None) -> torch.Tensor:
    """Features (N, D) in float64 of uint8 images (N, 299, 299, 3) given as an array or a list of
    arrays; `progress(k)` is called after each batch of k images."""
    extractor = extractor.to(device)
    out = []
    for lo in range(0, len(images), batch):
        chunk = torch.as_tensor(np.stack(images[lo : lo + batch])).permute(0, 3, 1, 2).contiguous()
        out.append(extractor(chunk.to(device)).double().cpu())
        if progress is not None:
            progress(chunk.shape[0])
    return torch.cat(out) if out else torch.zeros(0, int(extractor.num_features), dtype=torch.float64)
