"""The UNet of a pipeline, which of its convolutions the method may touch, and how plan selectors
name them.

Eligible ("spatial") convs are the k x k (k > 1) `nn.Conv2d` layers of the resnets, downsamplers
and upsamplers under `down_blocks`, `mid_block` and `up_blocks`. Never conv_in / conv_out,
1x1 convs, attention projections, or temporal layers (Conv3d temp_convs, motion modules,
temporal attention), which stay exactly as trained.

A layer's *logical name* is its name in the plain UNet; PEFT/LoRA wrappers add `.base_layer`
and `.lora_A.<adapter>` below it, and those convs are patched under the same logical name so a
LoRA-loaded UNet follows the plan too.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections import defaultdict
from typing import TYPE_CHECKING

from .errors import ScaleCrafterError

if TYPE_CHECKING:  # torch loads where a UNet is read: plans and scv's parser work without it
    from torch import nn

_ROOTS = ("down_blocks.", "mid_block.", "up_blocks.")
_EXCLUDED_PARTS = {"motion_modules", "temp_convs", "temp_attentions", "transformer_in", "attentions"}
_LORA_SUFFIX = re.compile(r"\.(base_layer|lora_[AB]\.[^.]+|lora_magnitude_vector\.[^.]+)(?=\.|$)")
_BLOCK = re.compile(r"^(down_blocks\.\d+|up_blocks\.\d+|mid_block)")


def unwrap_compiled(module: nn.Module) -> nn.Module:
    """The module inside `torch.compile`'s wrapper(s) (`OptimizedModule._orig_mod`), else `module`.

    The patch goes on the inner module, which the compiled wrapper calls: its names are the plain
    UNet's (no `_orig_mod.` prefix) and removing the patch never touches the wrapper."""
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")  # not imported: nothing was compiled
    compiled = getattr(eval_frame, "OptimizedModule", None)
    while compiled is not None and isinstance(module, compiled):
        module = module._orig_mod
    return module


def find_unet(pipe_or_unet) -> tuple[nn.Module, object | None]:
    """(the UNet, the pipeline or None) of a diffusers pipeline with a `.unet`, or of a bare UNet;
    a compiled UNet (`torch.compile`) is looked through to the module it wraps."""
    from torch import nn

    unet = getattr(pipe_or_unet, "unet", None)
    if isinstance(unet, nn.Module):
        return unwrap_compiled(unet), pipe_or_unet
    if isinstance(pipe_or_unet, nn.Module):
        return unwrap_compiled(pipe_or_unet), None
    raise ScaleCrafterError(
        f"cannot patch a {type(pipe_or_unet).__name__}: pass a diffusers pipeline with a .unet or the UNet itself"
    )


def check_unet(unet: nn.Module) -> int:
    """The UNet's number of down blocks (its levels); a one-line error for a model without the
    down_blocks / mid_block / up_blocks layout."""
    from torch import nn

    blocks = getattr(unet, "down_blocks", None)
    if not isinstance(blocks, nn.ModuleList) or not hasattr(unet, "up_blocks"):
        raise ScaleCrafterError(
            f"unsupported UNet class {type(unet).__name__}: ScaleCrafter patches UNets with down_blocks/"
            "mid_block/up_blocks (UNet2DConditionModel, UNetMotionModel, UNet3DConditionModel)"
        )
    return len(blocks)


def logical_name(name: str) -> str:
    """Module name with PEFT/LoRA wrapper segments removed."""
    return _LORA_SUFFIX.sub("", name)


def is_spatial_conv(name: str, module: nn.Module) -> bool:
    from torch import nn

    if not isinstance(module, nn.Conv2d) or not name.startswith(_ROOTS):
        return False
    return min(module.kernel_size) > 1 and not (_EXCLUDED_PARTS & set(name.split(".")))


def spatial_convs(unet: nn.Module) -> dict[str, list[nn.Conv2d]]:
    """Eligible convs grouped by logical layer name (a LoRA-wrapped layer has several)."""
    found: dict[str, list[nn.Conv2d]] = defaultdict(list)
    for name, module in unet.named_modules():
        if is_spatial_conv(name, module):
            found[logical_name(name)].append(module)
    return dict(found)


def block_of(layer: str) -> str:
    """`down_blocks.2.resnets.0.conv1` -> `down_blocks.2`; `mid_block...` -> `mid_block`."""
    match = _BLOCK.match(layer)
    return match.group(1) if match else layer


def selector_matches(selector: str, layer: str) -> bool:
    return layer == selector or layer.startswith(selector + ".")


def _known_prefixes(layers: list[str]) -> list[str]:
    prefixes = set()
    for layer in layers:
        parts = layer.split(".")
        for i in range(1, len(parts) + 1):
            prefixes.add(".".join(parts[:i]))
    return sorted(prefixes)


def check_selectors(selectors, layers: list[str], where: str) -> None:
    """Raise on any selector that names no eligible layer, listing the closest real names."""
    for selector in selectors:
        if any(selector_matches(selector, layer) for layer in layers):
            continue
        close = difflib.get_close_matches(selector, _known_prefixes(layers), n=3, cutoff=0.5)
        hint = f"closest real names: {', '.join(close)}" if close else "no similar names in this UNet"
        raise ScaleCrafterError(
            f"{where}: layer '{selector}' is not a re-dilatable conv of this UNet ({hint}); fix the name or drop it"
        )


def resolve_selectors(selectors, layers: list[str]) -> dict[str, str]:
    """Map every layer to the most specific (longest) selector that matches it."""
    chosen: dict[str, str] = {}
    for layer in layers:
        best = max((s for s in selectors if selector_matches(s, layer)), key=len, default=None)
        if best is not None:
            chosen[layer] = best
    return chosen
