"""The models `scv ui` opens with: the shipped shapes models once they are built-in models of
`scv generate` (then "shapes32" and the shapes motion model). Kept apart so `scv --help` imports
nothing heavy."""

DEFAULT_MODEL = "tiny-sd"
DEFAULT_VIDEO_MODEL = "tiny-video"
