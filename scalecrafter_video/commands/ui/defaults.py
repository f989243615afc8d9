"""The models `scv ui` opens with: the shipped, trained shapes model (offline, class prompts) and,
for video, the same UNet with its shipped motion adapter. Kept apart so `scv --help` imports
nothing heavy."""

DEFAULT_MODEL = "shapes32"
DEFAULT_VIDEO_MODEL = "shapes32-motion"
