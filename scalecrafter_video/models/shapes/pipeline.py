"""`ShapesPipeline`: sampling for the shapes models, images and clips through one CFG loop (DDIM by
default; any diffusers scheduler, each given what its step() takes).

Class names are the prompts ("circle", "square", "triangle"); the null class is the unconditional
context. Each UNet call gets the batch [uncond; cond] and guidance is eps = u + w (c - u), so the
engine's NDCFG hook applies unchanged (the class declares `scalecrafter_batch_layout`). Pixel
space: `vae_scale_factor` is 1, so `apply_scalecrafter(pipe, height, width)` takes pixels and the
base size is the UNet's sample_size. With a `UNetMotionModel` (the motion model) it samples clips
of `num_frames` frames; with a `UNet2DConditionModel`, images. The call follows diffusers'
AnimateDiffPipeline (prompt, height, width, num_frames, num_inference_steps, guidance_scale, eta,
generator, latents, output_type, return_dict, callback_on_step_end); with `image` (the image model) or
`video` (the motion model) and `strength` it is its own img2img / video-to-video pipeline, as
diffusers' StableDiffusionImg2ImgPipeline and AnimateDiffVideoToVideoPipeline take them (the cascade
refines through it).
"""

from __future__ import annotations

import inspect

import torch
from diffusers import DDIMScheduler, DiffusionPipeline, ImagePipelineOutput
from diffusers.pipelines.animatediff.pipeline_output import AnimateDiffPipelineOutput
from diffusers.utils.torch_utils import randn_tensor

from ...engine.errors import ScaleCrafterError
from .data import CLASS_NAMES
from .model import ClassEmbedding

OUTPUT_TYPES = ("np", "pt", "pil", "latent")


class ShapesPipeline(DiffusionPipeline):
    scalecrafter_batch_layout = "uncond,cond"
    vae_scale_factor = 1
    model_cpu_offload_seq = "class_embedding->unet"

    def __init__(
        self, unet, class_embedding: ClassEmbedding, scheduler, class_names=CLASS_NAMES, default_frames: int = 8
    ):
        super().__init__()
        self.register_modules(unet=unet, class_embedding=class_embedding, scheduler=scheduler)
        self.register_to_config(class_names=list(class_names), default_frames=default_frames)
        self._guidance_scale = 1.0

    @classmethod
    def from_model(cls, model) -> ShapesPipeline:
        """From a loaded DemoModel (images) or DemoVideoModel (clips)."""
        image_config = getattr(model, "image_config", model.config)
        frames = model.config.get("frames", 8)
        return cls(
            model.unet,
            model.embed,
            DDIMScheduler.from_config(image_config["scheduler"]),
            image_config["class_names"],
            default_frames=frames,
        )

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1.0

    @property
    def is_video(self) -> bool:
        from diffusers import UNetMotionModel

        return isinstance(self.unet, UNetMotionModel)

    def class_ids(self, prompts: list[str]) -> torch.Tensor:
        names = list(self.config.class_names)
        unknown = [p for p in prompts if p not in names]
        if unknown:
            raise ScaleCrafterError(f"unknown prompt {unknown[0]!r}: the shapes models draw one of {', '.join(names)}")
        return torch.tensor([names.index(p) for p in prompts], dtype=torch.long)

    def check_inputs(self, height: int, width: int, num_frames: int | None, steps: int, output_type: str) -> None:
        multiple = 2 ** (len(self.unet.config.block_out_channels) - 1)
        for name, v in (("height", height), ("width", width)):
            if not isinstance(v, int) or v < multiple or v % multiple:
                raise ScaleCrafterError(f"{name} must be a positive multiple of {multiple} pixels, got {v!r}")
        if steps < 1:
            raise ScaleCrafterError(f"num_inference_steps must be at least 1, got {steps}")
        if output_type not in OUTPUT_TYPES:
            raise ScaleCrafterError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        if not self.is_video:
            if num_frames is not None:
                raise ScaleCrafterError("num_frames needs the motion model; this pipeline's UNet draws images")
            return
        limit = self.unet.config.motion_max_seq_length
        if not 1 <= num_frames <= limit:
            raise ScaleCrafterError(f"num_frames must be 1-{limit} (the motion modules' length), got {num_frames}")

    def prepare_extra_step_kwargs(self, generator, eta: float) -> dict:
        """`eta` and `generator` for the scheduler's step() where it takes them, as diffusers' pipelines
        decide it from its signature: DDIM takes both, Euler-A and DPM++ the generator, PNDM,
        Euler and UniPC neither or one (eta is DDIM's alone)."""
        accepted = set(inspect.signature(self.scheduler.step).parameters)
        extra = {"eta": eta} if "eta" in accepted else {}
        if "generator" in accepted:
            extra["generator"] = generator
        return extra

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 3.0,
        eta: float = 1.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end=None,
        image: torch.Tensor | None = None,
        video: torch.Tensor | None = None,
        strength: float = 1.0,
    ):
        """Images (N, H, W, 3) or clips (N, F, H, W, 3) in [0, 1] ("np"; "pt": channels first;
        "pil": PIL images, a list per clip; "latent": the final sample, (N, 3, H, W) or
        (N, 3, F, H, W) in [-1, 1], as diffusers' pipelines return latents). `latents` (noise,
        (N, 3, H, W) or (N, 3, F, H, W)) fixes the starting point; `generator` draws it otherwise, and
        draws DDIM's eta noise (and the noise of the other schedulers whose step() draws any).

        img2img / video-to-video: `image` (N, 3, H, W) for the image model or `video` (N, F, 3, H, W)
        for the motion model, in [0, 1] (the layouts diffusers' image and video processors take as
        tensors; size and frame count come from it), is noised with one `generator` draw to the
        timestep of step `num_inference_steps - int(num_inference_steps * strength)` and denoised from
        there, as StableDiffusionImg2ImgPipeline does."""
        init = self._init_sample(image, video, latents, strength)
        if init is not None:
            height, width = init.shape[-2:]
            num_frames = init.shape[2] if self.is_video else None
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        labels = self.class_ids(prompts)
        size = self.unet.config.sample_size
        height, width = height or size, width or size
        if self.is_video and num_frames is None:
            num_frames = self.config.default_frames
        self.check_inputs(height, width, num_frames, num_inference_steps, output_type)
        self._guidance_scale = guidance_scale
        device = self._execution_device
        n, channels = len(prompts), self.unet.config.in_channels
        shape = (n, channels, num_frames, height, width) if self.is_video else (n, channels, height, width)
        self.scheduler.set_timesteps(num_inference_steps, device=device)  # init_noise_sigma follows the steps
        timesteps = self.scheduler.timesteps
        if init is not None:
            if tuple(init.shape) != shape:
                what = "video" if self.is_video else "image"
                raise ScaleCrafterError(f"{what} holds {init.shape[0]} samples for {n} prompts")
            timesteps = timesteps[num_inference_steps - self._refined_steps(num_inference_steps, strength) :]
            init = init.to(device=device, dtype=self.unet.dtype)
            noise = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
            latents = self.scheduler.add_noise(init, noise, timesteps[:1])
        elif latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        elif tuple(latents.shape) != shape:
            raise ScaleCrafterError(f"latents must be shaped {shape}, got {tuple(latents.shape)}")
        # pure noise starts at the scheduler's starting scale (1 for DDIM; Euler's first sigma), as diffusers'
        # prepare_latents; a noised image is already on the scale of its first timestep (add_noise)
        x = latents.to(device=device, dtype=self.unet.dtype)
        if init is None:
            x = x * self.scheduler.init_noise_sigma

        labels = labels.to(device)
        context = self.class_embedding(labels)
        if self.do_classifier_free_guidance:
            null = torch.full_like(labels, self.class_embedding.null_id)
            context = torch.cat([self.class_embedding(null), context])
        if self.is_video:  # the motion UNet takes one context row per frame
            context = context.repeat_interleave(num_frames, dim=0)

        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)
        with self.progress_bar(total=len(timesteps)) as bar:
            for i, t in enumerate(timesteps):
                x_in = torch.cat([x, x]) if self.do_classifier_free_guidance else x
                x_in = self.scheduler.scale_model_input(x_in, t)  # identity for DDIM; Euler divides by its sigma
                tt = t.to(device).expand(x_in.shape[0])  # DDIM's are whole numbers, Euler's may not be
                eps = self.unet(x_in, tt, encoder_hidden_states=context).sample
                if self.do_classifier_free_guidance:
                    u, c = eps.chunk(2)
                    eps = u + guidance_scale * (c - u)
                x = self.scheduler.step(eps, t, x, **extra_step_kwargs).prev_sample
                if callback_on_step_end is not None:
                    returned = callback_on_step_end(self, i, t, {"latents": x})
                    if isinstance(returned, dict):  # diffusers' contract: a dict of tensors to replace
                        x = returned.get("latents", x)
                bar.update()

        images = (x.clamp(-1, 1) + 1) / 2
        if output_type == "latent":  # pixel space: the sample itself, in [-1, 1], as diffusers' latents
            images = x
        elif self.is_video:
            images = images.permute(0, 2, 1, 3, 4)  # (N, F, 3, H, W), as diffusers' video pipelines
        if output_type in ("np", "pil"):
            images = images.movedim(-3, -1).float().cpu().numpy()
            if output_type == "pil":
                images = [self.numpy_to_pil(im) for im in images] if self.is_video else self.numpy_to_pil(images)
        if not return_dict:
            return (images,)
        return AnimateDiffPipelineOutput(frames=images) if self.is_video else ImagePipelineOutput(images=images)

    def _init_sample(self, image, video, latents, strength: float) -> torch.Tensor | None:
        """The img2img / video-to-video input as a sample in [-1, 1], (N, 3, H, W) or (N, 3, F, H, W);
        None for text-to-image."""
        given = image if video is None else video
        if given is None:
            return None
        if image is not None and video is not None:
            raise ScaleCrafterError("pass image or video, not both")
        if latents is not None:
            raise ScaleCrafterError("pass image / video or latents, not both")
        if not isinstance(strength, (int, float)) or isinstance(strength, bool) or not 0 < strength <= 1:
            raise ScaleCrafterError(f"strength must be above 0 and at most 1, got {strength!r}")
        want, ndim = ("video", 5) if self.is_video else ("image", 4)
        name = "video" if video is not None else "image"
        if name != want:
            drawn = "clips" if self.is_video else "images"
            raise ScaleCrafterError(f"this pipeline's UNet draws {drawn}: pass {want}=")
        if not isinstance(given, torch.Tensor) or given.ndim != ndim or given.shape[-3] != 3:
            layout = "(N, F, 3, H, W)" if self.is_video else "(N, 3, H, W)"
            raise ScaleCrafterError(f"{name} must be a tensor shaped {layout} in [0, 1]")
        sample = given.float().clamp(0, 1) * 2 - 1
        return sample.permute(0, 2, 1, 3, 4) if self.is_video else sample

    @staticmethod
    def _refined_steps(steps: int, strength: float) -> int:
        """Steps an img2img call runs: int(steps * strength), as diffusers' img2img pipelines count them."""
        refined = min(int(steps * strength), steps)
        if refined < 1:
            raise ScaleCrafterError(f"strength {strength} runs no step of {steps}: raise strength or the steps")
        return refined
