"""Start the studio: ``python -m musicgen_lora.studio [--host H] [--port P] [--projects_dir DIR] [--share]``.

Serves the page on http://127.0.0.1:7860 by default, opened on the offline demo project (a tiny random MusicGen and
a synthetic corpus, built on first start). Gradio's public share link is off unless ``--share`` is given, and Gradio's
usage analytics are off.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import logging
import os
import socket
import sys
from typing import Any

from ..errors import CommandLineParser, exit_on_user_error
from ..files import ensure_writable_folder
from .backend import UserError
from .handlers import Studio
from .project import DEMO_PROJECT, check_project_name

logger = logging.getLogger(__name__)
DEFAULT_PORT = 7860


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(
        prog="python -m musicgen_lora.studio",
        description="A local web page to prepare data, train, listen to, evaluate and share MusicGen LoRA adapters.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every network interface)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to serve on")
    parser.add_argument(
        "--projects_dir", default="studio_projects", help="folder holding the projects (created if missing)"
    )
    parser.add_argument("--project", default=DEMO_PROJECT, help="project the page opens on")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link (off by default)")
    parser.add_argument("--debug", action="store_true", help="full tracebacks instead of one-line errors")
    return parser


def check_port(host: str, port: int) -> None:
    """Fail with a one-line message when the port cannot be served on (Gradio's own error is a traceback).

    The probe binds as the server will (``SO_REUSEADDR``, like uvicorn and Gradio): connections of a studio that just
    stopped linger in TIME-WAIT for a minute, and must not make a restart say the port is busy.

    Raises:
        UserError: the port is busy, or the address is not one of this machine's.
    """
    if not 0 < port < 65536:
        raise UserError(f"--port must be between 1 and 65535, got {port}")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise UserError(
                    f"port {port} on {host} is busy (another studio or program uses it); stop it or choose another "
                    f"port: --port {port + 1}"
                ) from None
            raise UserError(f"cannot serve on {host}:{port} ({err.strerror}); check --host and --port") from None


def gradio_installed() -> bool:
    """Whether gradio, an optional extra (``requirements-studio.txt``), is installed (it is imported on use only)."""
    try:
        return importlib.util.find_spec("gradio") is not None
    except ValueError:  # sys.modules holds None for it: known to be missing
        return False


def build_app(studio: Studio, project: str) -> Any:
    """The page (:mod:`.page`, the part of the package that imports gradio, imported on use)."""
    from .page import build_app as build_page

    return build_page(studio, project)


def page_style() -> dict[str, str]:
    """The page's own CSS and head script, as ``launch`` takes them."""
    from .page import CSS, HEAD

    return {"css": CSS, "head": HEAD}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the options, check the port, build the demo assets if needed, and serve the page until Ctrl-C."""
    argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # gradio reads it when a page is built and served
    with exit_on_user_error(argv):
        options = build_parser().parse_args(argv)
        check_port(options.host, options.port)
        check_project_name(options.project)
        ensure_writable_folder(options.projects_dir, "--projects_dir")
        if not gradio_installed():  # said before the demo assets take their time
            raise UserError("the studio needs gradio; install it with: pip install -r requirements-studio.txt")
        studio = Studio(options.projects_dir, host=options.host)
        studio.defaults(options.project)  # builds the demo's model and corpus before the page opens
        app = build_app(studio, options.project)
    print(f"MusicGen LoRA Studio on http://{options.host}:{options.port} (projects in {studio.root}); Ctrl-C stops it")
    app.queue(default_concurrency_limit=4).launch(
        server_name=options.host,
        server_port=options.port,
        share=options.share,
        allowed_paths=[str(studio.root)],
        ssr_mode=False,
        show_error=False,
        quiet=True,
        footer_links=[],
        **page_style(),
    )
    return {"url": f"http://{options.host}:{options.port}", "projects_dir": str(studio.root)}


if __name__ == "__main__":
    main()
