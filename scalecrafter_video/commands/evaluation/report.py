"""`scv eval` outputs: a paper-style Markdown table, the JSON rows, and a plot of each metric
against resolution (one line per method)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...outputs import files as outputs
from .run import METRICS

STRUCTURE = ("single", "repetition", "clean", "consistent", "motion_ratio")
SHARES = ("single", "repetition", "consistent")
LABELS = {
    "fid_r": "FID_r",
    "kid_r": "KID_r",
    "fid_b": "FID_b",
    "kid_b": "KID_b",
    "fid_c": "FID_c",
    "kid_c": "KID_c",
    "single": "single object",
    "repetition": "repetition",
    "clean": "clean (base = 1)",
    "consistent": "consistent",
    "motion_ratio": "motion (base = 1)",
}


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    present = [m for m in METRICS if any(r.get(m) is not None for r in rows)]
    return present + [m for m in STRUCTURE if any(r.get(m) is not None for r in rows)]


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key in SHARES:
        return f"{value:.0%}"
    if key.startswith("kid"):
        return f"{value:.4f}"
    return f"{value:.2f}"


def markdown_table(result: dict[str, Any]) -> str:
    rows = result["rows"]
    columns = _columns(rows)
    several_models = len({r["model"] for r in rows}) > 1
    videos = any(r.get("video") for r in rows)
    head = (
        (["model"] if several_models else [])
        + ["method", "res", "n"]
        + (["frames"] if videos else [])
        + [LABELS[c] for c in columns]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = ([str(r["model"])] if several_models else []) + [
            r["method"] + (" (base)" if r["base"] else ""),
            r["res"],
            str(r["n"]),
        ]
        if videos:
            cells.append(str(r.get("frames", "-")))
        lines.append("| " + " | ".join(cells + [_cell(c, r.get(c)) for c in columns]) + " |")
    meta = result["meta"]
    note = f"features: {meta['features']} ({meta['features_note']}); reference: {meta['reference'] or 'none'}"
    if videos:
        sources = {r.get("frames_from") for r in rows if r.get("video")}
        read = {"png": "their lossless PNG frames", "mp4": "the decoded MP4s (H.264)"}.get(
            sources.pop() if len(sources) == 1 else "", "PNG frames where saved, else the MP4s"
        )
        note += f"; videos: FID/KID over every frame, n = clips, read from {read}"
    if meta.get("crops_per_image"):
        note += f"; crops: {meta['crops_per_image']} of {meta['crop_size']} px per image"
    return "\n".join(lines) + "\n\n" + note


def write_json(result: dict[str, Any], path: Path) -> Path:
    return outputs.atomic_write_text(Path(path), json.dumps(result, indent=2) + "\n")


def plot(result: dict[str, Any], path: Path) -> Path:
    """One panel per metric, x = pixels per image (labelled WxH), one line per (model,) method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    columns = _columns(rows)
    if not columns:
        from ...engine.errors import ScaleCrafterError

        raise ScaleCrafterError("nothing to plot: no metric could be computed (pass --reference, --base or --crops)")
    several_models = len({r["model"] for r in rows}) > 1
    ncols = min(3, len(columns))
    nrows = -(-len(columns) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.3 * nrows), squeeze=False)
    ticks = sorted({(r["width"] * r["height"], r["res"]) for r in rows})
    # one line per (model, method), starting at the model's base-size row (every method samples as
    # trained there); one colour per line in every panel
    lines = list(dict.fromkeys((r["model"], r["method"], r.get("video", False)) for r in rows if not r["base"]))
    lines = lines or list(dict.fromkeys((r["model"], r["method"], r.get("video", False)) for r in rows))
    both_kinds = len({video for _, _, video in lines}) > 1
    colours = {line: f"C{i % 10}" for i, line in enumerate(lines)}
    for ax, column in zip(axes.flat, columns):
        for model, method, video in lines:
            points = sorted(
                (r["width"] * r["height"], r[column])
                for r in rows
                if r["model"] == model
                and r.get("video", False) == video
                and (r["base"] or r["method"] == method)
                and r.get(column) is not None
            )
            if points:
                label = (f"{model} " if several_models else "") + method + (" (video)" if both_kinds and video else "")
                ax.plot(
                    [p for p, _ in points],
                    [v for _, v in points],
                    marker="o",
                    color=colours[model, method, video],
                    label=label,
                )
        ax.set_xscale("log")
        ax.set_xticks([p for p, _ in ticks], [res for _, res in ticks], rotation=30)
        ax.minorticks_off()
        ax.set_title(LABELS[column])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(columns) :]:
        ax.axis("off")
    fig.suptitle(f"scv eval ({result['meta']['features']} features)", fontsize=10)
    fig.tight_layout()
    try:
        outputs.atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    finally:
        plt.close(fig)
    return Path(path)
