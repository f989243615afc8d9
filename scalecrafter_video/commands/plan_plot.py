"""The plan as a picture: the re-dilation factor of every eligible conv (rows, grouped by block in
UNet order) at every sampling step (columns), the main plan and the damped (NDCFG) plan side by
side, with the NDCFG window and the dispersion window marked. `scv plan --plot` and `scv ui` draw
the same figure.

Figures are built on `matplotlib.figure.Figure`, never through pyplot, so drawing needs no GUI
backend and is safe in a server thread; PNGs are rendered by Agg.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..engine.errors import ScaleCrafterError
from ..engine.layers import block_of
from ..engine.plan import Plan
from ..outputs import files as outputs
from .describe import block_order, short_name

NO_DAMPED_PASS = "#d0d0d0"  # steps with ordinary CFG: no damped pass runs
WINDOW_COLOUR = "#1f5fbf"


def require_matplotlib(command: str) -> None:
    """A one-line error naming the extra to install when matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ScaleCrafterError(f"{command} needs matplotlib: pip install 'scalecrafter_video[plot]'")


def layer_order(layers: Sequence[str]) -> list[str]:
    """Layers by block in UNet order (down blocks, mid block, up blocks); within a block as given."""
    return sorted(layers, key=lambda layer: block_order(block_of(layer))[:2])


def plan_matrices(
    plan: Plan, rows: list[dict], layers: Sequence[str], ndcfg: bool = True
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(layers in plotting order, main factors, damped factors), each (layers x steps) from
    `Plan.steps` rows. An anisotropic factor counts by its larger side; damped is NaN at steps
    where no damped pass runs (NDCFG off, or outside its window)."""
    order = layer_order(layers)
    main = np.ones((len(order), len(rows)))
    damped = np.full((len(order), len(rows)), np.nan)
    runs_damped = ndcfg and bool(plan.damped)
    for j, row in enumerate(rows):
        main[:, j] = [_larger(row["main"].get(layer, 1)) for layer in order]
        if runs_damped and plan.ndcfg_active(row["timestep"]):
            damped[:, j] = [_larger(row["damped"].get(layer, 1)) for layer in order]
    return order, main, damped


def plan_figure(
    plan: Plan,
    rows: list[dict],
    layers: Sequence[str],
    *,
    ndcfg: bool = True,
    dispersion: bool = False,
    title: str | None = None,
):
    """The figure (a matplotlib `Figure`) of `plan` over `rows` (`Plan.steps` on a sampler's
    timesteps) for a UNet's eligible `layers`. `dispersion`: whether the dispersed kernels run
    (the plan's dispersion window is drawn either way, dotted when it is off)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    order, main, damped = plan_matrices(plan, rows, layers, ndcfg)
    levels = sorted({1.0, *np.unique(main).tolist(), *np.unique(damped[~np.isnan(damped)]).tolist()})
    palette = ListedColormap(["#ffffff", *_ramp(len(levels) - 1)]).with_extremes(bad=NO_DAMPED_PASS)
    steps = len(rows)
    fig = Figure(figsize=(11, max(3.8, 0.13 * len(order) + 2.0)), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    ndcfg_steps = int(np.sum(~np.isnan(damped[0]))) if order else 0
    damped_title = (
        "damped plan: NDCFG's unconditional term"
        if ndcfg_steps
        else "damped plan: none (NDCFG off)"
        if not ndcfg
        else "damped plan: none (this plan has no NDCFG window)"
        if not plan.damped
        else "damped plan: no step in its NDCFG window"
    )
    for ax, data, name in ((axes[0], main, "main plan: guidance direction"), (axes[1], damped, damped_title)):
        index = np.where(np.isnan(data), np.nan, np.searchsorted(levels, data))
        image = ax.imshow(
            index, aspect="auto", cmap=palette, vmin=-0.5, vmax=len(levels) - 0.5, interpolation="nearest"
        )
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("sampling step", fontsize=8)
        ax.set_xticks(_step_ticks(steps))
        ax.tick_params(labelsize=7)
        for boundary in _block_boundaries(order):
            ax.axhline(boundary - 0.5, color="#555555", linewidth=0.6)
        if 0 < ndcfg_steps < steps:
            ax.axvline(ndcfg_steps - 0.5, color="black", linestyle="--", linewidth=1.1)
    axes[0].set_yticks(range(len(order)), [short_name(layer) for layer in order], fontsize=6)
    handles = [Patch(facecolor=NO_DAMPED_PASS, edgecolor="#999999", label="no damped pass (ordinary CFG)")]
    if 0 < ndcfg_steps < steps:
        handles.append(
            Line2D([], [], color="black", linestyle="--", label=f"NDCFG window ends (steps 0-{ndcfg_steps - 1})")
        )
    dispersed = plan.dispersed_layers(list(order))
    dispersion_steps = sum(plan.dispersion_active(row["timestep"]) for row in rows)
    if dispersed and dispersion_steps:
        look = dict(linestyle="-", hatch="//") if dispersion else dict(linestyle="--", hatch=None)
        for first, last in _runs([i for i, layer in enumerate(order) if layer in dispersed]):
            for ax in axes:
                ax.add_patch(
                    Rectangle(
                        (-0.5, first - 0.5),
                        dispersion_steps,
                        last - first + 1,
                        fill=False,
                        edgecolor=WINDOW_COLOUR,
                        linewidth=2.0,
                        **look,
                    )
                )
        state = "on" if dispersion else "opt-in, off"
        handles.append(
            Patch(
                fill=False,
                edgecolor=WINDOW_COLOUR,
                linewidth=2.0,
                **look,
                label=f"dispersion window ({state}; steps 0-{dispersion_steps - 1})",
            )
        )
    colorbar = fig.colorbar(image, ax=list(axes), ticks=range(len(levels)), shrink=0.6, pad=0.01)
    anisotropic = any(isinstance(f, list) for row in rows for part in ("main", "damped") for f in row[part].values())
    colorbar.ax.set_yticklabels([f"{level:g}" for level in levels], fontsize=7)
    colorbar.set_label("re-dilation factor" + (" (larger side)" if anisotropic else ""), fontsize=8)
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.suptitle(title or default_title(plan, steps), fontsize=10)
    return fig


def default_title(plan: Plan, steps: int) -> str:
    size = ""
    if plan.target and plan.base:
        (th, tw), (bh, bw) = plan.target, plan.base
        size = f": {tw}x{th} on a {bw}x{bh} base"
    return f"plan {plan.name} ({plan.source}){size}, {steps} steps"


def save_plan_plot(
    plan: Plan,
    rows: list[dict],
    layers: Sequence[str],
    path: Path,
    *,
    ndcfg: bool = True,
    dispersion: bool = False,
    title: str | None = None,
) -> Path:
    """Draw `plan_figure` and write it as a PNG atomically."""
    fig = plan_figure(plan, rows, layers, ndcfg=ndcfg, dispersion=dispersion, title=title)
    return outputs.atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def _larger(factor) -> float:
    return float(max(factor)) if isinstance(factor, list) else float(factor)


def _ramp(n: int) -> list:
    from matplotlib import colormaps

    ramp = colormaps["YlOrRd"]
    return [ramp(0.3 + 0.65 * k / max(1, n - 1)) for k in range(n)]


def _step_ticks(steps: int) -> list[int]:
    every = 1 if steps <= 12 else 5 if steps <= 60 else 10 if steps <= 120 else 50
    return list(range(0, steps, every))


def _block_boundaries(order: list[str]) -> list[int]:
    return [i for i in range(1, len(order)) if block_of(order[i]) != block_of(order[i - 1])]


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs of sorted indices as (first, last)."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs
