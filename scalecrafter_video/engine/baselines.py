"""The Attn-SF baseline (Jin et al. 2023): spatial self-attention logits scaled by
sqrt(log_{N_train} N_test), the comparison method of the paper's tables."""

from __future__ import annotations

import weakref

from torch import nn

from ..ops.attn_sf import attn_sf_scale
from .layers import check_unet, find_unet
from .sizing import base_size, check_size, resolve_family

_ATTN_SF: "weakref.WeakKeyDictionary[nn.Module, list]" = weakref.WeakKeyDictionary()
_TEMPORAL_PARTS = {"motion_modules", "temp_attentions", "transformer_in", "temporal_transformer"}


def _self_attention_queries(unet: nn.Module):
    for name, module in unet.named_modules():
        if type(module).__name__ != "Attention" or getattr(module, "is_cross_attention", True):
            continue
        if _TEMPORAL_PARTS & set(name.split(".")) or not isinstance(getattr(module, "to_q", None), nn.Module):
            continue
        yield name, module.to_q


def apply_attn_sf(pipe_or_unet, height: int, width: int, *, base: int | tuple[int, int] | None = None,
                  family: str | None = None) -> int:
    """Scale the spatial self-attention logits for a `height` x `width` target (pixels for a
    pipeline, sample units for a UNet). Returns the number of attention layers scaled."""
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
    """Take the Attn-SF hooks off (idempotent). Returns whether they were on."""
    unet, _ = find_unet(pipe_or_unet)
    handles = _ATTN_SF.pop(unet, None)
    for handle in handles or ():
        handle.remove()
    return handles is not None
