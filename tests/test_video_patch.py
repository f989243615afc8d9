"""The engine on video UNets: spatial convs follow the plan, temporal layers stay as trained,
apply/remove is bit-identical, NDCFG splits video batches right, inflated (5-D) convs work."""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scalecrafter_video import apply_scalecrafter, remove_scalecrafter
from scalecrafter_video.engine.layers import spatial_convs
from scalecrafter_video.ops.redilate import redilated_conv2d

FRAMES = 4
T_EARLY = 981  # reference step 0: every window is open
T_LATE = 1  # reference step 49: every window is closed
TEMPORAL = ("motion_modules", "temp_convs", "temp_attentions", "transformer_in")


@pytest.fixture(params=["tiny_video", "tiny_video3d"])
def pipe(request):
    """conftest's session pipelines (seed 0); every test takes its patches off again."""
    return request.getfixturevalue(request.param)


def _inputs(pipe, batch=2, size=16, seed=0):
    """A CFG-style batch [uncond; cond] shaped as the pipeline passes it to its UNet."""
    g = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, 4, FRAMES, size, size, generator=g)
    dim = pipe.unet.config.cross_attention_dim
    text = torch.randn(batch, 7, dim, generator=g)
    if type(pipe.unet).__name__ == "UNetMotionModel":
        text = text.repeat_interleave(FRAMES, dim=0)  # AnimateDiffPipeline repeats embeddings per frame
    return sample, text


def _run(unet, sample, text, t):
    with torch.no_grad():
        return unet(sample, t, encoder_hidden_states=text, return_dict=False)[0]


def _temporal_modules(unet):
    out = {}
    for name, module in unet.named_modules():
        parts = name.split(".")
        if parts and parts[-1].isdigit() and parts[-2:-1] and parts[-2] in TEMPORAL:
            out[name] = module
        elif parts[-1] == "transformer_in":
            out[name] = module
    return out


def test_tiny_layouts(pipe):
    unet = pipe.unet
    assert type(unet).__name__ in ("UNetMotionModel", "UNet3DConditionModel")
    assert pipe.vae_scale_factor == 8 and unet.config.sample_size == 8
    names = set(spatial_convs(unet))
    assert "down_blocks.1.resnets.0.conv1" in names and "up_blocks.0.upsamplers.0.conv" in names
    assert not any(p in n for n in names for p in TEMPORAL)
    temporal = _temporal_modules(unet)
    assert temporal, "the tiny video UNet must have temporal layers"
    if type(unet).__name__ == "UNet3DConditionModel":
        assert any(isinstance(m, nn.Conv3d) and m.kernel_size == (3, 1, 1) for m in unet.modules())
        assert any(".temp_convs." in n for n in temporal) and any(".temp_attentions." in n for n in temporal)
        assert "transformer_in" in temporal
    else:
        assert sum(".motion_modules." in n for n in temporal) >= 8  # every down/up block and the mid block
    # the temporal layers really mix frames (no zero-init identity): a frame-wise model would give
    # the reversed output for reversed frames
    sample, text = _inputs(pipe, size=8)
    out = _run(unet, sample, text, T_EARLY)
    rev = _run(unet, sample.flip(2), text, T_EARLY)
    assert not torch.allclose(rev, out.flip(2), atol=1e-4)


def test_spatial_convs_follow_plan(pipe):
    """At an early timestep every planned conv computes the re-dilated conv of the plan's factor on
    the input it receives; every other conv (and every conv at a late timestep) the trained conv."""
    unet = pipe.unet
    sample, text = _inputs(pipe)
    handle = apply_scalecrafter(pipe, height=128, width=128, base=(64, 64), ndcfg=False)
    try:
        layers = list(spatial_convs(unet))
        by_module = {id(m): name for name, ms in spatial_convs(unet).items() for m in ms}
        assert handle.patched_convs == len(by_module)
        for t in (T_EARLY, T_LATE):
            expected = handle.plan.factors(t, layers)
            if t == T_EARLY:
                assert expected and all(f == (2.0, 2.0) for f in expected.values())
                assert not any(n.startswith(("down_blocks.0", "up_blocks.3")) for n in expected)
            else:
                assert expected == {}
            seen = {}

            def check(module, args, output, name, expected, seen):
                x = args[0]
                factor = expected.get(name)
                if factor is None:
                    ref = F.conv2d(x, module.weight, module.bias, module.stride, module.padding)
                else:
                    ref = redilated_conv2d(
                        x, module.weight, module.bias, module.stride, factor, module.groups, module.padding
                    )
                seen[name] = torch.allclose(output, ref, atol=1e-5, rtol=1e-4)

            hooks = [
                m.register_forward_hook(partial(check, name=by_module[id(m)], expected=expected, seen=seen))
                for ms in spatial_convs(unet).values()
                for m in ms
            ]
            try:
                _run(unet, sample, text, t)
            finally:
                for h in hooks:
                    h.remove()
            assert set(seen) == set(layers)
            assert all(seen.values()), [n for n, ok in seen.items() if not ok]
    finally:
        remove_scalecrafter(pipe)


def test_temporal_layers_untouched(pipe):
    """Motion modules / temp_convs / temporal attention: no patch on them, same weights, and on the
    inputs they received inside a patched call they give the outputs they gave (re-run unpatched)."""
    unet = pipe.unet
    temporal = _temporal_modules(unet)
    state = {k: v.clone() for k, v in unet.state_dict().items() if any(p in k for p in TEMPORAL)}
    sample, text = _inputs(pipe)
    captured = {}

    def keep(name):
        def hook(module, args, kwargs, output):
            captured.setdefault(name, (args, kwargs, output))  # first call; returns None: output kept

        return hook

    hooks = [m.register_forward_hook(keep(name), with_kwargs=True) for name, m in temporal.items()]
    apply_scalecrafter(pipe, height=128, width=128, base=(64, 64))
    try:
        for name, m in temporal.items():
            for sub in m.modules():
                assert "_conv_forward" not in sub.__dict__, name
        base_out = _run(unet, sample, text, T_EARLY)
    finally:
        remove_scalecrafter(pipe)
        for h in hooks:
            h.remove()
    assert set(captured) == set(temporal)
    with torch.no_grad():
        for name, (args, kwargs, out) in captured.items():
            again = temporal[name](*args, **kwargs)
            a = again[0] if isinstance(again, tuple) else getattr(again, "sample", again)
            o = out[0] if isinstance(out, tuple) else getattr(out, "sample", out)
            assert torch.equal(a, o), name
    assert torch.isfinite(base_out).all()
    for k, v in unet.state_dict().items():
        if k in state:
            assert torch.equal(v, state[k]), k


def test_apply_remove_bit_identical(pipe):
    unet = pipe.unet
    sample, text = _inputs(pipe)
    before = _run(unet, sample, text, T_EARLY)
    params = {k: v.clone() for k, v in unet.state_dict().items()}
    dicts = {n: dict(m.__dict__) for n, m in unet.named_modules() if isinstance(m, nn.Conv2d)}
    apply_scalecrafter(pipe, height=128, width=128, base=(64, 64))
    apply_scalecrafter(pipe, height=128, width=128, base=(64, 64), progressive=False)  # a second plan on top
    patched = _run(unet, sample, text, T_EARLY)
    assert not torch.allclose(patched, before)
    assert remove_scalecrafter(pipe) is True
    assert remove_scalecrafter(pipe) is False  # idempotent
    after = _run(unet, sample, text, T_EARLY)
    assert torch.equal(after, before)
    assert all(torch.equal(v, params[k]) for k, v in unet.state_dict().items())
    for n, m in unet.named_modules():
        if isinstance(m, nn.Conv2d):
            assert "_conv_forward" not in m.__dict__ and set(m.__dict__) == set(dicts[n]), n
    assert not unet._forward_hooks and not unet._forward_pre_hooks


def test_ndcfg_splits_video_batch(pipe):
    """[u; c] in, [u_damped; u_damped + c - u] out, with the damped pass on the unconditional half
    only: for UNetMotionModel that half is the first FRAMES rows of the per-frame text embeddings."""
    unet = pipe.unet
    sample, text = _inputs(pipe)
    main_rules = [
        {"selector": s, "factor": 2, "stop": 50}
        for s in ("down_blocks.1", "down_blocks.2", "down_blocks.3", "mid_block", "up_blocks.0", "up_blocks.1")
    ]
    damped_rules = [{"selector": s, "factor": 2, "stop": 50} for s in ("down_blocks.3", "mid_block", "up_blocks.0")]
    plan = {"name": "t", "main": main_rules, "damped": damped_rules, "ndcfg_stop": 50}
    try:
        apply_scalecrafter(pipe, height=128, width=128, preset=plan, base=(64, 64), ndcfg=True, cfg=True)
        out = _run(unet, sample, text, T_EARLY)
        apply_scalecrafter(
            pipe, height=128, width=128, preset=dict(plan, damped=[], ndcfg_stop=0), base=(64, 64), ndcfg=False
        )
        main = _run(unet, sample, text, T_EARLY)
        apply_scalecrafter(
            pipe,
            height=128,
            width=128,
            preset=dict(plan, main=damped_rules, damped=[], ndcfg_stop=0),
            base=(64, 64),
            ndcfg=False,
        )
        half = text.shape[0] // 2
        u_damped = _run(unet, sample[:1], text[:half], T_EARLY)
        # cfg off (guidance <= 1, e.g. TextToVideoSDPipeline has no do_classifier_free_guidance): plain output
        apply_scalecrafter(pipe, height=128, width=128, preset=plan, base=(64, 64), ndcfg=True, cfg=False)
        no_cfg = _run(unet, sample, text, T_EARLY)
    finally:
        remove_scalecrafter(pipe)
    u, c = main.chunk(2)
    assert torch.allclose(out[:1], u_damped, atol=1e-5)
    assert torch.allclose(out[1:], u_damped + c - u, atol=1e-5)
    assert not torch.allclose(u_damped, u, atol=1e-4)
    assert torch.allclose(no_cfg, main, atol=1e-6)


# ---- inflated convs: a Conv2d that receives (b, c, f, h, w) ------------------------------------
class InflatedConv2d(nn.Conv2d):
    """LaVie / original AnimateDiff style: folds frames into the batch and calls Conv2d.forward."""

    def forward(self, x):
        b, c, f, h, w = x.shape
        y = super().forward(x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w))
        return y.reshape(b, f, *y.shape[1:]).permute(0, 2, 1, 3, 4)


class _Resnet(nn.Module):
    def __init__(self, conv_cls):
        super().__init__()
        self.conv1 = conv_cls(3, 3, 3, padding=1)


class _Block(nn.Module):
    def __init__(self, conv_cls):
        super().__init__()
        self.resnets = nn.ModuleList([_Resnet(conv_cls)])


class TinyInflatedUNet(nn.Module):
    """UNet-like: down_blocks.0 / down_blocks.1 each with an InflatedConv2d resnets.0.conv1, fed 5-D tensors."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.down_blocks = nn.ModuleList([_Block(InflatedConv2d), _Block(InflatedConv2d)])
        self.up_blocks = nn.ModuleList()
        self.config = SimpleNamespace(sample_size=8)

    def forward(self, sample, timestep, encoder_hidden_states=None, return_dict=False):
        x = sample
        for block in self.down_blocks:
            x = block.resnets[0].conv1(x)
        return (x,)


def _per_frame(x, conv, dilation):
    b, c, f, h, w = x.shape
    y = F.conv2d(
        x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w), conv.weight, conv.bias, padding=dilation, dilation=dilation
    )
    return y.reshape(b, f, *y.shape[1:]).permute(0, 2, 1, 3, 4)


PLAN_DB1 = {"name": "db1", "main": [{"selector": "down_blocks.1", "factor": 2, "stop": 30}]}


def test_inflated_5d_conv():
    """A Conv2d subclass folding (b, c, f, h, w) to (b*f) before Conv2d.forward (LaVie's
    InflatedConv3d) is re-dilated per frame through the generic rule: the patched conv only ever
    sees 4-D input (a plain Conv2d handed 5-D input fails in PyTorch, patched or not)."""
    unet = TinyInflatedUNet()
    assert set(spatial_convs(unet)) == {"down_blocks.0.resnets.0.conv1", "down_blocks.1.resnets.0.conv1"}
    x = torch.randn(2, 3, 5, 16, 16, generator=torch.Generator().manual_seed(1))
    c0, c1 = unet.down_blocks[0].resnets[0].conv1, unet.down_blocks[1].resnets[0].conv1
    want = _per_frame(_per_frame(x, c0, 1), c1, 2)  # down_blocks.0 as trained, down_blocks.1 dilated 2
    before = _run(unet, x, None, T_EARLY)
    assert torch.allclose(before, _per_frame(_per_frame(x, c0, 1), c1, 1), atol=1e-5)
    handle = apply_scalecrafter(unet, height=16, width=16, preset=PLAN_DB1, ndcfg=False)
    try:
        assert handle.patched_convs == 2
        out = _run(unet, x, None, T_EARLY)
        assert out.shape == x.shape
        assert torch.allclose(out, want, atol=1e-5)
        assert torch.allclose(_run(unet, x, None, T_LATE), before, atol=1e-6)  # outside the window: as trained
    finally:
        remove_scalecrafter(unet)
    assert torch.equal(_run(unet, x, None, T_EARLY), before)
