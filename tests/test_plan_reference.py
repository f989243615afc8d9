"""The shipped presets reproduce the reference plans step by step under DDIM-50 (method.md tables),
and every preset's layer names exist in the real architecture (meta device, no weights)."""

import math
import re

import pytest
from diffusers import DDIMScheduler

from scalecrafter_video.engine.plan import Plan, derive_plan, progressive_factor
from scalecrafter_video.engine.presets import family_layers, presets, validate_preset

# Column -> layer regex, as method.md defines the block names.
SD_COLUMNS = {
    "DB1": r"down_blocks\.1\.(resnets|downsamplers)\.",
    "DB2": r"down_blocks\.2\.resnets\.",
    "DB2.ds": r"down_blocks\.2\.downsamplers\.",
    "DB3": r"down_blocks\.3\.",
    "MB": r"mid_block\.",
    "UB0": r"up_blocks\.0\.",
    "UB1": r"up_blocks\.1\.",
    "UB2": r"up_blocks\.2\.",
    "UB3": r"up_blocks\.3\.resnets\.",
}
XL_COLUMNS = {
    "DB2": r"down_blocks\.2\.",
    "MB": r"mid_block\.",
    "UB0": r"up_blocks\.0\.",
    "UB1": r"up_blocks\.1\.",
    "UB2": r"up_blocks\.2\.",
}
SD_ORDER = ["DB1", "DB2", "DB2.ds", "DB3", "MB", "UB0", "UB1", "UB2", "UB3"]

# (preset, family, dilate_tau, progressive, ndcfg_tau, main row, damped row) straight from method.md.
SD_TABLE = [
    ("sd15-1024x1024", "sd15", 30, False, 0, "2 2 2 2 2 2 2 2 -", None),
    ("sd15-1280x1280", "sd15", 35, False, 0, "2.5 2.5 2.5 2.5 2.5 2.5 2.5 2.5 -", None),
    ("sd15-2048x1024", "sd15", 35, True, 35, "2 3 3 4 4 4 3 2 -", "- 3 3 4 4 4 3 - -"),
    ("sd15-2048x2048", "sd15", 35, True, 35, "2 3 3 4 4 4 3 2 -", "- 3 3 4 4 4 3 - -"),
    ("sd21-1024x1024", "sd21", 20, False, 0, "2 2 2 2 2 2 2 2 -", None),
    ("sd21-1280x1280", "sd21", 30, False, 0, "2.5 2.5 2.5 2.5 2.5 2.5 2.5 2.5 -", None),
    ("sd21-2048x1024", "sd21", 37, True, 0, "2 3 3 4 4 4 3 2 -", None),
    ("sd21-2048x2048", "sd21", 37, True, 37, "- 3 4 4 4 4 4 3 2", "- 3 4 4 4 4 4 3 -"),
]
XL_ORDER = ["DB2", "MB", "UB0", "UB1", "UB2"]
XL_TABLE = [
    ("sdxl-2048x2048", 30, False, 0, "- 2 2 - -", None),
    ("sdxl-2560x2560", 30, False, 0, "- 2.5 2.5 - -", None),
    ("sdxl-4096x2048", 35, True, 35, "3 4 4 3 2", "- 2 2 - -"),
    ("sdxl-4096x4096", 35, True, 35, "4 4 4 3 2", "- 2 2 - -"),
]


def _row(order, cells):
    """A table row as {column: cell}; every row names every column."""
    return dict(zip(order, cells.split(), strict=True)) if cells else {}


CASES = [(n, f, t, p, nt, _row(SD_ORDER, m), _row(SD_ORDER, d), SD_COLUMNS) for n, f, t, p, nt, m, d in SD_TABLE]
CASES += [(n, "sdxl", t, p, nt, _row(XL_ORDER, m), _row(XL_ORDER, d), XL_COLUMNS) for n, t, p, nt, m, d in XL_TABLE]


def ddim50_timesteps():
    scheduler = DDIMScheduler(num_train_timesteps=1000, steps_offset=1, timestep_spacing="leading")
    scheduler.set_timesteps(50)
    return [int(t) for t in scheduler.timesteps]


def reference_factor(d: float, tau: int, progressive: bool, i: int) -> float:
    """The reference code's rule, written out independently of the package."""
    if i >= tau:
        return 1
    return max(math.ceil(d * (tau - i) / tau), 2) if progressive else d


def expected_row(row: dict, columns: dict, layers, tau, progressive, i) -> dict:
    out = {}
    for layer in layers:
        for column, value in row.items():
            if value != "-" and re.match(columns[column], layer + "."):
                f = reference_factor(float(value), tau, progressive, i)
                if f != 1:
                    out[layer] = int(f) if float(f).is_integer() else f
    return out


def test_ddim50_is_the_reference_schedule():
    assert ddim50_timesteps() == [981 - 20 * i for i in range(50)]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_preset_matches_reference_plan_step_by_step(case):
    name, family, tau, progressive, ndcfg_tau, main, damped, columns = case
    fam, plan = presets()[name]
    assert fam == family
    layers = list(family_layers(family))
    rows = plan.steps(ddim50_timesteps(), layers)
    assert len(rows) == 50
    for i, row in enumerate(rows):
        assert row["main"] == expected_row(main, columns, layers, tau, progressive, i), f"{name} step {i} main"
        want_damped = expected_row(damped, columns, layers, ndcfg_tau, progressive, i) if i < ndcfg_tau else {}
        assert row["damped"] == want_damped, f"{name} step {i} damped"
        assert plan.ndcfg_active(row["timestep"]) == (i < ndcfg_tau)


def test_progressive_decay_example_from_method():
    got = [progressive_factor(4, 35, i) for i in range(35)]
    assert got == [4] * 9 + [3] * 9 + [2] * 17


def test_every_preset_names_real_layers():
    for name in presets():
        validate_preset(name)


def test_misnamed_layer_is_an_error_naming_the_closest(tmp_path):
    from scalecrafter_video.engine.errors import ScaleCrafterError

    plan = Plan.from_dict(
        {"name": "typo", "main": [{"selector": "down_blocks.2.downsampler", "factor": 2, "stop": 30}]}
    )
    with pytest.raises(
        ScaleCrafterError, match=r"down_blocks\.2\.downsampler'.*closest real names: down_blocks\.2\.downsamplers"
    ):
        plan.validate(list(family_layers("sd15")))
    # The reference SDXL files name layers SDXL does not have: we refuse them.
    bad = Plan.from_dict({"name": "ref-sdxl", "main": [{"selector": "down_blocks.3", "factor": 2, "stop": 30}]})
    with pytest.raises(ScaleCrafterError, match="down_blocks.3"):
        bad.validate(list(family_layers("sdxl")))


def test_derived_plan_reproduces_the_sd15_4x_reference():
    layers = list(family_layers("sd15"))
    derived = derive_plan(4, (512, 512), (2048, 2048))
    _, ref = presets()["sd15-2048x2048"]
    assert derived.steps(ddim50_timesteps(), layers) == ref.steps(ddim50_timesteps(), layers)


def test_derived_plan_rules():
    t0 = 981
    layers = list(family_layers("sd15"))
    none = derive_plan(4, (512, 512), (512, 384))
    assert none.main == () and none.factors(t0, layers) == {}
    uniform = derive_plan(4, (512, 512), (1024, 768))  # 2 x 1.5
    f = uniform.factors(t0, layers)
    assert f["down_blocks.1.resnets.0.conv1"] == (2.0, 1.5)
    assert not any(k.startswith(("down_blocks.0", "up_blocks.3")) for k in f)
    assert uniform.ndcfg_stop == 0 and uniform.main[0].stop == 30
    aniso = derive_plan(4, (512, 512), (1024, 2048))  # 2 x 4: graded per axis
    f = aniso.factors(t0, layers)
    assert f["mid_block.resnets.0.conv1"] == (2.0, 4.0)
    assert f["down_blocks.1.resnets.0.conv1"] == (1.0, 2.0)
    assert aniso.ndcfg_stop == 35 and aniso.main[0].progressive
    # Other layouts: a 3-level UNet gets s/2 at level 1 and s at the deepest level.
    three = derive_plan(3, (32, 32), (128, 128), units="samples")
    assert {r.selector: r.factor[0] for r in three.main} == {
        "down_blocks.1": 2,
        "up_blocks.1": 2,
        "down_blocks.2": 4,
        "mid_block": 4,
        "up_blocks.0": 4,
    }
    assert {r.selector for r in three.damped} == {"down_blocks.2", "mid_block", "up_blocks.0"}


def test_windows_follow_noise_level_for_other_schedules():
    """Trailing spacing / other step counts hit the same noise levels: stop 35 dilates while t > 281."""
    _, plan = presets()["sd15-2048x2048"]
    layers = list(family_layers("sd15"))
    assert plan.factors(999, layers)["mid_block.resnets.0.conv1"] == (4.0, 4.0)
    assert plan.factors(282, layers) and not plan.factors(281, layers)


def test_plan_dict_round_trip_and_unknown_keys():
    from scalecrafter_video.engine.errors import ScaleCrafterError

    _, plan = presets()["sd21-2048x2048"]
    assert Plan.from_dict(plan.to_dict()) == plan
    with pytest.raises(ScaleCrafterError, match="unknown key"):
        Plan.from_dict({"name": "x", "mian": []})
    with pytest.raises(ScaleCrafterError, match="factor"):
        Plan.from_dict({"name": "x", "main": [{"selector": "mid_block", "factor": 0.5, "stop": 30}]})
