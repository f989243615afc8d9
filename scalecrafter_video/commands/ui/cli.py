"""`scv ui`: serve the web app (Gradio, the `ui` extra) until Ctrl-C."""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import logging
import os
import re
import socket
import tempfile
import time
from pathlib import Path

from ...engine.errors import ScaleCrafterError
from ...jobs.options import GenerateOptions
from ...outputs.files import path_argument
from .defaults import DEFAULT_MODEL, DEFAULT_VIDEO_MODEL

logger = logging.getLogger(__name__)

UI_EXAMPLES = f"""\
examples:
  scv ui                                   # {DEFAULT_MODEL}, on http://127.0.0.1:7860
  scv ui --model {DEFAULT_VIDEO_MODEL} --steps 10      # a video model, fewer steps on a CPU
  scv ui --model sd15 --out out/ui --port 7861          # real weights from the Hugging Face cache

The page samples direct, Attn-SF, ScaleCrafter or direct and ScaleCrafter side by side, and writes
every output with its JSON sidecar as `scv generate` does (same names, no overwrite unless ticked).
It binds to this machine only unless --host says otherwise; --share opens a public link.
"""


def add_ui_parser(sub) -> argparse.ArgumentParser:
    d = GenerateOptions(prompts=[], height=0, width=0)
    p = sub.add_parser(
        "ui",
        help="a local web app: direct vs ScaleCrafter side by side, plan plots",
        description="Serve a web page that samples a model directly, with Attn-SF or with ScaleCrafter (or "
        "direct and ScaleCrafter side by side) and shows the plan. Needs the `ui` extra (gradio).",
        epilog=UI_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"the model the page opens with (default {DEFAULT_MODEL}; any model of `scv generate`)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to serve on (default 127.0.0.1: this machine only; 0.0.0.0: every network)",
    )
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument(
        "--share",
        action="store_true",
        help="also open a public gradio.live link (needs the internet; anyone with the link can use the app)",
    )
    p.add_argument(
        "--out",
        default=str(d.out_dir),
        metavar="DIR",
        help=f"output folder (default {d.out_dir}); the page may change it only when served to this machine alone",
    )
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument(
        "--steps", type=int, default=d.steps, help=f"sampling steps the page opens with (default {d.steps})"
    )
    return p


def run_ui_command(args: argparse.Namespace, argv: list[str]) -> int:
    """Check everything, start the server, print its address and serve until Ctrl-C."""
    from ...jobs.loading import resolve_device
    from ...jobs.registry import resolve_model
    from ..plan_plot import require_matplotlib
    from .jobs import is_video_model

    if importlib.util.find_spec("gradio") is None:
        raise ScaleCrafterError("scv ui needs gradio: pip install 'scalecrafter_video[ui]'")
    require_matplotlib("scv ui")
    if not 1 <= args.port <= 65535:
        raise ScaleCrafterError(f"--port must be between 1 and 65535, got {args.port}")
    if args.steps < 1:
        raise ScaleCrafterError(f"--steps must be at least 1, got {args.steps}")
    check_host(args.host)
    out = path_argument(args.out)
    resolve_model(args.model, video=is_video_model(args.model))
    resolve_device(args.device)
    local = is_loopback(args.host) and not args.share
    if not local:
        serve_offline()
    from .app import App, build_app, launch

    with tempfile.TemporaryDirectory(prefix="scv-ui-") as stage:
        app = App(
            out_dir=str(out),
            stage_dir=Path(stage),
            device=args.device,
            fixed_out_dir=not local,
            fixed_models=not local,
            model=args.model,
        )
        page = build_app(app, args.model, steps=args.steps)
        url, share_url = launch(page, app, host=args.host, port=args.port, share=args.share)
        try:
            print(f"scv ui: serving on {url} (Ctrl-C stops)", flush=True)
            if not is_loopback(args.host):
                print(
                    f"scv ui: --host {args.host} serves other machines too; outputs go to {out} only, models "
                    "from the list only, no downloads",
                    flush=True,
                )
            if share_url:
                print(f"scv ui: public link {share_url} (anyone with it can use this app while it runs)", flush=True)
            while page.is_running:
                time.sleep(0.2)
        finally:
            page.close()
    return 0


def serve_offline() -> None:
    """Served beyond this machine, the app downloads nothing: the hub is offline for this process
    (`jobs.loading.hub_offline` reads the environment at each load)."""
    from huggingface_hub import constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True


def check_host(host: str) -> None:
    """--host must be an address of this machine (or a name resolving to one), else one line saying
    so, before the server starts (which would report it as a port problem)."""
    fix = "pass 127.0.0.1 (this machine only), 0.0.0.0 (every network) or an address of this machine"
    if not host.strip():
        raise ScaleCrafterError(f"--host is empty: {fix}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if re.fullmatch(r"[0-9.]+", host):  # a malformed IPv4 address: no name lookup for it
            raise ScaleCrafterError(f"--host {host!r} is not a valid IP address: {fix}") from None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise ScaleCrafterError(
            f"--host {host!r} is not an address or a name this machine resolves ({why}): {fix}"
        ) from None
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind((address[0], 0))  # any free port: --port is checked when the server starts
        except OSError as exc:
            raise ScaleCrafterError(
                f"--host {host!r} is not an address of this machine ({exc.strerror or exc}): {fix}"
            ) from None


def is_loopback(host: str) -> bool:
    """Whether `host` serves this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
