"""Prefix reuse for the noise-damped pass of NDCFG.

The damped pass runs the UNet on the unconditional rows of the CFG batch with the damped plan.
Up to the first *unit* (conv_in, transformer_in, a down block, the mid block, an up block) that
holds a conv whose factor differs between the main and the damped plan at this step, it would
compute exactly what the main pass already computed for those rows. During the main pass,
forward hooks keep the unconditional rows of those units' outputs (a down block's hidden states
and its skip outputs alike); during the damped pass those units return them instead of running.
Units run in UNet order and an up block reads only skip outputs of earlier units, so a shared
prefix of units sees shared inputs. No diffusers `forward` is copied: a cached unit's `forward`
is replaced by a lookup for the length of the damped pass only, and put back in `finally`.

Rows: every supported UNet runs its units on (batch * frames, C, H, W) tensors in batch-major
order (UNetMotionModel and UNet3DConditionModel fold frames as b * F + f), so the unconditional
half of a [uncond; cond] batch is the first half of the rows.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator

import torch
from torch import nn

logger = logging.getLogger(__name__)

_MISSING = object()


def supports_reuse(unet: nn.Module) -> bool:
    """The UNet classes whose unit order and row layout are known (subclasses too)."""
    import diffusers

    known = tuple(
        getattr(diffusers, name, None) for name in ("UNet2DConditionModel", "UNetMotionModel", "UNet3DConditionModel")
    )
    return isinstance(unet, tuple(cls for cls in known if cls is not None))


def reuse_units(unet: nn.Module) -> list[tuple[str, nn.Module]]:
    """The UNet's units in the order its forward runs them."""
    units = [
        (name, getattr(unet, name))
        for name in ("conv_in", "transformer_in")
        if isinstance(getattr(unet, name, None), nn.Module)
    ]
    units += [(f"down_blocks.{i}", block) for i, block in enumerate(unet.down_blocks)]
    if isinstance(getattr(unet, "mid_block", None), nn.Module):
        units.append(("mid_block", unet.mid_block))
    units += [(f"up_blocks.{i}", block) for i, block in enumerate(unet.up_blocks)]
    return units


def differing_layers(main: dict, damped: dict) -> set[str]:
    """Layers whose factor differs between the main and the damped plan at one step."""
    return {layer for layer in main.keys() | damped.keys() if main.get(layer) != damped.get(layer)}


def shared_prefix(units: Iterable[str], differing: Iterable[str]) -> list[str]:
    """The units before the first one that holds a layer in `differing`."""
    differing = list(differing)
    prefix = []
    for unit in units:
        if any(layer.startswith(unit + ".") for layer in differing):
            break
        prefix.append(unit)
    return prefix


def rows_of(sample: torch.Tensor) -> int:
    """Rows the UNet's units see for this sample: batch, times frames for a 5-D video sample."""
    return sample.shape[0] * (sample.shape[2] if sample.ndim == 5 else 1)


def _first_rows(output, rows: int, copies: dict[int, torch.Tensor]):
    """A copy of the first half of the rows of every tensor in `output` (one per distinct tensor:
    a down block returns its last hidden states twice), or None if some tensor does not have
    `rows` rows (then the output's layout is unknown and it is not cached)."""
    if torch.is_tensor(output):
        if output.ndim == 0 or output.shape[0] != rows:
            return None
        if id(output) not in copies:
            # a copy, not a view: the main pass may still change its tensors in place (FreeU, adapters)
            copies[id(output)] = output[: rows // 2].clone()
        return copies[id(output)]
    if isinstance(output, (tuple, list)):
        parts = [_first_rows(part, rows, copies) for part in output]
        return None if any(p is None for p in parts) else type(output)(parts)
    return None


class PrefixReuse:
    """Keeps the unconditional rows of the shared units during the main pass and serves them to the
    damped pass. `arm` before the main pass, `replay` around the damped pass, `clear` after."""

    def __init__(self, unet: nn.Module):
        self.units = reuse_units(unet)
        self.names = [name for name, _ in self.units]
        self.cache: dict[str, object] = {}
        self._prefix: frozenset[str] = frozenset()
        self._rows = 0
        self.cached_bytes = 0
        self.peak_bytes = 0  # most bytes the cache held at once since the patch was applied
        self.reused_units = 0  # unit calls the damped passes did not have to run
        self._replaced: list[tuple[nn.Module, object]] = []  # (unit, its forward before) while replaying
        self._served = 0  # units cached when the replay began
        self.handles = [module.register_forward_hook(self._store_hook(name)) for name, module in self.units]

    def arm(self, differing: Iterable[str], rows: int) -> list[str]:
        """Before a main pass on `rows` rows: cache the units before the first differing layer.
        Returns those units."""
        self.clear()
        prefix = shared_prefix(self.names, differing)
        self._prefix, self._rows = frozenset(prefix), rows
        return prefix

    def _store_hook(self, name: str):
        def hook(module, args, output):
            if name not in self._prefix:
                return None
            copies: dict[int, torch.Tensor] = {}
            half = _first_rows(output, self._rows, copies)
            if half is None:
                logger.debug("prefix reuse: %s returned an output of unknown layout; it runs again", name)
                return None
            self.cache[name] = half
            self.cached_bytes += sum(t.numel() * t.element_size() for t in copies.values())
            return None

        return hook

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        """During the damped pass, cached units return their cached rows (each once) instead of running."""
        try:
            self.begin_replay()
            yield
        finally:
            self.end_replay()

    def begin_replay(self) -> None:
        """Start serving the cache (`replay` as two calls, for callers that cannot hold a `with`)."""
        self._prefix = frozenset()
        self._served = len(self.cache)
        for name, module in self.units:
            if name in self.cache:
                self._replaced.append((module, module.__dict__.get("forward", _MISSING)))
                module.forward = self._cached_forward(name, module.forward)

    def end_replay(self) -> None:
        """Put every replaced unit forward back and drop the cache (idempotent)."""
        self.reused_units += self._served - len(self.cache)
        self._served = 0
        while self._replaced:
            module, before = self._replaced.pop()
            if before is _MISSING:
                module.__dict__.pop("forward", None)
            else:
                module.forward = before
        self.clear()

    def _cached_forward(self, name: str, forward):
        def cached(*args, **kwargs):
            if name not in self.cache:  # called twice in one pass: run it
                return forward(*args, **kwargs)
            # counted in `end_replay`: a counter bumped here would be a value torch.compile guards on
            return self.cache.pop(name)

        return cached

    def clear(self) -> None:
        # the peak is kept here, not in the store hook: torch.compile would guard on its value there
        self.peak_bytes = max(self.peak_bytes, self.cached_bytes)
        self.cache.clear()
        self.cached_bytes = 0
        self._prefix = frozenset()

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        self.end_replay()
