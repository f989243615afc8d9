"""`scv sweep --num-processes N`: rerun the same command as N processes under accelerate's launcher.

accelerate's `--cpu` flag starts more than one process only through MPI, so the launch always goes
through its torchrun path (`--multi_gpu`); on CPUs each process then sets itself up for CPU (gloo).
`accelerate launch --cpu --num_processes N` without MPI starts one plain process: the sweep sees
that (`cpu_launch_processes`) and relaunches itself as N processes this way.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

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


def _option_value(args: list[str], option: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == option and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


def cpu_launch_processes(environ=os.environ, parent_cmdline: list[str] | None = None) -> int | None:
    """N when this process is the single one `accelerate launch --cpu --num_processes N` (N > 1)
    started without MPI: accelerate's CPU launcher then runs one plain process (no WORLD_SIZE) with
    ACCELERATE_USE_CPU and MASTER_ADDR set. N is read from the launcher's command line (the parent
    process); None when that is not the case or cannot be read."""
    if LAUNCHED_ENV in environ or "MASTER_ADDR" not in environ:
        return None
    if environ.get("ACCELERATE_USE_CPU", "").lower() not in ("true", "1", "yes"):
        return None
    if parent_cmdline is None:
        try:
            raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
        except OSError:
            return None
        parent_cmdline = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    if not any("accelerate" in a for a in parent_cmdline[:3]) or "--mpirun_hostfile" in " ".join(parent_cmdline):
        return None
    value = _option_value(parent_cmdline, "--num_processes") or _option_value(parent_cmdline, "--num-processes")
    try:
        n = int(value) if value is not None else 0
    except ValueError:
        return None
    return n if n > 1 else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(argv: list[str], processes: int) -> list[str]:
    """The accelerate command that runs `scv <argv>` (without --num-processes) as `processes` processes."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        "-m",
        "scalecrafter_video",
        *strip_option(argv, "--num-processes"),
    ]


def launch(argv: list[str], processes: int) -> int:
    """Run the sweep as `processes` processes; returns the launcher's exit code."""
    return subprocess.run(launch_command(argv, processes), check=False).returncode
