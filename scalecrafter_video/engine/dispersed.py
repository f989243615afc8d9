"""Dispersed kernels for one patch: R once, each conv's kernel once per weight version and UNet call.

The transform R (`ops.dispersion.dispersion_transform`) is built once per patch and kept as a
float32 tensor per device. Each conv's dispersed kernel b = R a is computed on first use and
reused while its weight is the same tensor, at the same version, address, device and dtype: the
main and the damped pass of one UNet call share it, and a weight that moves or changes in
between (sequential CPU offload, an in-place update) gets a fresh one. The kernels are dropped
at the end of every UNet call (`clear`), because updates through `.data` (peft's LoRA merge,
hence `fuse_lora`) change a weight without bumping its version: a kernel kept across calls
could silently be stale. One small matmul per dispersed conv per UNet call is the price.
"""

from __future__ import annotations

import numpy as np
import torch

from ..ops.dispersion import disperse_kernel


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
        self._kept: dict[object, tuple[tuple, torch.Tensor]] = {}  # conv -> (weight key, kernel)

    def transform(self, device: torch.device) -> torch.Tensor:
        if device not in self._R:
            self._R[device] = self._R_host.to(device)
        return self._R[device]

    def kernel(self, weight: torch.Tensor, owner: object) -> torch.Tensor:
        """The dispersed kernel of `weight` (the weight `owner`, a conv, runs with), computed again
        only when the weight changed since the owner's last call."""
        key = _weight_key(weight)
        kept = self._kept.get(owner)
        if key is not None and kept is not None and kept[0] == key:
            return kept[1]
        kernel = disperse_kernel(weight, self.transform(weight.device))
        if key is None:
            self._kept.pop(owner, None)
        else:
            self._kept[owner] = (key, kernel)
        return kernel

    def clear(self) -> None:
        """Drop every kept kernel (end of a UNet call)."""
        self._kept.clear()
