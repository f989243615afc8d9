"""Front ends on diffusers pipelines: one loading layer (`loading`, `models`, `common`) under the
image and video front ends (`image`, `video`), and the built-in tiny pipelines (`tiny`)."""
