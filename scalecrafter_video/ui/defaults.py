"""The models `scv ui` opens with: the shipped, trained shapes model (offline, class prompts) and,
for video, the tiny random video pipeline until a shapes motion adapter ships. Kept apart so
`scv --help` imports nothing heavy."""

DEFAULT_MODEL = "shapes32"
DEFAULT_VIDEO_MODEL = "tiny-video"
