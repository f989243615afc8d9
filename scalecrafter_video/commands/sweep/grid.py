"""The sweep's items: one per (prompt, seed number, method, size), with seeds that depend only on
the prompt's index and the seed number (so any rerun, on any number of processes, reproduces them)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ...outputs.files import slugify

METHODS = ("direct", "attn-sf", "scalecrafter", "cascade")  # cascade: `scv generate --cascade`
BASE_METHOD = "direct"  # at the base size every method is plain sampling


def item_seed(prompt_index: int, seed_index: int) -> int:
    """A 63-bit seed from the prompt's index and the seed number (SHA-256, stable everywhere)."""
    digest = hashlib.sha256(f"scv-sweep:{prompt_index}:{seed_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass(frozen=True)
class SweepItem:
    prompt_index: int
    seed_index: int
    method: str
    width: int
    height: int
    prompt: str
    base: bool = False  # at the model's base size (the FID_b reference set)

    @property
    def key(self) -> str:
        return f"p{self.prompt_index}-s{self.seed_index}-{self.method}-{self.width}x{self.height}"

    @property
    def seed(self) -> int:
        return item_seed(self.prompt_index, self.seed_index)

    def relpath(self, suffix: str) -> str:
        """`<method>/<W>x<H>/p<prompt>-s<seed>-<slug><suffix>`: one fixed name per item."""
        stem = f"p{self.prompt_index:05d}-s{self.seed_index:03d}-{slugify(self.prompt, 32)}"
        return f"{self.method}/{self.width}x{self.height}/{stem}{suffix}"


def build_grid(
    prompts: list[str],
    seeds: int,
    methods: list[str],
    sizes: list[tuple[int, int]],
    base: tuple[int, int],
    include_base: bool,
) -> list[SweepItem]:
    """Every item once, ordered prompt, seed, size, method (so consecutive items, and with them each
    process's share, mix sizes and methods). Sizes are (width, height). `include_base` adds the
    model's base size; a requested size equal to the base gets only the base item."""
    all_sizes = list(dict.fromkeys(([base] if include_base else []) + list(sizes)))
    items = []
    for p, prompt in enumerate(prompts):
        for s in range(seeds):
            for width, height in all_sizes:
                at_base = (width, height) == base
                for method in [BASE_METHOD] if at_base else methods:
                    items.append(SweepItem(p, s, method, width, height, prompt, base=at_base))
    return items
