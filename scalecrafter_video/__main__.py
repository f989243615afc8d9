"""`python -m scalecrafter_video` runs the `scv` command line."""

import sys

from .commands.cli import main

sys.exit(main())
