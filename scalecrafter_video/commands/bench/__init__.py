"""`scv bench`: what ScaleCrafter costs. FLOPs on the meta device, step and whole-run times and
peak memory on random-weight pipelines of the real shapes, and the GPU suite.

VARIANTS maps each variant to its `apply_scalecrafter` options (None: direct inference).
CASCADES maps each cascade variant (`scv bench --flops` only) to the method of its stages above
the base (`jobs.cascade.CascadeConfig.stage_plan`): the whole cascade from the base size, counted
stage by stage.
"""

VARIANTS: dict[str, dict | None] = {
    "direct": None,
    "redilate": {"ndcfg": False},
    "ndcfg": {"ndcfg": True},
    "ndcfg-noreuse": {"ndcfg": True, "reuse": False},  # the whole damped pass, as before prefix reuse
    "ndcfg+dispersion": {"ndcfg": True, "dispersion": True},
}
CASCADES: dict[str, str] = {
    "cascade": "full",  # each stage under the engine's plan for its size, NDCFG where it has a damped window
    "cascade-restrained": "restrained",  # FreeScale's restrained re-dilation, no NDCFG
    "cascade-none": "none",  # every stage direct
}
