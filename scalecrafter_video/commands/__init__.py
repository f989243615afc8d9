"""The commands: `scv` and its subcommands (generate, plan, presets, bench, demo, sweep, eval, ui).

They parse arguments, build jobs and show results; the work itself happens in the floors below.
"""
