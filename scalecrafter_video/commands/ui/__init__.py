"""`scv ui`: the local web app. `defaults` (the models it opens with), `jobs` (requests run through
the image and video front ends, no web framework), `app` (the Gradio page), `cli` (the command)."""
