"""The Attn-SF baseline (Jin et al. 2023): spatial self-attention logits scaled by
sqrt(log_{N_train} N_test), the comparison method of the paper's tables."""

from __future__ import annotations

import weakref

from torch import nn

from ..ops.attn_sf import attn_sf_scale
from .layers import check_unet, find_unet
from .sizing import base_size, check_size, resolve_family

_ATTN_SF: weakref.WeakKeyDictionary[nn.Module, list] = weakref.WeakKeyDictionary()
_TEMPORAL_PARTS = {"motion_modules", "temp_attentions", "transformer_in", "temporal_transformer"}


def _self_attention_queries(unet: nn.Module):
    for name, module in unet.named_modules():
        if type(module).__name__ != "Attention" or getattr(module, "is_cross_attention", True):
            continue
        if _TEMPORAL_PARTS & set(name.split(".")) or not isinstance(getattr(module, "to_q", None), nn.Module):
            continue
        yield name, module.to_q


def apply_attn_sf(
    pipe_or_unet, height: int, width: int, *, base: int | tuple[int, int] | None = None, family: str | None = None
) -> int:
    """Scale the spatial self-attention logits for a `height` x `width` target.

    Each spatial self-attention's queries are scaled by `attn_sf_scale(n_train, n_test)`
    (forward hooks; temporal and cross-attention are left alone). Applying again replaces the
    earlier scaling.

    Args:
        pipe_or_unet: a diffusers pipeline or a bare UNet.
        height: the target height: pixels for a pipeline, sample units for a bare UNet.
        width: the target width, in the same units.
        base: the training size (one side or (height, width)); default the family's or the
            UNet config's.
        family: the model family where the architecture cannot tell (ModelScope vs Zeroscope).

    Returns:
        The number of attention layers scaled.

    Raises:
        ScaleCrafterError: not a supported UNet, or a size that is not a positive integer.
    """
    unet, pipe = find_unet(pipe_or_unet)
    check_unet(unet)
    check_size(height, width)
    (bh, bw), _ = base_size(unet, pipe, resolve_family(unet, pipe, family), base)
    ratio = (height * width) / (bh * bw)
    remove_attn_sf(unet)

    def hook(module, args, output):
        n_test = output.shape[-2]
        return output * attn_sf_scale(n_test / ratio, n_test)

    _ATTN_SF[unet] = [q.register_forward_hook(hook) for _, q in _self_attention_queries(unet)]
    return len(_ATTN_SF[unet])


def remove_attn_sf(pipe_or_unet) -> bool:
    """Take the Attn-SF hooks off (idempotent).

    Args:
        pipe_or_unet: the pipeline or UNet `apply_attn_sf` was given.

    Returns:
        Whether they were on.
    """
    unet, _ = find_unet(pipe_or_unet)
    handles = _ATTN_SF.pop(unet, None)
    for handle in handles or ():
        handle.remove()
    return handles is not None
