"""`scv bench`: exact FLOP counting on the meta device (grouped steps equal step-by-step counting,
dilation costs no FLOPs, the SD 1.5 ratio target, cascades as the sum of their stages and as a
real cascade runs them), the real shapes of the random pipelines, the timing mode and the GPU
suite on tiny models (what CI runs), and one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import UNet2DConditionModel
from torch.utils.flop_counter import FlopCounterMode

from helpers import MOVING_PREFIX
from scalecrafter_video import scalecrafter
from scalecrafter_video.commands.bench import VARIANTS
from scalecrafter_video.commands.bench.flops import (
    _EXTRA_FORMULAS,
    cascade_flops,
    count_flops,
    dilation_costs_nothing,
    whole_run_flops,
)
from scalecrafter_video.commands.bench.models import (
    UNetHolder,
    bench_model,
    build_pipeline,
    meta_copy,
    real_pipeline,
    unet_inputs,
)
from scalecrafter_video.commands.bench.run import meta_unet_for
from scalecrafter_video.commands.bench.suite import run_suite
from scalecrafter_video.jobs.cascade import (
    CascadeConfig,
    cascade_sizes,
    engine_stages,
    refiner_of,
    restrained_plan,
    run_stages,
)
from scalecrafter_video.jobs.sampling import sampler_timesteps


def test_the_counter_gives_dilated_convs_the_flops_of_plain_ones():
    assert dilation_costs_nothing()


@pytest.mark.parametrize(
    "plan,options",
    [
        ("auto", {"ndcfg": True, "dispersion": True}),  # derived 4x plan: decay 4-3-2, dispersion at 1.5
        (MOVING_PREFIX, {"ndcfg": True}),  # the first differing unit moves, then both plans agree
    ],
    ids=["derived+dispersion", "moving-prefix"],
)
def test_grouped_steps_count_what_every_step_counts(plan, options):
    """One count per step configuration times its steps = a count of every step (DDIM 10), on a
    small 3-level UNet (the counts only need its layout)."""
    with torch.device("meta"):
        unet = UNet2DConditionModel(
            sample_size=8,
            block_out_channels=(8, 8, 16),
            layers_per_block=1,
            down_block_types=("DownBlock2D",) * 3,
            up_block_types=("UpBlock2D",) * 3,
            mid_block_type="UNetMidBlock2D",
            norm_num_groups=4,
            cross_attention_dim=8,
        )
    inputs = unet_inputs(unet, 256, 256, 0, "meta", torch.float32)
    apply = dict(height=256, width=256, family=None, preset=plan, **options)
    timesteps = sampler_timesteps(10)
    grouped = whole_run_flops(unet, inputs, timesteps, apply)
    every = whole_run_flops(unet, inputs, timesteps, apply, group=False)
    assert grouped.flops == every.flops


def test_cpu_and_meta_counts_agree():
    """Timing counts FLOPs during a real call; --flops on the meta device: the same number (the
    CPU's fused attention is counted like CUDA's)."""
    pipe = build_pipeline(bench_model("tiny-sd"), torch.device("cpu"), torch.float32)
    counts = []
    for unet, device in ((pipe.unet, "cpu"), (meta_copy(pipe.unet), "meta")):
        x = unet_inputs(unet, 256, 256, 0, device, torch.float32)
        with scalecrafter(UNetHolder(unet), height=256, width=256, dispersion=True):
            counts.append(count_flops(lambda unet=unet, x=x: unet(**x, timestep=981)))
    assert counts[0] == counts[1] > 0


def test_sd15_2048_ndcfg_whole_run_ratio():
    """The issue's target: DDIM 50, NDCFG preset / direct <= 1.26 (1.35 without prefix reuse)."""
    unet = meta_unet_for("sd15")
    inputs = unet_inputs(unet, 2048, 2048, 0, "meta", torch.float32)
    timesteps = sampler_timesteps(50)
    direct = whole_run_flops(unet, inputs, timesteps, None)
    ndcfg = whole_run_flops(unet, inputs, timesteps, dict(height=2048, width=2048, family="sd15", ndcfg=True))
    assert ndcfg.plan == "sd15-2048x2048"
    assert ndcfg.flops / direct.flops <= 1.26
    # the cache holds conv_in's and down_blocks.0's outputs for the unconditional row, float32 here:
    # 320 channels at 256x256 four times (conv_in, two resnets), and once at 128x128 (downsampler)
    assert ndcfg.cache_bytes == 4 * (3 * 320 * 256 * 256 + 320 * 128 * 128)


def test_cascade_rows_are_their_stages_summed(scv):
    """`scv bench --flops` on tiny-sd at 256x256 (base 64), DDIM 10, restart 0.3: the stages 64, 128
    and 256 px; the base direct over all 10 steps, each later stage over steps 3-9 under its plan,
    counted one by one here; the rows sum them and report the ratio to direct at 256x256."""
    unet = meta_unet_for("tiny-sd").to(torch.float16)
    timesteps = sampler_timesteps(10)

    def run(size, at, apply=None):
        inputs = unet_inputs(unet, size, size, 0, "meta", torch.float16)
        return whole_run_flops(unet, inputs, at, apply).flops

    def plan(stage_plan, size):
        preset = {"full": "auto", "restrained": restrained_plan((64, 64), (size, size))}.get(stage_plan)
        return None if preset is None else dict(height=size, width=size, family=None, base=(64, 64), preset=preset)

    direct = run(256, timesteps)
    argv = ["--flops", "--family", "tiny-sd", "--steps", "10", "--variants", "cascade", "cascade-restrained"]
    code, out, err = scv("bench", *argv, "--restart", "0.3", "--json", "--no-progress")
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert [r["variant"] for r in rows] == ["direct", "cascade", "cascade-restrained"]
    for row in rows[1:]:
        stage_plan = {"cascade": "full", "cascade-restrained": "restrained"}[row["variant"]]
        stages = [run(64, timesteps)] + [run(s, timesteps[3:], plan(stage_plan, s)) for s in (128, 256)]
        assert row["flops"] == sum(stages) and row["ratio"] == round(sum(stages) / direct, 4)
        assert [s["flops"] for s in row["stages"]] == stages
        assert [(s["res"], s["start_step"], s["steps"]) for s in row["stages"]] == [
            ("64x64", 0, 10),
            ("128x128", 3, 7),
            ("256x256", 3, 7),
        ]
    full, restrained = rows[1]["stages"][-1], rows[2]["stages"][-1]
    assert full["flops"] > restrained["flops"] == run(256, timesteps[3:])  # NDCFG's damped passes; integer factors
    assert "256x256 derived-256x256 (7 steps)" in rows[1]["plan"]


def test_cascade_count_is_what_a_real_cascade_runs():
    """The stages counted on the meta device are the UNet work of `jobs.cascade.run_stages` (as
    `cascade` and `scv generate --cascade` call it) on the tiny-sd pipeline (CPU, random weights),
    counted live inside every UNet call of every stage (the damped passes run inside them), with
    its tokenizer's 32 tokens of context."""
    pipe = build_pipeline(bench_model("tiny-sd"), torch.device("cpu"), torch.float32)
    refiner = refiner_of(pipe)  # before the UNet's class is swapped below: from_pipe checks it
    sizes = cascade_sizes((64, 64), (256, 256), 64)
    live: list[int] = []
    plain = type(pipe.unet)

    class Counted(plain):
        def __call__(self, *args, **kwargs):
            with FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS) as mode:
                out = super().__call__(*args, **kwargs)
            live.append(mode.get_total_flops())
            return out

    Counted.__name__ = Counted.__qualname__ = plain.__name__
    pipe.unet.__class__ = Counted
    try:
        result = run_stages(
            pipe,
            "a",
            sizes,
            config=CascadeConfig(restart=0.3),
            method=engine_stages("full", base=(64, 64)),
            steps=10,
            guidance_scale=7.5,
            generator=torch.Generator().manual_seed(0),
            refiner=refiner,
        )
    finally:
        pipe.unet.__class__ = plain
    unet = meta_unet_for("tiny-sd").to(torch.float16)
    stages = cascade_flops(unet, (256, 256), 0, sampler_timesteps(10), 10, CascadeConfig(restart=0.3), None, tokens=32)
    assert [s["unet_calls"] for s in result.stages] == [s.steps for s in stages] == [10, 7, 7]
    per_stage = CascadeConfig(restart=(0.3, 0.7))
    later = cascade_flops(unet, (256, 256), 0, sampler_timesteps(10), 10, per_stage, None, tokens=32)
    assert [(s.start_step, s.steps) for s in later] == [(0, 10), (3, 7), (7, 3)]
    assert result.stages[-1]["damped_passes"] > 0
    calls = iter(live)
    assert [sum(next(calls) for _ in range(s.steps)) for s in stages] == [s.flops for s in stages]


def test_random_pipelines_have_the_real_shapes():
    """Parameter counts of the real components: SD 1.5 / 2.x / SDXL UNets, the SD VAE, CLIP ViT-L,
    OpenCLIP ViT-H (23 layers, as SD 2 uses it) and ViT-bigG text encoders."""
    want = {
        "sd15": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
        "sd21": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},
        "sdxl": {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840},
    }
    for name, counts in want.items():
        pipe = real_pipeline(name, "meta")
        got = {k: sum(p.numel() for p in getattr(pipe, k).parameters()) for k in counts}
        assert got == counts, name
    assert pipe.vae.config.scaling_factor == 0.13025 and pipe.vae.config.force_upcast
    for name in ("animatediff", "modelscope"):
        pipe = real_pipeline(name, "meta")
        assert (
            type(pipe.unet).__name__ == {"animatediff": "UNetMotionModel", "modelscope": "UNet3DConditionModel"}[name]
        )
        assert bench_model(name).video


def test_video_unet_inputs_as_their_pipelines_pass_them():
    """UNetMotionModel takes the text context once per frame (AnimateDiffPipeline repeats it; a GPU
    run once failed on this), UNet3DConditionModel once per video."""
    motion, unet3d = meta_unet_for("animatediff"), meta_unet_for("modelscope")
    x = unet_inputs(motion, 1024, 1024, 16, "meta", torch.float16)
    assert x["sample"].shape == (2, 4, 16, 128, 128) and x["encoder_hidden_states"].shape == (32, 77, 768)
    x = unet_inputs(unet3d, 512, 512, 16, "meta", torch.float16)
    assert x["sample"].shape == (2, 4, 16, 64, 64) and x["encoder_hidden_states"].shape == (2, 77, 1024)


def test_tiny_timing_mode_json(scv):
    code, out, err = scv(
        "bench",
        "--tiny",
        "--json",
        "--family",
        "tiny-sdxl",
        "--variants",
        "direct",
        "ndcfg",
        "--steps",
        "2",
        "--repeats",
        "1",
        "--no-progress",
    )
    assert code == 0, err
    rows = json.loads(out)["rows"]
    for row in rows:
        assert row["card"].startswith("CPU") and row["torch"] and row["diffusers"] and row["res"] == "256x256"
    step = {r["variant"]: r for r in rows if r["kind"] == "step"}
    assert step["direct"]["flops"] < step["ndcfg"]["flops"] and step["ndcfg"]["cache_gib"] > 0
    whole = {r["variant"]: r for r in rows if r["kind"] == "whole"}
    assert whole["ndcfg"]["source"] == "measured" and whole["ndcfg"]["decode_s"] > 0
    assert whole["direct"]["source"].startswith("computed")


@pytest.mark.slow
def test_tiny_gpu_suite_writes_results_and_checks(tmp_path):
    result = run_suite(tmp_path, tiny=True, steps=2)
    assert {p.name for p in tmp_path.iterdir()} == {"bench.json", "bench.md"}
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"]))
    assert {r["model"] for r in saved["rows"]} == {"tiny-sd", "tiny-video"}
    assert any(r["channels_last"] for r in saved["rows"])
    assert [c["check"].split(":")[1].strip() for c in saved["checks"]] == ["re-dilation step / direct step"] * 2
    assert "| tiny-video | 128x128 | 2 | ndcfg |" in (tmp_path / "bench.md").read_text()
    step = {
        r["variant"]: r
        for r in saved["rows"]
        if r["kind"] == "step" and r["model"] == "tiny-sd" and not r["channels_last"]
    }
    assert set(step) == set(VARIANTS)
    assert step["direct"]["flops"] == step["redilate"]["flops"]  # integer factors cost nothing extra
    assert step["direct"]["flops"] < step["ndcfg"]["flops"] < step["ndcfg-noreuse"]["flops"]
    assert step["ndcfg"]["cache_gib"] > 0 and step["ndcfg-noreuse"]["cache_gib"] == 0


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--gpu-suite"], "pass --out DIR"),
        (["--flops", "--family", "sd15", "--res", "1000x1000"], "not divisible by 64"),
        (["--flops", "--res", "2048"], "is not WIDTHxHEIGHT"),
        (["--tiny", "--variants", "ndcfg", "cascade"], "cascade: the cascade variants are counted by --flops only"),
        (["--flops", "--family", "sd15", "--res", "512x512", "--variants", "cascade"], "above the base size"),
        (["--flops", "--restart", "1"], "restart must be above 0 and below 1"),
        (["--flops", "--restart", "0.5,"], "restart must be a fraction or fractions separated by commas"),
    ],
)
def test_bad_input_is_one_line_error(scv, argv, message):
    code, out, err = scv("bench", *argv)
    assert code == 2 and out == ""
    assert err.startswith("scv: error:") and message in err and err.count("\n") == 1


def test_existing_results_need_overwrite(scv, tmp_path):
    (tmp_path / "flops.json").write_text("{}")
    code, _, err = scv("bench", "--flops", "--family", "tiny-sd", "--out", tmp_path)
    assert code == 2 and "--overwrite" in err
    assert (tmp_path / "flops.json").read_text() == "{}"
