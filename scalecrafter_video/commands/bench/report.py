"""Benchmark rows as Markdown tables and JSON files, each row naming the card and the versions."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from ...outputs import files as outputs


def environment(device: torch.device) -> dict:
    """The card (or CPU) and the versions every row carries."""
    if device.type == "cuda":
        card = torch.cuda.get_device_name(device)
    else:
        card = f"CPU {platform.machine()} ({torch.get_num_threads()} threads)"
    found = outputs.versions(("torch", "diffusers"))
    return {"card": card, "torch": found["torch"], "diffusers": found["diffusers"]}


def _cell(value, digits: int | None = None) -> str:
    if value is None:
        return "-"
    if digits is not None and isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _peak(allocated: float | None, reserved: float | None) -> str:
    return "-" if allocated is None else f"{allocated} ({reserved})"


def flops_markdown(rows: list[dict]) -> str:
    lines = [
        "| family | res | frames | variant | plan | PFLOP per run | ratio to direct | reuse cache GiB (fp16) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['family']} | {r['res']} | {r['frames'] or '-'} | {r['variant']} | {_cell(r['plan'])} | "
            f"{r['flops'] / 1e15:.4g} | {r['ratio']:.3f} | {r['cache_gib']:g} |"
        )
    return "\n".join(lines)


def timing_markdown(rows: list[dict]) -> str:
    """One line per model, size and variant: its step time and, where run, its whole run."""
    lines = [
        "| model | res | frames | variant | plan | s/step | TFLOP/s | whole run s | of which VAE decode s "
        "| peak GiB (reserved) | reuse cache GiB | card | torch | diffusers |",
        "|" + "---|" * 14,
    ]
    merged: dict[tuple, dict] = {}
    for r in rows:
        key = (
            r["model"],
            r["res"],
            r["frames"],
            r["variant"],
            r.get("channels_last", False),
            r.get("compiled", False),
            r.get("timestep", 981),
        )
        merged.setdefault(key, {})[r["kind"]] = r
    for (model, res, frames, variant, channels_last, compiled, t), kinds in merged.items():
        step, whole = kinds.get("step", {}), kinds.get("whole", {})
        first = step or whole
        label = (
            variant
            + (" (channels_last)" if channels_last else "")
            + (" (torch.compile)" if compiled else "")
            + (f" at t={t}" if t != 981 else "")
        )
        whole_s = _cell(whole.get("seconds"))
        if whole and whole.get("source") != "measured":
            whole_s += " (computed from step time)"
        peak = max((k.get("peak_gib") or 0 for k in (step, whole)), default=0) or None
        reserved = max((k.get("reserved_gib") or 0 for k in (step, whole)), default=0) or None
        lines.append(
            f"| {model} | {res} | {frames or '-'} | {label} | {_cell(first.get('plan'))} "
            f"| {_cell(step.get('seconds'))} | {_cell(step.get('tflops_per_s'))} | {whole_s} "
            f"| {_cell(whole.get('decode_s'))} | {_peak(peak, reserved)} "
            f"| {_cell(first.get('cache_gib'))} | {first['card']} | {first['torch']} | {first['diffusers']} |"
        )
    return "\n".join(lines)


def write_results(out_dir: Path, name: str, payload: dict, markdown: str) -> list[Path]:
    """`name`.json and `name`.md in `out_dir`, written atomically (rewritten as rows come in)."""
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    outputs.atomic_write_text(json_path, json.dumps(payload, indent=1) + "\n")
    outputs.atomic_write_text(md_path, markdown + "\n")
    return [json_path, md_path]
