"""The `scv ui` page (Gradio): a prompt (or a class), a model, a size, a method and its toggles,
and the results side by side with their sidecars, downloads and the plan figure; an upload box
upscales the user's own image or clip (`scv upscale`'s job) to the size chosen.

The callbacks are plain functions over `jobs` (the tests call them directly); every
`ScaleCrafterError` reaches the page as the CLI's one-line message (`gr.Error`, shown until
closed), and anything else as one line too, with the traceback in the server's log. Pipelines are cached per model in
one `ModelCache`; requests run one at a time (the cache and the patched UNets are not shared
between concurrent jobs).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry, no version check

import gradio as gr  # noqa: E402

from ...engine.errors import ScaleCrafterError, one_line  # noqa: E402
from ...jobs.loading import ModelCache  # noqa: E402
from ...jobs.options import GenerateOptions  # noqa: E402
from . import jobs  # noqa: E402
from .defaults import DEFAULT_MODEL  # noqa: E402

logger = logging.getLogger(__name__)

TITLE = "scv: ScaleCrafter, direct and Attn-SF side by side"
# System fonts only: the default theme fetches web fonts, and the app must work offline.
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
OUTPUT_HEIGHT = 340  # pixels on the page
# Outputs fill their panel; small ones are scaled up with sharp pixels.
CSS = (
    "#left-image img, #right-image img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }"
)


class App:
    """The state behind the page: the model cache, the folder results are staged in for the browser
    (Gradio serves only files under its allowed folders), and the output folder and model policy.

    Served beyond this machine (`fixed_out_dir`, `fixed_models`), the page writes to `out_dir` only
    and runs only the models of its list (`jobs.model_choices`: the built-in models, those in the
    local Hugging Face cache, and `model`, the one it was started with): no other folder of the
    machine is read and nothing is downloaded (`scv ui` also sets the hub offline then)."""

    def __init__(
        self,
        *,
        out_dir: str,
        stage_dir: Path,
        device: str = "auto",
        fixed_out_dir: bool = False,
        fixed_models: bool = False,
        model: str | None = None,
        cache: ModelCache | None = None,
    ):
        self.out_dir, self.stage_dir, self.device = out_dir, Path(stage_dir), device
        self.fixed_out_dir, self.fixed_models, self.model = fixed_out_dir, fixed_models, model
        self.cache = cache or ModelCache()

    def offered_models(self) -> list[str]:
        """The model box's list: the built-in and cached models, and the one the page opened with."""
        return jobs.model_choices(self.model)

    def check_model(self, model: str) -> None:
        """Served to others, a model not in the list is refused (a folder of this machine, a hub id)."""
        if self.fixed_models and model not in self.offered_models():
            raise ScaleCrafterError(
                f"this server runs only the models in its list ({', '.join(self.offered_models())}), not {model!r}: "
                "it is served beyond this machine; run `scv ui --model ...` on localhost for any other"
            )

    # ---- callbacks ----------------------------------------------------------------------------
    def generate(
        self,
        prompt: str,
        shape: str | None,
        model: str,
        size: str,
        method: str,
        ndcfg: bool,
        dispersion: bool,
        steps: float,
        seed: float,
        frames: float,
        out_dir: str,
        overwrite: bool,
        progress: gr.Progress = gr.Progress(track_tqdm=True),  # noqa: B008 (Gradio injects progress so)
    ) -> tuple:
        """Run a request; returns the updates of the page's outputs (see `outputs` in `build_app`).
        `progress` makes Gradio follow the pipelines' tqdm bars in the page."""
        try:
            with _warnings() as notes:
                if self.fixed_out_dir and out_dir != self.out_dir:
                    raise ScaleCrafterError(
                        f"this server writes to {self.out_dir!r} only (shared or not on localhost)"
                    )
                self.check_model(model)
                request = jobs.Request(
                    prompt=shape if jobs.model_classes(model) else prompt,
                    model=model,
                    size=size,
                    method=method,
                    out_dir=out_dir,
                    ndcfg=ndcfg,
                    dispersion=dispersion,
                    steps=steps,
                    seed=seed,
                    frames=frames,
                    overwrite=overwrite,
                    device=self.device,
                )
                options = jobs.job_options(request)
                results = jobs.run_jobs(options, self.cache)
                stage = self._stage_folder()
                plan = next(
                    (
                        jobs.plan_plot(r, o, self.cache, stage / "plan.png")
                        for r, o in zip(results, options)
                        if r.method == "scalecrafter"
                    ),
                    None,
                )
        except ScaleCrafterError as exc:
            raise _error(str(exc)) from None
        except Exception as exc:
            logger.exception("the request failed")
            raise _error(f"unexpected {type(exc).__name__}: {exc} (the server's log has the traceback)") from None
        return self._page(results, options[0].video, stage, plan, notes)

    def upscale(
        self,
        upload: str | None,
        prompt: str,
        shape: str | None,
        model: str,
        size: str,
        ndcfg: bool,
        dispersion: bool,
        steps: float,
        seed: float,
        out_dir: str,
        overwrite: bool,
        progress: gr.Progress = gr.Progress(track_tqdm=True),  # noqa: B008 (Gradio injects progress so)
    ) -> tuple:
        """Upscale the uploaded image or clip (`scv upscale`); the page shows it on the left and the
        result on the right. Returns the same updates as `generate`."""
        try:
            with _warnings() as notes:
                if self.fixed_out_dir and out_dir != self.out_dir:
                    raise ScaleCrafterError(
                        f"this server writes to {self.out_dir!r} only (shared or not on localhost)"
                    )
                request = jobs.Request(
                    prompt=shape if jobs.model_classes(model) else prompt,
                    model=model,
                    size=size,
                    method="direct",
                    out_dir=out_dir,
                    ndcfg=ndcfg,
                    dispersion=dispersion,
                    steps=steps,
                    seed=seed,
                    overwrite=overwrite,
                    device=self.device,
                )
                opts, probe = jobs.upscale_options(request, upload)
                result = jobs.run_upscale_job(opts, probe, self.cache)
                stage = self._stage_folder()
                shown = _copy(probe.path, stage)
                output, sidecar = _copy(result.path, stage), _copy(result.sidecar_path, stage)
        except ScaleCrafterError as exc:
            raise _error(str(exc)) from None
        except Exception as exc:
            logger.exception("the upscale failed")
            raise _error(f"unexpected {type(exc).__name__}: {exc} (the server's log has the traceback)") from None
        video, label = opts.video, jobs.METHOD_LABELS["upscale"]
        updates = []
        for media, name in ((shown, "input"), (output, label)):
            updates.append(gr.update(value=None if video else str(media), label=name, visible=not video))
            updates.append(gr.update(value=str(media) if video else None, label=name, visible=video))
        return (
            *updates,
            status_text([result], notes),
            {label: result.sidecar},
            [str(output), str(sidecar)],
            gr.update(value=None, visible=False),
        )

    def _stage_folder(self) -> Path:
        folder = self.stage_dir / secrets.token_hex(6)
        folder.mkdir(parents=True)
        return folder

    def _page(
        self, results: list[jobs.JobResult], is_video: bool, stage: Path, plan: Path | None, notes: list[str]
    ) -> tuple:
        if len(results) == 2:  # direct on the left, as the page reads
            results = sorted(results, key=lambda r: r.method != "direct")
        staged = {r.method: (_copy(r.path, stage), _copy(r.sidecar_path, stage)) for r in results}
        panels = [r.method for r in results]
        updates: list[Any] = []
        for side in range(2):
            method = panels[side] if side < len(panels) else None
            label = jobs.METHOD_LABELS.get(method, "")
            media = str(staged[method][0]) if method else None
            updates.append(
                gr.update(value=None if is_video else media, label=label, visible=bool(method) and not is_video)
            )
            updates.append(
                gr.update(value=media if is_video else None, label=label, visible=bool(method) and is_video)
            )
        sidecars = {jobs.METHOD_LABELS[r.method]: r.sidecar for r in results}
        files = [str(p) for pair in staged.values() for p in pair]
        plan_update = gr.update(value=str(plan) if plan else None, visible=plan is not None)
        return (*updates, status_text(results, notes), sidecars, files, plan_update)

    def model_changed(self, model: str) -> tuple:
        """Prompt or class list, size choices and the frames field for `model`."""
        try:
            self.check_model(model)
        except ScaleCrafterError as exc:
            raise _error(str(exc)) from None
        classes = jobs.model_classes(model)
        return (
            gr.update(visible=not classes),
            gr.update(choices=list(classes), value=classes[0] if classes else None, visible=bool(classes)),
            gr.update(choices=jobs.size_choices(model), value=jobs.default_size(model)),
            gr.update(visible=jobs.is_video_model(model), value=jobs.default_frames(model)),
        )


def _error(message: str) -> gr.Error:
    """The page's error: one line, shown until the user closes it (Gradio's default hides it after
    10 seconds, leaving only "Error" on the outputs)."""
    return gr.Error(one_line(message), duration=None, print_exception=False)


def status_text(results: list[jobs.JobResult], notes: list[str]) -> str:
    """What ran, per output, in Markdown (and the library's warnings)."""
    lines = []
    for r in results:
        side = r.sidecar
        ran = ""
        if side.get("unet_calls") is not None:
            ran = f"{side['unet_calls']} UNet calls, {side['damped_passes']} damped passes"
        plan = f"plan `{side['plan']['name']}`" if side.get("plan") else ""
        how = "existing output shown (tick Overwrite to sample it again)" if r.reused else f"{side.get('seconds')} s"
        details = "; ".join(part for part in (plan, ran, how) if part)
        lines.append(f"- **{jobs.METHOD_LABELS[r.method]}**: `{r.path}` ({details})")
    lines += [f"- note: {note}" for note in dict.fromkeys(notes)]
    return "\n".join(lines)


@contextmanager
def _warnings() -> Iterator[list[str]]:
    """The package's warnings during a request, for the page."""
    notes: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            notes.append(one_line(record.getMessage()))

    handler = Collect(logging.WARNING)
    root = logging.getLogger("scalecrafter_video")
    root.addHandler(handler)
    try:
        yield notes
    finally:
        root.removeHandler(handler)


def _copy(path: Path, folder: Path) -> Path:
    target = folder / path.name
    shutil.copyfile(path, target)
    return target


# ---- the page -----------------------------------------------------------------------------------
def build_app(app: App, model: str = DEFAULT_MODEL, *, steps: int = GenerateOptions.steps) -> gr.Blocks:
    """The page, opened on `model` with `steps` sampling steps."""
    if app.model is None:
        app.model = model
    classes = jobs.model_classes(model)
    is_video = jobs.is_video_model(model)
    with gr.Blocks(title="scv ui", analytics_enabled=False) as page:
        gr.Markdown(
            f"## {TITLE}\nSample a model far above its training size: directly, with the Attn-SF "
            "baseline, or with ScaleCrafter (re-dilated convolutions, noise-damped CFG, dispersion). "
            "Outputs and JSON sidecars are written as `scv generate` writes them."
        )
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                model_box = gr.Dropdown(
                    app.offered_models() if app.fixed_models else jobs.model_choices(model),
                    value=model,
                    label="model",
                    allow_custom_value=not app.fixed_models,
                    info="built-in and cached models"
                    if app.fixed_models
                    else "built-in models, cached ones, or a hub id / diffusers folder",
                )
                prompt = gr.Textbox("a corgi on a beach", label="prompt", visible=not classes, elem_id="prompt")
                shape = gr.Dropdown(
                    list(classes),
                    value=classes[0] if classes else None,
                    label="class",
                    visible=bool(classes),
                    elem_id="class",
                )
                size = gr.Dropdown(
                    jobs.size_choices(model),
                    value=jobs.default_size(model),
                    label="size (WxH)",
                    allow_custom_value=True,
                    info="a preset or any WIDTHxHEIGHT",
                    elem_id="size",
                )
                method = gr.Radio(
                    list(jobs.METHOD_CHOICES),
                    value=jobs.SIDE_BY_SIDE,
                    label="method",
                    info="side by side: direct and ScaleCrafter from the same seed",
                    elem_id="method",
                )
                with gr.Row():
                    ndcfg = gr.Checkbox(True, label="noise-damped CFG")
                    dispersion = gr.Checkbox(False, label="dispersion")
                with gr.Row():
                    steps_box = gr.Number(steps, label="steps", precision=0, minimum=1, elem_id="steps")
                    seed = gr.Number(0, label="seed", precision=0, minimum=0)
                    frames = gr.Number(
                        jobs.default_frames(model), label="frames", precision=0, minimum=1, visible=is_video
                    )
                out_dir = gr.Textbox(app.out_dir, label="output folder", interactive=not app.fixed_out_dir)
                overwrite = gr.Checkbox(False, label="overwrite", info="sample again where the output exists")
                run = gr.Button("Generate", variant="primary", elem_id="generate")
                with gr.Accordion("upscale your own image or clip", open=False):
                    upload = gr.File(
                        label="PNG / JPEG image or MP4 clip",
                        file_types=list(jobs.UPLOAD_TYPES),
                        type="filepath",
                        elem_id="upload",
                    )
                    upscale = gr.Button("Upscale to the size above", elem_id="upscale")
            with gr.Column(scale=2):
                with gr.Row():
                    left_image = gr.Image(
                        label="direct", type="filepath", height=OUTPUT_HEIGHT, elem_id="left-image", interactive=False
                    )
                    left_video = gr.Video(
                        label="direct", height=OUTPUT_HEIGHT, elem_id="left-video", visible=False, interactive=False
                    )
                    right_image = gr.Image(
                        label="ScaleCrafter",
                        type="filepath",
                        height=OUTPUT_HEIGHT,
                        elem_id="right-image",
                        interactive=False,
                    )
                    right_video = gr.Video(
                        label="ScaleCrafter",
                        height=OUTPUT_HEIGHT,
                        elem_id="right-video",
                        visible=False,
                        interactive=False,
                    )
                status = gr.Markdown(elem_id="status")
                plan = gr.Image(
                    label="plan", show_label=False, type="filepath", visible=False, elem_id="plan", interactive=False
                )
                with gr.Accordion("settings (the sidecars)", open=False):
                    settings = gr.JSON(elem_id="settings")
                files = gr.File(label="downloads", file_count="multiple", elem_id="files", interactive=False)
        model_box.change(app.model_changed, model_box, [prompt, shape, size, frames], api_name=False)
        run.click(
            app.generate,
            [prompt, shape, model_box, size, method, ndcfg, dispersion, steps_box, seed, frames, out_dir, overwrite],
            [left_image, left_video, right_image, right_video, status, settings, files, plan],
            api_name="generate",
            concurrency_limit=1,
            concurrency_id="jobs",
        )
        upscale.click(
            app.upscale,
            [upload, prompt, shape, model_box, size, ndcfg, dispersion, steps_box, seed, out_dir, overwrite],
            [left_image, left_video, right_image, right_video, status, settings, files, plan],
            api_name="upscale",
            concurrency_limit=1,
            concurrency_id="jobs",
        )
    return page


def launch(page: gr.Blocks, app: App, *, host: str, port: int, share: bool) -> tuple[str, str | None]:
    """Start serving `page` in the background; returns (local URL, public share URL or None).
    `page.block_thread()` waits until Ctrl-C, `page.close()` stops it."""
    try:
        _, url, share_url = page.queue().launch(
            server_name=host,
            server_port=port,
            share=share,
            ssr_mode=False,
            quiet=True,
            prevent_thread_lock=True,
            theme=THEME,
            css=CSS,
            allowed_paths=[str(app.stage_dir)],
            footer_links=["api", "settings"],
        )
    except OSError as exc:
        raise ScaleCrafterError(f"cannot serve on {host}:{port} ({one_line(exc)}): pass another --port") from None
    return url, share_url
