"""Handle ownership: a handle removes only its own plan; nested contexts restore the outer plan."""

import pytest
import torch

from helpers import assert_pristine, run, snapshot
from scalecrafter_video import apply_scalecrafter, remove_scalecrafter, scalecrafter

PLAN_A = {"name": "a", "main": [{"selector": "mid_block", "factor": 2, "stop": 50}]}
PLAN_B = {"name": "b", "main": [{"selector": "down_blocks.2", "factor": 3, "stop": 50}]}


@pytest.fixture(scope="module")
def unet(bare_unet):
    return bare_unet


@pytest.fixture(scope="module")
def outputs(unet):
    out = {"plain": run(unet, size=16)}
    for name, plan in (("a", PLAN_A), ("b", PLAN_B)):
        with scalecrafter(unet, 16, 16, plan):
            out[name] = run(unet, size=16)
    assert len({tuple(v.flatten()[:8].tolist()) for v in out.values()}) == 3
    return out


def test_handle_removes_only_its_own_plan(unet, outputs):
    snap = snapshot(unet)
    h1 = apply_scalecrafter(unet, 16, 16, PLAN_A)
    h2 = apply_scalecrafter(unet, 16, 16, PLAN_B)
    assert h2.active and not h1.active
    assert torch.equal(run(unet, size=16), outputs["b"])
    assert h2.unet_calls == 1 and h1.unet_calls == 0  # only the plan in force counts
    assert h1.remove() is True and h1.remove() is False
    assert h1.patched_convs == 0 and h2.patched_convs > 0
    assert torch.equal(run(unet, size=16), outputs["b"])  # h2 keeps working
    assert h2.remove() is True
    assert torch.equal(run(unet, size=16), outputs["plain"])
    assert_pristine(unet, snap)


def test_removing_the_top_handle_brings_back_the_one_below(unet, outputs):
    h1 = apply_scalecrafter(unet, 16, 16, PLAN_A)
    h2 = apply_scalecrafter(unet, 16, 16, PLAN_B)
    h2.remove()
    assert h1.active and torch.equal(run(unet, size=16), outputs["a"])
    h1.remove()


def test_nested_contexts_restore_the_outer_plan_exactly(unet, outputs):
    snap = snapshot(unet)
    with scalecrafter(unet, 16, 16, PLAN_A) as outer:
        with scalecrafter(unet, 16, 16, PLAN_B) as inner:
            assert torch.equal(run(unet, size=16), outputs["b"])
        assert not inner.active and outer.active and outer.plan.name == "a"
        assert torch.equal(run(unet, size=16), outputs["a"])
        with pytest.raises(KeyboardInterrupt):
            with scalecrafter(unet, 16, 16, PLAN_B):
                raise KeyboardInterrupt
        assert torch.equal(run(unet, size=16), outputs["a"])
    assert_pristine(unet, snap)


def test_remove_scalecrafter_takes_every_plan_off(unet, outputs):
    snap = snapshot(unet)
    h1 = apply_scalecrafter(unet, 16, 16, PLAN_A)
    apply_scalecrafter(unet, 16, 16, PLAN_B)
    assert remove_scalecrafter(unet) is True and remove_scalecrafter(unet) is False
    assert h1.remove() is False and not h1.active
    assert torch.equal(run(unet, size=16), outputs["plain"])
    assert_pristine(unet, snap)
