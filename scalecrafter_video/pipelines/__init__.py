"""Pipeline front ends: image (Stable Diffusion / SDXL), video, and tiny offline test pipelines."""
