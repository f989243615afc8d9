#!/usr/bin/env python
"""Evidence for the cascade (motion and content kept at 2x / 4x) on the shipped shapes models:
`python scripts/cascade_evidence.py [--models shapes32-motion,shapes32] [--samples 24] [--steps 25 50]
[--scales 2 4] [--cases base,upsampled,direct,scalecrafter,cascade] [--threads 1] [--out DIR]`.

Per model (shapes32-motion: clips; shapes32: images), DDIM step count and scale, every case samples
the same labels (sample i: class i mod 3) from the same per-index starting noise (the demo's
sampling.sample / run.run_case; DDIM, guidance 3, eta 1, seed 0 unless given):

  base          the base size (32 px); sampled once per model and step count, the reference
  upsampled     the base samples resized bicubic per frame to the target size, no denoising: the
                metric control, which must read 1.00 (paired with base)
  direct        sampled at the target size, no patch
  scalecrafter  the engine's derived plan for the target size, NDCFG on (plain ScaleCrafter)
  cascade       every variant of CASCADE_VARIANTS (or `cascade:NAME` for one): base sample i refined
                to the target size by scalecrafter_video.jobs.cascade.cascade (paired with base).

Numbers per case (models/shapes/video_metrics.clip_evidence, metrics.image_evidence): single /
repetition / consistent / content kept as shares with 95 % Wilson intervals; on the clips with one
object in every frame, per-frame (step), net and least-squares (fit) velocity, each as case mean /
base mean with a 95 % bootstrap interval (2000 resamples, seed 0; paired over clips for upsampled and
cascade, whose clip i grew from base clip i; unpaired for direct and scalecrafter, which start from
their own noise at the target size); colour spread (RMS distance of the objects' colours from their
mean) over base's, bootstrap likewise; clean.

Writes DIR/results.json (every number with its n and interval; compact per-sample values) and
DIR/table.md (DIR: --out, default samples/cascade_evidence/full) after every case; a rerun with the
same settings skips the cases already in results.json and, within a case, the batches (cascade:
samples) a stopped run finished, kept under DIR/.partial until the case is done (so a case longer
than a sitting is measured across several; --batch must match). The reduced harness check of 2026-12-06 is
in samples/cascade_evidence/reduced/.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import json
import os
import shutil
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from scalecrafter_video.commands.demo.run import Case, run_case  # noqa: E402
from scalecrafter_video.commands.demo.video_demo import json_safe  # noqa: E402
from scalecrafter_video.models.shapes import metrics, video_metrics  # noqa: E402
from scalecrafter_video.outputs import files as outputs  # noqa: E402

CASCADE_MODULE = "scalecrafter_video.jobs.cascade"
MODELS = ("shapes32-motion", "shapes32")
BASIC_CASES = ("base", "upsampled", "direct", "scalecrafter")
PAIRED = {"base": True, "upsampled": True, "direct": False, "scalecrafter": False}  # cascade cases: paired
SETTINGS = ("samples", "seed", "guidance", "eta")  # a resumed run must match these
PARTIAL = ".partial"  # DIR/.partial/<case>-b<batch>/: batches of a case not finished yet


# The cascade variants measured: the stage plan, the restart (two values: the first stage's, then
# the later stages') and the colour fix (FreeScale's skip exponent 2 throughout). The default
# cascade is full-r0.5-0.8-adain (at 2x, one refining stage, the same as full-r0.5-adain).
CASCADE_VARIANTS = {
    "full-r0.3": dict(stage_plan="full", restart=0.3, color_fix="none"),
    "full-r0.5": dict(stage_plan="full", restart=0.5, color_fix="none"),
    "restrained-r0.3": dict(stage_plan="restrained", restart=0.3, color_fix="none"),
    "none-r0.3": dict(stage_plan="none", restart=0.3, color_fix="none"),
    "full-r0.5-adain": dict(stage_plan="full", restart=0.5, color_fix="adain"),
    "full-r0.7-adain": dict(stage_plan="full", restart=0.7, color_fix="adain"),
    "full-r0.5-wavelet": dict(stage_plan="full", restart=0.5, color_fix="wavelet"),
    "restrained-r0.5-adain": dict(stage_plan="restrained", restart=0.5, color_fix="adain"),
    "none-r0.5-adain": dict(stage_plan="none", restart=0.5, color_fix="adain"),
    "full-r0.5-0.8-adain": dict(stage_plan="full", restart=(0.5, 0.8), color_fix="adain"),
    "restrained-r0.5-0.8-adain": dict(stage_plan="restrained", restart=(0.5, 0.8), color_fix="adain"),
    "none-r0.5-0.8-adain": dict(stage_plan="none", restart=(0.5, 0.8), color_fix="adain"),
    "full-r0.5-0.8-none": dict(stage_plan="full", restart=(0.5, 0.8), color_fix="none"),
}


def sample_shapes_cascade(
    model,
    labels,
    base: np.ndarray,
    height: int,
    width: int,
    *,
    steps: int,
    guidance: float,
    eta: float,
    seed: int,
    batch: int = 8,
    frames: int | None = None,
    done: MutableMapping | None = None,
    **settings,
) -> tuple[np.ndarray, dict]:
    """Each base sample i refined up to `height` x `width` by the cascade (`scv demo`'s
    sampling.cascade_sample: `scalecrafter_video.jobs.cascade.cascade` per sample, as `scv upscale`
    refines a user's file, generator (seed, i)); `settings`: a CASCADE_VARIANTS entry.

    Returns:
        (samples in base's layout at the target size, {"unet_calls": over all samples and stages}).
    """
    from scalecrafter_video.commands.demo.sampling import cascade_sample

    return cascade_sample(
        model, labels, base, height, width, steps=steps, guidance=guidance, eta=eta, seed=seed, done=done, **settings
    )


def load_cascade():
    """The cascade variants and their sampler, if the cascade can be imported.

    Returns:
        ({variant name: options}, sampler), "" or (None, reason) when `scalecrafter_video.jobs.cascade`
        cannot be imported.
    """
    try:
        importlib.import_module(CASCADE_MODULE)
    except ImportError as exc:
        return None, f"{CASCADE_MODULE} cannot be imported ({exc})"
    return (dict(CASCADE_VARIANTS), sample_shapes_cascade), ""


def upsample(samples: np.ndarray, factor: int) -> np.ndarray:
    """Images (N, H, W, 3) or clips (N, F, H, W, 3) in [0, 1], resized bicubic per frame by `factor`
    per side and clamped to [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2)
    big = torch.nn.functional.interpolate(flat, scale_factor=factor, mode="bicubic", align_corners=False)
    big = big.clamp(0, 1).permute(0, 2, 3, 1)
    return big.reshape(*lead, *big.shape[1:]).numpy()


def select_cases(names: list[str], cascade) -> list[str]:
    """Expand --cases: `cascade` into every variant, `cascade:NAME` into one (none while `cascade` is
    None). Returns the cases in run order, base first."""
    wanted = ["base"]
    for name in names:
        if name in BASIC_CASES:
            chosen = [name]
        elif name == "cascade" or name.startswith("cascade:"):
            if cascade is None:
                continue
            variants = cascade[0]
            chosen = list(variants) if name == "cascade" else [name.split(":", 1)[1]]
            unknown = [c for c in chosen if c not in variants]
            if unknown:
                raise SystemExit(f"unknown cascade variant {unknown[0]!r}; {CASCADE_MODULE} has {', '.join(variants)}")
            chosen = [f"cascade:{c}" for c in chosen]
        else:
            raise SystemExit(f"unknown case {name!r}: use {', '.join(BASIC_CASES)}, cascade or cascade:NAME")
        wanted += [c for c in chosen if c not in wanted]
    return wanted


def load_model(name: str):
    if name == "shapes32-motion":
        from scalecrafter_video.models.shapes.motion_model import load_motion_model

        return load_motion_model()
    from scalecrafter_video.models.shapes.model import load_demo_model

    return load_demo_model()


class BatchStore(MutableMapping):
    """A case's finished batches (or cascade samples) on disk, one .npz each under `folder`, so a
    stopped run resumes where it stopped (`sampling.sample`'s and `cascade_sample`'s `done`). A value
    is an array, or (array, UNet calls) for the cascade. Written atomically; removed by `clear_dir`
    once the case is in results.json."""

    def __init__(self, folder: Path):
        self.folder = folder

    def _path(self, key: int) -> Path:
        return self.folder / f"{int(key):05d}.npz"

    def __contains__(self, key) -> bool:
        return isinstance(key, int) and self._path(key).exists()

    def __getitem__(self, key: int):
        if key not in self:
            raise KeyError(key)
        with np.load(self._path(key)) as f:
            parts = [f[f"arr_{i}"] for i in range(len(f.files))]
        return parts[0] if len(parts) == 1 else (parts[0], int(parts[1]))

    def __setitem__(self, key: int, value) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        parts = value if isinstance(value, tuple) else (value,)
        tmp = self._path(key).with_suffix(".tmp.npz")
        np.savez(tmp, *parts)
        os.replace(tmp, self._path(key))

    def __delitem__(self, key: int) -> None:
        if key not in self:
            raise KeyError(key)
        self._path(key).unlink()

    def __iter__(self):
        paths = sorted(self.folder.glob("[0-9]*.npz")) if self.folder.is_dir() else []
        return iter(int(p.name.split(".")[0]) for p in paths)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def clear_dir(self) -> None:
        """Remove the stored batches and the folder (and PARTIAL above it once empty)."""
        if self.folder.is_dir():
            shutil.rmtree(self.folder)
        with contextlib.suppress(OSError):
            self.folder.parent.rmdir()


def store_for(out: Path, key: str, batch: int) -> BatchStore:
    """The resumable store of case `key` (batches of `batch`, which fixes each batch's noise)."""
    return BatchStore(out / PARTIAL / f"{key.replace(' ', '_').replace(':', '-')}-b{batch}")


def compact(described: list[dict], video: bool) -> dict:
    """Per-sample values, rounded, in lists by key (small enough to keep in the JSON)."""

    def color(obj):
        return None if obj is None else [round(v, 3) for v in obj[1]]

    out = {
        "shape": [None if d["object"] is None else d["object"][0] for d in described],
        "color": [color(d["object"]) for d in described],
    }
    if video:
        out["single_frames"] = [d["report"].single_frames for d in described]
        out["consistent"] = [d["report"].consistent for d in described]
        for key in ("step", "net", "fit"):
            out[key] = [None if d["motion"] is None else round(d["motion"][key], 4) for d in described]
    else:
        out["single"] = [d["single"] for d in described]
        out["repetition"] = [d["repetition"] for d in described]
    return out


def fmt_ratio(r: dict | None) -> str:
    if not r or r.get("value") is None:
        return f"- (n {r['n'] if r else 0})"
    ci = r["ci95"]
    interval = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
    return f"{r['value']:.2f}{interval} (n {r['n']})"


def fmt_share(s: dict | None) -> str:
    if not s or s.get("value") is None:
        return "-"
    lo, hi = s["ci95"]
    return f"{s['value']:.0%} [{lo:.0%}, {hi:.0%}] ({s['k']}/{s['n']})"


def fmt_seconds(r: dict) -> str:
    reused = r.get("info", {}).get("reused_from_earlier_runs")
    return f"{r['seconds']:.0f}" + (f" + {reused} stored" if reused else "")


def markdown(doc: dict) -> str:
    """One table per (model, steps, scale), cases down."""
    groups: dict[tuple, list[dict]] = {}
    for run in doc["runs"].values():
        groups.setdefault((run["model"], run["steps"]), []).append(run)
    st = doc["settings"]
    lines = [
        (
            f"# Cascade evidence ({st['samples']} samples per case, seed {st['seed']}, "
            f"guidance {st['guidance']:g}, eta {st['eta']:g})"
        ),
        "",
        (
            "Ratios: case mean / base mean with a 95 % bootstrap interval (paired over samples for the upsampled "
            "control and cascades, unpaired for direct and ScaleCrafter), n = samples measured (motion: clips "
            "with one object in every frame). Shares: 95 % Wilson interval (k/n; single counts frames, which are "
            "correlated within a clip, so its interval is optimistic). Content kept for unpaired cases is the "
            "chance agreement (same label, independent noise). s: wall seconds of the case in the run that "
            "finished it (+ k stored: k batches, for a cascade k samples, reused from a stopped earlier run)."
        ),
        "",
    ]
    for (model, steps), runs in groups.items():
        video = model == "shapes32-motion"
        scales = sorted({r["scale"] for r in runs if r["scale"] > 1})
        base = [r for r in runs if r["case"] == "base"]
        for scale in scales:
            rows = base + [r for r in runs if r["scale"] == scale]
            lines += [f"## {model}, DDIM {steps}, {scale}x ({32 * scale} px)", ""]
            if video:
                lines += [
                    (
                        "| case | single (frames) | repetition | consistent | followed | per-frame ratio | "
                        "net ratio | fit ratio | colour spread | content kept | clean | s |"
                    ),
                    "|" + "---|" * 12,
                ]
            else:
                lines += [
                    "| case | single | repetition | colour spread | content kept | clean | s |",
                    "|" + "---|" * 7,
                ]
            for r in rows:
                ev = r["evidence"]
                if video:
                    lines.append(
                        f"| {r['case']} | {fmt_share(ev['single'])} | {fmt_share(ev['repetition'])} | "
                        f"{fmt_share(ev['consistent'])} | {ev['followed']}/{ev['n']} | "
                        f"{fmt_ratio(ev['step_ratio'])} | {fmt_ratio(ev['net_ratio'])} | "
                        f"{fmt_ratio(ev['fit_ratio'])} | {fmt_ratio(ev['color_spread_ratio'])} | "
                        f"{fmt_share(ev['content_kept'])} | "
                        f"{ev['clean']:.2f} | {fmt_seconds(r)} |"
                    )
                else:
                    lines.append(
                        f"| {r['case']} | {fmt_share(ev['single'])} | {fmt_share(ev['repetition'])} | "
                        f"{fmt_ratio(ev['color_spread_ratio'])} | {fmt_share(ev['content_kept'])} | "
                        f"{ev['clean']:.2f} | {fmt_seconds(r)} |"
                    )
            lines.append("")
    for inv in doc.get("invocations", []):
        lines.append(
            f"- `{inv['command']}`: {inv['wall_seconds'] / 60:.1f} min wall, {inv['torch_threads']} "
            f"thread(s), finished {inv['finished']}"
        )
    if doc.get("invocations"):
        lines.append("")
    if doc.get("notes"):
        lines += ["Notes:", ""] + [f"- {n}" for n in doc["notes"]] + [""]
    return "\n".join(lines)


def save(doc: dict, out: Path) -> None:
    outputs.atomic_write_text(out / "results.json", json.dumps(json_safe(doc), indent=1, allow_nan=False) + "\n")
    outputs.atomic_write_text(out / "table.md", markdown(doc))


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma list of {', '.join(MODELS)}")
    ap.add_argument("--samples", type=int, default=24, help="samples (clips) per case")
    ap.add_argument("--steps", type=int, nargs="+", default=[25, 50], help="DDIM step counts")
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 4], help="per-side factors")
    ap.add_argument(
        "--cases",
        default="base,upsampled,direct,scalecrafter,cascade",
        help="comma list: base, upsampled, direct, scalecrafter, cascade (every variant), cascade:NAME",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--out", type=Path, default=ROOT / "samples" / "cascade_evidence" / "full")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--eta", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=8)
    a = ap.parse_args(argv)
    a.models = [m for m in a.models.split(",") if m]
    if unknown := [m for m in a.models if m not in MODELS]:
        ap.error(f"unknown model {unknown[0]!r}; use {', '.join(MODELS)}")
    if a.samples < 1 or min(a.steps) < 1 or min(a.scales) < 2 or a.threads < 1:
        ap.error("--samples, --steps and --threads must be at least 1, --scales at least 2")
    a.cases = [c for c in a.cases.split(",") if c]
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    cascade, reason = load_cascade()
    wants_cascade = any(c == "cascade" or c.startswith("cascade:") for c in a.cases)
    cases, notes = select_cases(a.cases, cascade), []
    if wants_cascade and cascade is None:
        notes.append(f"cascade cases skipped: {reason}")
        print(f"cascade cases skipped: {reason}", file=sys.stderr)
    settings = {k: getattr(a, k) for k in SETTINGS}
    out = outputs.prepare_out_dir(a.out)
    doc = {"settings": settings, "runs": {}, "notes": []}
    if (out / "results.json").exists():
        doc = json.loads((out / "results.json").read_text())
        if doc.get("settings") != settings:
            raise SystemExit(
                f"{out / 'results.json'} was measured with {doc.get('settings')}, not {settings}: pass another --out"
            )
    doc["notes"] = sorted(set(doc.get("notes", [])) - {n for n in doc.get("notes", []) if "skipped" in n} | set(notes))
    command = (
        " ".join(["python scripts/cascade_evidence.py", *sys.argv[1:]]) if argv is None else "main(" + repr(argv) + ")"
    )
    doc.setdefault("commands", []).append(command)
    doc["environment"] = {"torch_threads": torch.get_num_threads(), **outputs.versions(("torch", "diffusers"))}
    if not (out / "results.json").exists():
        save(doc, out)  # the settings first: the stores under DIR/.partial belong to them
    t_all, ran = time.time(), False
    for model_name in a.models:
        model = load_model(model_name)
        video = model_name == "shapes32-motion"
        frames = int(model.config["frames"]) if video else None
        labels = torch.arange(a.samples) % len(model.class_names)
        kw = {"guidance": a.guidance, "eta": a.eta, "seed": a.seed, "batch": a.batch, "frames": frames}
        describe = video_metrics.describe_clips if video else metrics.describe_images
        evidence = video_metrics.clip_evidence if video else metrics.image_evidence
        for steps in a.steps:
            base_key = f"{model_name} ddim{steps} 1x base"
            todo = [
                (scale, case)
                for scale in a.scales
                for case in cases
                if case != "base" and f"{model_name} ddim{steps} {scale}x {case}" not in doc["runs"]
            ]
            if base_key in doc["runs"] and not todo:
                continue
            # every case is compared with the base samples: sample them first (again, when resuming)
            t0 = time.time()
            base_store = store_for(out, base_key, a.batch)
            base, _ = run_case(model, Case("direct", 1), labels, steps=steps, done=base_store, **kw)
            base_desc = describe(base, 1)
            if base_key not in doc["runs"]:
                todo.insert(0, (1, "base"))
            for scale, case in todo:
                key = f"{model_name} ddim{steps} {scale}x {case}"
                info: dict = {}
                if case == "base":
                    described = base_desc
                else:
                    t0 = time.time()
                    store = store_for(out, key, a.batch)
                    reused = len(store)  # batches (cascade: samples) from a stopped run; `seconds` excludes them
                    if case == "upsampled":
                        samples = upsample(base, scale)
                    elif case in ("direct", "scalecrafter"):
                        case_ = Case(case, scale, ndcfg=case == "scalecrafter")
                        samples, info = run_case(model, case_, labels, steps=steps, done=store, **kw)
                    else:
                        variants, sampler = cascade
                        got = sampler(
                            model,
                            labels,
                            base,
                            32 * scale,
                            32 * scale,
                            steps=steps,
                            done=store,
                            **kw,
                            **variants[case.split(":", 1)[1]],
                        )
                        samples, info = got if isinstance(got, tuple) else (got, {})
                    if reused:
                        info = {**info, "reused_from_earlier_runs": reused}
                    described = describe(samples, scale)
                paired = PAIRED.get(case, True)
                ev = evidence(described, base_desc, paired=paired, seed=a.seed)
                seconds = time.time() - t0
                doc["runs"][key] = {
                    "model": model_name,
                    "steps": steps,
                    "scale": scale,
                    "case": case,
                    "paired": paired,
                    "seconds": round(seconds, 1),
                    "date": datetime.date.today().isoformat(),
                    "info": info,
                    "evidence": ev,
                    "per_sample": compact(described, video),
                }
                save(doc, out)
                if case != "base":
                    store.clear_dir()
                ran = True
                brief = (
                    f"net {fmt_ratio(ev['net_ratio'])}, fit {fmt_ratio(ev['fit_ratio'])}"
                    if video
                    else f"colour spread {fmt_ratio(ev['color_spread_ratio'])}"
                )
                print(
                    f"{key}: single {fmt_share(ev['single'])}, {brief}, {seconds:.0f} s", file=sys.stderr, flush=True
                )
            base_store.clear_dir()
    wall = time.time() - t_all
    if ran:
        doc.setdefault("invocations", []).append(
            {
                "command": command,
                "finished": datetime.datetime.now().isoformat(timespec="seconds"),
                "wall_seconds": round(wall, 1),
                "torch_threads": torch.get_num_threads(),
            }
        )
        save(doc, out)
    print(f"done in {wall:.0f} s: {out / 'results.json'}, {out / 'table.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
