"""Outputs and media: atomic writes, output names unique per settings, sidecars, MP4 and PNG-frame
writing and reading."""
