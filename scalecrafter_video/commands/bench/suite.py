"""The GPU benchmark in one command (`scv bench --gpu-suite`, scripts/gpu_bench.sh).

For each target case (random weights, real shapes, DDIM 50, eta 1, guidance as `scv generate`):
the per-step time of every variant (direct, redilate, ndcfg, ndcfg-noreuse, ndcfg+dispersion),
then the NDCFG preset end to end with the VAE decode, as `scv generate` runs it; direct's whole
run is computed from its step time plus the measured decode (said so in the table). Then, while
the time budget allows, channels_last and regional torch.compile at the SD 1.5 size. Results are
rewritten after every row, so an interrupted run keeps what it measured. `--tiny` runs the same
on the CPU with the tiny models, for the tests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from . import VARIANTS
from .models import bench_model, build_pipeline, unet_inputs
from .report import environment, timing_markdown, write_results
from .run import timing_rows
from .timing import Case, reset_peak, time_step, timed

REDILATE_TOLERANCE = 0.03  # re-dilation-only step within 3 % of direct
COMPILE_RESERVE_S = 100.0  # try torch.compile only with this much of the budget left


@dataclass(frozen=True)
class Target:
    case: Case
    whole_s: float | None  # NDCFG preset, whole run end to end
    peak_gib: float | None


def targets(tiny: bool) -> list[Target]:
    if tiny:
        return [
            Target(Case(bench_model("tiny-sd"), 256, 256), None, None),
            Target(Case(bench_model("tiny-video"), 128, 128, 2), None, None),
        ]
    return [
        Target(Case(bench_model("sd15"), 2048, 2048), 20.0, None),
        Target(Case(bench_model("sdxl"), 4096, 4096), 120.0, 24.0),
        Target(Case(bench_model("animatediff"), 1024, 1024, 16), 60.0, 24.0),
    ]


def _checks(target: Target, rows: list[dict]) -> list[dict]:
    """The target's pass/fail lines from its rows."""
    case = target.case
    mine = [
        r
        for r in rows
        if r["model"] == case.model.name
        and r["res"] == case.res
        and not r.get("compiled")
        and not r.get("channels_last")
    ]
    whole = next(
        (r for r in mine if r["kind"] == "whole" and r["variant"] == "ndcfg" and r["source"] == "measured"), None
    )
    step = {r["variant"]: r["seconds"] for r in mine if r["kind"] == "step"}
    name = f"{case.model.name} {case.res}" + (f" {case.frames} frames" if case.frames else "")
    out = []
    if whole is not None and target.whole_s is not None:
        out.append(
            {
                "check": f"{name}: NDCFG preset whole run (s)",
                "measured": whole["seconds"],
                "target": f"<= {target.whole_s:g}",
                "pass": whole["seconds"] <= target.whole_s,
            }
        )
    if whole is not None and target.peak_gib is not None and whole["peak_gib"] is not None:
        out.append(
            {
                "check": f"{name}: peak GiB incl. VAE decode (allocated)",
                "measured": whole["peak_gib"],
                "target": f"<= {target.peak_gib:g}",
                "pass": whole["peak_gib"] <= target.peak_gib,
            }
        )
        out.append(
            {
                "check": f"{name}: peak GiB incl. VAE decode (reserved)",
                "measured": whole["reserved_gib"],
                "target": f"<= {target.peak_gib:g}",
                "pass": whole["reserved_gib"] <= target.peak_gib,
            }
        )
    if "direct" in step and "redilate" in step:
        ratio = step["redilate"] / step["direct"]
        out.append(
            {
                "check": f"{name}: re-dilation step / direct step",
                "measured": round(ratio, 3),
                "target": f"<= {1 + REDILATE_TOLERANCE:g}",
                "pass": ratio <= 1 + REDILATE_TOLERANCE,
            }
        )
    return out


def _compiled_rows(case: Case, device: torch.device, dtype: torch.dtype, flops: dict[str, int]) -> list[dict]:
    """Regional torch.compile of the repeated attention blocks (the convs the plan switches stay
    eager): direct and NDCFG step times with the FLOPs the eager rows counted, and NDCFG at a later
    step whose factors differ, to show that a plan changing per step compiles no new graph."""
    from torch._dynamo.utils import counters

    pipe = build_pipeline(case.model, device, dtype)
    pipe.unet.compile_repeated_blocks(dynamic=True)
    inputs = unet_inputs(pipe.unet, case.height, case.width, case.frames, device, dtype, pipe.vae_scale_factor)
    timestep = torch.tensor(981, device=device)
    with torch.no_grad():
        first_call_s = timed(partial(pipe.unet, **inputs, timestep=timestep), device)
    rows = []
    for variant, t in (("direct", 981), ("ndcfg", 981), ("ndcfg", 621)):  # 621: reference step 18, factors decayed
        graphs = counters["stats"]["unique_graphs"]
        # t=621 has the FLOPs of t=981: integer factors on the same layers, the same reused prefix
        row = time_step(pipe, case, variant, warmup=2, repeats=3, flops=flops[variant], t=t)
        rows.append(
            dict(
                row,
                compiled=True,
                first_call_s=round(first_call_s, 1),
                new_graphs=counters["stats"]["unique_graphs"] - graphs,
            )
        )
    del pipe
    reset_peak(device)
    return rows


def run_suite(
    out_dir: Path, *, tiny: bool = False, steps: int = 50, budget_s: float = 280.0, progress: bool = False
) -> dict:
    """Run the suite, writing bench.json and bench.md to `out_dir` after every row; returns the payload."""
    start = time.perf_counter()
    device = torch.device("cpu" if tiny else "cuda")
    dtype = torch.float32 if tiny else torch.float16
    rows: list[dict] = []
    checks: list[dict] = []
    notes: list[str] = []
    env = environment(device)

    def save(current: list[dict]) -> None:
        payload = {
            "rows": current,
            "checks": checks,
            "notes": notes,
            "steps": steps,
            **env,
            "seconds": round(time.perf_counter() - start, 1),
        }
        lines = [
            f"Measured on {env['card']}, torch {env['torch']}, diffusers {env['diffusers']}, "
            f"{str(dtype).removeprefix('torch.')}, DDIM {steps} steps, eta 1, random weights.",
            "",
            timing_markdown(current),
        ]
        if checks:
            lines += ["", "| check | measured | target | pass |", "|---|---|---|---|"]
            lines += [
                f"| {c['check']} | {c['measured']} | {c['target']} | {'yes' if c['pass'] else 'NO'} |" for c in checks
            ]
        lines += [f"- {n}" for n in notes]
        write_results(out_dir, "bench", payload, "\n".join(lines))

    def collect(part: list[dict]) -> list[dict]:
        rows.extend(part)
        save(rows)
        return part

    plan = targets(tiny)
    for target in plan:
        part = timing_rows(
            [target.case],
            list(VARIANTS),
            ["ndcfg"],
            steps=steps,
            device=device,
            dtype=dtype,
            repeats=1 if tiny else 2,
            progress=progress,
            on_row=lambda p: save(rows + p),
        )
        collect(part)
        checks.extend(_checks(target, rows))
        save(rows)
    first = plan[0].case
    collect(
        timing_rows(
            [first],
            ["direct", "ndcfg"],
            [],
            steps=steps,
            device=device,
            dtype=dtype,
            repeats=1 if tiny else 2,
            channels_last=True,
        )
    )
    left = budget_s - (time.perf_counter() - start)
    if tiny:
        notes.append("torch.compile is tried on a GPU only")
    elif left < COMPILE_RESERVE_S:
        notes.append(f"torch.compile skipped: {left:.0f} s of the {budget_s:.0f} s budget left")
    else:
        try:
            eager = {
                r["variant"]: r["flops"]
                for r in rows
                if r["kind"] == "step"
                and r["model"] == first.model.name
                and r["res"] == first.res
                and not r["channels_last"]
            }
            compiled = _compiled_rows(first, device, dtype, eager)
        except Exception as exc:  # a compiler failure is a result to report, not a reason to lose the others
            notes.append(f"torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        else:
            env_cols = {k: rows[0][k] for k in ("device", "dtype", "card", "torch", "diffusers")}
            collect(
                [
                    dict(
                        r,
                        model=first.model.name,
                        family=first.model.family,
                        res=first.res,
                        frames=first.frames,
                        channels_last=False,
                        **env_cols,
                    )
                    for r in compiled
                ]
            )
            graphs = ", ".join(f"{r['variant']} at t={r['timestep']}: {r['new_graphs']}" for r in compiled)
            notes.append(
                f"torch.compile (regional, dynamic shapes): first call {compiled[0]['first_call_s']} s; "
                f"graphs compiled after it: {graphs}"
            )
    save(rows)
    return {"rows": rows, "checks": checks, "notes": notes}
