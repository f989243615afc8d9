"""Pure tensor operations of the method: no module state, no patching."""

from .attn_sf import attn_sf_scale
from .dispersion import disperse_kernel, dispersion_transform
from .guidance import ndcfg_batch, ndcfg_combine
from .redilate import conv_output_size, redilated_conv2d

__all__ = [
    "attn_sf_scale",
    "conv_output_size",
    "disperse_kernel",
    "dispersion_transform",
    "ndcfg_batch",
    "ndcfg_combine",
    "redilated_conv2d",
]
