"""`scv sweep --num-processes N`: rerun the same command as N processes under accelerate's launcher.

accelerate's `--cpu` flag starts more than one process only through MPI, so the launch always goes
through its torchrun path (`--multi_gpu`); on CPUs each process then sets itself up for CPU (gloo).
"""

from __future__ import annotations

import socket
import subprocess
import sys

LAUNCHED_ENV = "WORLD_SIZE"  # set by torchrun / accelerate in every process it starts


def strip_option(argv: list[str], option: str) -> list[str]:
    """`argv` without `option VALUE` / `option=VALUE`."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(argv: list[str], processes: int) -> list[str]:
    """The accelerate command that runs `scv <argv>` (without --num-processes) as `processes` processes."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port()), "-m", "scalecrafter_video",
            *strip_option(argv, "--num-processes")]


def launch(argv: list[str], processes: int) -> int:
    """Run the sweep as `processes` processes; returns the launcher's exit code."""
    return subprocess.run(launch_command(argv, processes), check=False).returncode
