"""`scv eval`: the paper's FID/KID protocol (FID_r/KID_r, FID_b/KID_b) plus crop-based FID_c/KID_c.

resize.py (clean-fid style resize, full-resolution crops), features.py (Inception or a seeded
random-conv extractor), metrics.py (torchmetrics FID/KID on precomputed features), inputs.py
(finding and grouping images), reference.py (the shapes data set rendered at any size), run.py
(the evaluation), report.py (Markdown, JSON, plot).
"""
