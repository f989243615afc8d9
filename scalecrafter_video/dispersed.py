"""Dispersed kernels for one patch, computed once per weight version.

The transform R (`ops.dispersion.dispersion_transform`) is built once per patch and kept as a
float32 tensor per device. Each conv's dispersed kernel b = R a is kept until its weight changes:
the cache key is the weight tensor's identity, in-place version counter, storage address,
device, dtype and shape, so a LoRA swap, an in-place update (fuse, load_state_dict) or CPU
offload moving the weight all give a fresh kernel.
"""

from __future__ import annotations

import numpy as np
import torch

from .ops.dispersion import disperse_kernel


def _weight_key(weight: torch.Tensor) -> tuple | None:
    if weight.requires_grad and torch.is_grad_enabled():  # a cached kernel would share one autograd graph
        return None
    try:
        version = weight._version
    except RuntimeError:  # inference tensors track no version: never cache them
        return None
    return id(weight), version, weight.data_ptr(), weight.device, weight.dtype, tuple(weight.shape)


class DispersedKernels:
    """R per device, and per conv the dispersed kernel of the weight it last saw."""

    def __init__(self, R: np.ndarray):
        self._R_host = torch.as_tensor(R, dtype=torch.float32)
        self._R: dict[torch.device, torch.Tensor] = {}

    def transform(self, device: torch.device) -> torch.Tensor:
        if device not in self._R:
            self._R[device] = self._R_host.to(device)
        return self._R[device]

    def kernel(self, weight: torch.Tensor, slot: dict) -> torch.Tensor:
        """The dispersed kernel of `weight`; `slot` is the calling conv's own cache entry."""
        key = _weight_key(weight)
        if key is not None and slot.get("key") == key:
            return slot["kernel"]
        kernel = disperse_kernel(weight, self.transform(weight.device))
        slot.clear()
        if key is not None:
            slot.update(key=key, kernel=kernel)
        return kernel
