"""`scv bench`: what ScaleCrafter costs. FLOPs on the meta device, step and whole-run times and
peak memory on random-weight pipelines of the real shapes, and the GPU suite.

VARIANTS maps each variant to its `apply_scalecrafter` options (None: direct inference).
"""

VARIANTS: dict[str, dict | None] = {
    "direct": None,
    "redilate": {"ndcfg": False},
    "ndcfg": {"ndcfg": True},
    "ndcfg-noreuse": {"ndcfg": True, "reuse": False},  # the whole damped pass, as before prefix reuse
    "ndcfg+dispersion": {"ndcfg": True, "dispersion": True},
}
