"""The engine: ScaleCrafter's plans and the patch that applies them to a diffusers UNet.

Re-dilation plans (layer- and timestep-aware), the reference presets, the model families' UNet
layouts, the CFG batch layouts, and the patch itself (re-dilated and dispersed convs, noise-damped
CFG with prefix reuse). Imports only `ops` below it: no pipelines, no files, no commands.
"""
