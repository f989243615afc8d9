"""What one `scv generate` job asks for, shared by the image and video front ends, and the values
its fields may take (the command line offers the same)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.schema import is_number
from ..engine.sizing import DEFAULT_MAX_SCALE

# The cascade's restarts: the first stage (base -> 2x) at step int(0.5 * steps) of the schedule, every
# later stage at int(0.8 * steps). Measured on the shipped shapes models (docs/results/cascade.md): 0.5
# against FreeScale's 0.3 keeps the same motion and objects at 2x for less work; at 4x the later second
# restart keeps more of the first stage's motion and objects (24 clips: net-displacement ratio 0.91
# against 0.87 with 0.5 for both stages, content kept 23/24 against 21/24) and costs less.
DEFAULT_RESTART = (0.5, 0.8)


def restart_problem(value) -> str | None:
    """Why `value` is no restart (None when it is one: a finite fraction above 0 and below 1), as the
    one line that --restart and CascadeConfig both report."""
    if is_number(value) and 0 < value < 1:
        return None
    return (
        f"restart must be above 0 and below 1 (the fraction of the schedule each stage skips; "
        f"0 would restart from pure noise), got {value!r}"
    )


def restart_text(restart: float | tuple[float, ...]) -> str:
    """A restart as --restart takes it: "0.5", or "0.5,0.8" for one per stage."""
    return ",".join(f"{v:g}" for v in (restart if isinstance(restart, (tuple, list)) else (restart,)))


METHODS = ("scalecrafter", "direct", "attn-sf")
STAGE_PLANS = ("full", "restrained", "none")  # --stage-plan: the method of each cascade stage above the base
# --color-fix: each cascade stage's colours matched to its input's (frames.COLOR_FIXERS)
COLOR_FIXES = ("adain", "wavelet", "none")
SCHEDULERS: dict[str, str] = {  # --scheduler -> diffusers class
    "ddim": "DDIMScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
    "pndm": "PNDMScheduler",
    "unipc": "UniPCMultistepScheduler",
}
DTYPES = ("auto", "float32", "float16", "bfloat16")
VAE_TILING = ("auto", "on", "off")
MAX_SIDE = 16384  # pixels
MAX_STEPS = 1000  # the training timesteps of every supported model


@dataclass
class GenerateOptions:
    """One generation job. Sizes are in pixels; `None` means "the model family's default"."""

    prompts: list[str]
    height: int
    width: int
    model: str = "sd15"
    family: str | None = None  # the preset family; None: from the model id or the UNet's architecture
    negative_prompt: str | None = None
    method: str = "scalecrafter"  # scalecrafter | direct | attn-sf
    preset: str = "auto"  # a preset name, a path to a preset file, or "auto"
    ndcfg: bool = True  # noise-damped CFG where the plan has a damped window
    dispersion: bool = False  # dispersed convolution where the plan lists dispersion layers
    progressive: bool | None = None  # None: the plan's own decay; False: hold factors for the whole window
    steps: int = 50
    guidance: float | None = None
    eta: float = 1.0
    scheduler: str = "ddim"
    seed: int = 0
    num_per_prompt: int = 1
    out_dir: Path = field(default_factory=lambda: Path("outputs"))
    overwrite: bool = False
    skip_existing: bool = False  # resume: leave items whose files all exist, do the others
    dtype: str = "auto"  # auto | float32 | float16 | bfloat16
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    freeu: bool = False
    vae_tiling: str = "auto"  # auto | on | off
    progress: bool = True
    force_memory: bool = False  # run even when the memory estimate exceeds the device's memory
    force_preset: bool = False  # apply a named preset / preset file to another family, base or size
    max_scale: float = DEFAULT_MAX_SCALE  # the largest scale per side over the base size ScaleCrafter accepts
    command: list[str] | None = None  # the command line that asked for this job (for sidecars)
    # video only
    video: bool = False
    frames: int = 16
    fps: int = 8
    motion_adapter: str | None = None
    save_frames: bool = False
    compare: bool = False
    # cascade (--cascade): the base-size sample refined in stages of at most 2x per side (jobs.cascade)
    cascade: bool = False
    restart: float | tuple[float, ...] = DEFAULT_RESTART  # the fraction of the schedule each stage skips
    skip_exponent: float = 2.0  # the skip residual's weight is cos_factor ** skip_exponent
    stage_plan: str = "full"  # full | restrained | none: the method of each stage above the base
    color_fix: str = "adain"  # adain | wavelet | none: each stage's colours matched to its input's (per frame)

    @property
    def method_name(self) -> str:
        """What output names and sidecars call the job's method: "cascade" with --cascade, else `method`."""
        return "cascade" if self.cascade else self.method

    def output_settings(self) -> dict[str, Any]:
        """Every setting that changes an output besides its prompt, size and seed (what output
        names hash). Method options count only for the method that reads them; a preset file
        counts by its content (a shipped name by its shipped file's), so editing it gives new names;
        --family and --max-scale count only when given."""
        from ..engine.presets import preset_sha256  # reads the preset files (torch loads with them)

        settings: dict[str, Any] = {
            "model": self.model,
            "negative_prompt": self.negative_prompt,
            "method": self.method,
            "steps": self.steps,
            "guidance": self.guidance,
            "eta": self.eta,
            "scheduler": self.scheduler,
            "dtype": self.dtype,
            "freeu": self.freeu,
            "vae_tiling": self.vae_tiling,
        }
        if self.family is not None:  # only when named: jobs without --family keep their names
            settings["family"] = self.family
        if self.method == "scalecrafter":
            settings.update(
                preset=self.preset,
                preset_sha256=preset_sha256(self.preset),
                ndcfg=self.ndcfg,
                dispersion=self.dispersion,
                progressive=self.progressive,
            )
        if self.video:
            settings.update(frames=self.frames, fps=self.fps, motion_adapter=self.motion_adapter)
        if self.cascade:
            settings["cascade"] = {
                "restart": self.restart,
                "skip_exponent": self.skip_exponent,
                "stage_plan": self.stage_plan,
                "color_fix": self.color_fix,
            }
        return settings
