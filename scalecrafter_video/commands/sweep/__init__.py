"""`scv sweep`: every (prompt, seed, method, size) of a grid generated once, resumable, sharded.

grid.py (items, seeds, file names), manifest.py (per-process JSON-lines manifests of finished
items, the sweep's settings file), backends.py (image and video generation through the front
ends), run.py (one process's share: resume, generate, record), launch.py (`--num-processes`).
"""
