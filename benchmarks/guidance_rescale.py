"""How far guidance_rescale > 0 inside a stock pipeline is from the reference code under NDCFG.

The reference rescales the guided noise against the main conditional prediction c_main; a stock
pipeline patched by scalecrafter_video rescales against the conditional half it receives,
u_damped + c_main - u_main (the rewrite that turns its CFG into NDCFG). Both use diffusers'
`rescale_noise_cfg` on the same guided noise, so they differ only in that reference std. This
samples the shipped demo model at 4x per side with NDCFG (the demo's own sampler), and at every
step of the NDCFG window computes both rescaled predictions from the same UNet outputs.

    python benchmarks/guidance_rescale.py --samples 4 --steps 25 --rescale 0.7
"""

from __future__ import annotations

import argparse
import json

import torch


def main() -> None:
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

    from scalecrafter_video import scalecrafter
    from scalecrafter_video.commands.demo.sampling import BATCH_LAYOUT, sample
    from scalecrafter_video.models.shapes.model import load_demo_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--scale", type=int, default=4, help="per side")
    parser.add_argument("--guidance", type=float, default=3.0, help="the demo's guidance scale")
    parser.add_argument("--rescale", type=float, default=0.7, help="guidance_rescale (Lin et al. suggest 0.7)")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_demo_model()
    size = int(model.config["unet"]["sample_size"]) * args.scale
    main_out, rewritten = [], []
    before = model.unet.register_forward_hook(lambda m, a, o: main_out.append(o.sample.detach().clone()))
    try:
        with scalecrafter(model.unet, size, size, batch_layout=BATCH_LAYOUT) as handle:
            after = model.unet.register_forward_hook(lambda m, a, o: rewritten.append(o.sample.detach().clone()))
            try:
                sample(
                    model,
                    torch.arange(args.samples) % len(model.class_names),
                    size,
                    size,
                    steps=args.steps,
                    guidance=args.guidance,
                    batch=args.samples,
                )
            finally:
                after.remove()
    finally:
        before.remove()
    diffs, scale_gaps = [], []
    w, phi = args.guidance, args.rescale
    for main, new in zip(main_out, rewritten, strict=True):
        if torch.equal(main, new):  # outside the NDCFG window: nothing differs
            continue
        u_main, c_main = main.chunk(2)
        u_damped, c_seen = new.chunk(2)
        guided = u_damped + w * (c_main - u_main)
        reference = rescale_noise_cfg(guided, c_main, guidance_rescale=phi)
        ours = rescale_noise_cfg(guided, c_seen, guidance_rescale=phi)
        diffs.append(((ours - reference).flatten(1).norm(dim=1) / reference.flatten(1).norm(dim=1)).mean().item())
        dims = list(range(1, guided.ndim))

        def ratio(ref, guided=guided, dims=dims):
            return phi * ref.std(dim=dims) / guided.std(dim=dims) + (1 - phi)

        scale_gaps.append(((ratio(c_seen) - ratio(c_main)).abs() / ratio(c_main)).mean().item())
    print(
        json.dumps(
            {
                "model": "shapes32 (shipped demo)",
                "scale_per_side": args.scale,
                "samples": args.samples,
                "steps": args.steps,
                "guidance": w,
                "guidance_rescale": phi,
                "ndcfg_steps": len(diffs),
                "damped_passes": handle.damped_passes,
                "relative_difference_mean": round(sum(diffs) / len(diffs), 4),
                "relative_difference_max": round(max(diffs), 4),
                "rescale_factor_gap_mean": round(sum(scale_gaps) / len(scale_gaps), 4),
            }
        )
    )


if __name__ == "__main__":
    main()
