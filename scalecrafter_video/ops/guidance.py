"""Noise-damped classifier-free guidance (ScaleCrafter, He et al. 2024, sec. 3.4)."""

from __future__ import annotations

import torch


def ndcfg_combine(
    uncond_damped: torch.Tensor, uncond_main: torch.Tensor, cond_main: torch.Tensor, scale: float
) -> torch.Tensor:
    """eps = eps_u(damped) + w * (eps_c(main) - eps_u(main)).

    Args:
        uncond_damped: the unconditional prediction of the damped (lighter) plan.
        uncond_main: the unconditional prediction of the main plan.
        cond_main: the conditional prediction of the main plan.
        scale: the guidance scale w.

    Returns:
        The noise-damped guided prediction, shaped like the inputs.
    """
    return uncond_damped + scale * (cond_main - uncond_main)


def ndcfg_batch(main: torch.Tensor, uncond_damped: torch.Tensor) -> torch.Tensor:
    """Rewrite a UNet output [u_main; c_main] as [u_damped; u_damped + c_main - u_main].

    A stock pipeline then computes u + w (c - u) = u_damped + w (c_main - u_main): NDCFG.

    Args:
        main: the main pass's output on the CFG batch, unconditional rows first: [u_main; c_main].
        uncond_damped: the damped pass's output on the unconditional rows (half of `main`'s batch).

    Returns:
        A tensor shaped like `main`: [u_damped; u_damped + c_main - u_main].
    """
    uncond_main, cond_main = main.chunk(2)
    return torch.cat([uncond_damped, uncond_damped + (cond_main - uncond_main)])
