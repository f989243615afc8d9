"""Run one process per sweep variant at the same time (they share one GPU), with a deadline."""

from __future__ import annotations

import subprocess
import sys
import threading
import time


def run_side_by_side(
    script: str, argv: list[str], names: list[str], deadline: float | None = None, capture: bool = False
) -> dict[str, tuple[int | None, str]]:
    """Start `python script *argv --one NAME` for every name, wait for all (killing those still
    running after `deadline` seconds), and return {name: (exit code, stdout if `capture`)}."""
    t0 = time.time()
    out = subprocess.PIPE if capture else None
    procs = {n: subprocess.Popen([sys.executable, script, *argv, "--one", n], stdout=out, text=True) for n in names}
    stdout: dict[str, str] = {n: "" for n in names}
    readers = [
        threading.Thread(target=lambda n=n, p=p: stdout.__setitem__(n, p.stdout.read()), daemon=True)
        for n, p in procs.items()
        if capture
    ]
    for r in readers:
        r.start()
    try:
        while any(p.poll() is None for p in procs.values()):
            if deadline and time.time() - t0 > deadline:
                for n, p in procs.items():
                    if p.poll() is None:
                        print(f"sweep: deadline reached, stopping {n}", file=sys.stderr)
                        p.kill()
                break
            time.sleep(2)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
            p.wait()
        for r in readers:
            r.join(timeout=10)
    return {n: (p.returncode, stdout[n]) for n, p in procs.items()}
