"""Video presets: written from the engine's derive_plan for their family, valid on the real layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalecrafter_video.engine.families import get_family
from scalecrafter_video.engine.plan import derive_plan
from scalecrafter_video.engine.presets import family_layers, load_preset_file

VIDEO_FAMILIES = ("animatediff", "zeroscope", "modelscope")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "scalecrafter_video" / "configs"
FILES = sorted(p for fam in VIDEO_FAMILIES for p in CONFIG_DIR.glob(f"{fam}_*.toml"))


def test_expected_presets_exist():
    names = {p.stem for p in FILES}
    for stem in (
        "animatediff_1024x1024",
        "animatediff_1024x576",
        "animatediff_768x768",
        "zeroscope_1152x640",
        "modelscope_512x512",
    ):
        assert stem in names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_video_preset_matches_derived_plan(path):
    family, plan = load_preset_file(path)
    fam = get_family(family)
    assert path.stem.startswith(family + "_") and fam.video
    h, w = plan.target
    assert path.stem == f"{family}_{w}x{h}" and plan.name == f"{family}-{w}x{h}"
    derived = derive_plan(fam.levels, (fam.base_height, fam.base_width), (h, w))

    def same(a, b):
        assert {r.selector: (r.stop, r.progressive) for r in a} == {r.selector: (r.stop, r.progressive) for r in b}
        want = {r.selector: r.factor for r in b}
        for r in a:
            assert r.factor == pytest.approx(want[r.selector], abs=1e-9), r.selector

    same(plan.main, derived.main)
    same(plan.damped, derived.damped)
    assert plan.ndcfg_stop == derived.ndcfg_stop
    assert set(plan.dispersion) == set(derived.dispersion)
    # every selector names a spatial conv of the family's real UNet (meta device), none temporal
    layers = list(family_layers(family))
    plan.validate(layers)
    assert layers and not any(("temp" in n or "motion" in n) for n in layers)
    # down_blocks.0 and the outermost up block stay at their trained receptive field
    assert not any(r.selector.startswith(("down_blocks.0", f"up_blocks.{fam.levels - 1}")) for r in plan.main)
