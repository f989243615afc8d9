#!/usr/bin/env python
"""Rebuild the tables of docs/results/cascade.md from the committed evidence folders:
`python scripts/cascade_results_page.py [--check]`.

The page's text above the MARKER line is written by hand (what the numbers show, the commands); below
it, one section per folder of SECTIONS: its title, where it came from, and the folder's table.md
(written by scripts/cascade_evidence.py or scripts/upscale_evidence.py) with its own title dropped
and its headings one level down. `--check` exits 1 when the page differs from what it would write
(a folder changed and the page was not rebuilt).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "results" / "cascade.md"
EVIDENCE = ROOT / "samples" / "cascade_evidence"
MARKER = "<!-- The sections below are rebuilt by scripts/cascade_results_page.py from samples/cascade_evidence/ -->"
SECTIONS = (  # (title, folder under samples/cascade_evidence)
    ("Clips, 24 per case", "motion-24"),
    ("Clips at 4x: every stage plan, 24 per case", "motion-24-plans-4x"),
    ("Clips at 4x: the default restarts (0.5, then 0.8) and the colour fix, 24 per case", "motion-24-restart-4x"),
    ("Clips, 24 per case, DDIM 50", "motion-24-ddim50"),
    ("Clips at 4x, 24 per case, DDIM 50", "motion-24-ddim50-4x"),
    ("Clips at 4x, DDIM 50: the restrained and no-plan stages, 24 per case", "motion-24-ddim50-4x-plans"),
    ("Clips at 4x, DDIM 50: plain ScaleCrafter, 24 per case", "motion-24-ddim50-4x-unpaired"),
    ("Clips at 4x, DDIM 50: direct sampling, 24 per case", "motion-24-ddim50-4x-direct"),
    ("Clips at 4x: direct sampling, 24 per case", "motion-24-4x-direct"),
    ("Clips at 4x: direct sampling, 12 clips (the first run)", "motion-12-4x"),
    ("scv upscale, 24 clips", "upscale-24"),
    ("Images, 24 per case", "images-24"),
    ("First runs: 12 clips or images per case", "reduced"),
)


def section(title: str, folder: str) -> str:
    """One folder's section: "## title", its source, its table.md without the title, headings demoted."""
    table = (EVIDENCE / folder / "table.md").read_text().splitlines()
    if table and table[0].startswith("# "):
        table = table[1:]
    body = ["#" + line if line.startswith("#") else line for line in table]
    return "\n".join([f"## {title}", "", f"From `samples/cascade_evidence/{folder}/`.", *body]).rstrip() + "\n"


def build(page: str) -> str:
    """`page` with everything below MARKER rebuilt (folders not yet measured are left out)."""
    if MARKER not in page:
        raise SystemExit(f"{PAGE} has no marker line {MARKER!r}: add it where the tables start")
    head = page.split(MARKER, 1)[0]
    parts = [section(title, folder) for title, folder in SECTIONS if (EVIDENCE / folder / "table.md").exists()]
    return head + MARKER + "\n\n" + "\n".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the page is not what it would be rebuilt to")
    a = ap.parse_args(argv)
    page = PAGE.read_text()
    new = build(page)
    if a.check:
        if new != page:
            print(f"{PAGE} is out of date: run python scripts/cascade_results_page.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(new)
    print(f"wrote {PAGE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
