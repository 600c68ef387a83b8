"""Push a finished run to the Hugging Face Hub: adapter (or model), processor, model card and samples, one commit.

    python -m musicgen_lora.push OUTPUT_DIR --repo_id your-name/musicgen-lora-jazz [--private]

The token comes from ``HF_TOKEN`` or ``hf auth login`` (``--token`` works too, but stays in your shell history).
Transient failures are retried; a failed push changes no local file and says how to retry. ``HF_ENDPOINT`` selects
another Hub-compatible server."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import CommandLineParser, exit_on_user_error
from ..logs import setup_logging
from .upload import push_folder


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(
        prog="python -m musicgen_lora.push",
        description="Push a training run's output folder to a Hub model repository (created if missing), with a "
        "model card that names the base model by its Hub id and links the final samples.",
    )
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", help="the output_dir of a finished training run")
    parser.add_argument("--repo_id", required=True, help="Hub repository, e.g. your-name/musicgen-lora-jazz")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the saved login)")
    parser.add_argument(
        "--attempts",
        type=int,
        default=4,
        choices=range(1, 21),
        metavar="1..20",
        help="tries in all for transient errors (default 4)",
    )
    parser.add_argument("--debug", action="store_true", help="full tracebacks instead of one-line errors")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else list(argv)
    setup_logging()
    with exit_on_user_error(argv):
        options = build_parser().parse_args(argv)
        url = push_folder(
            options.output_dir,
            options.repo_id,
            token=options.token,
            private=True if options.private else None,
            attempts=options.attempts,
        )
        print(f"pushed {options.output_dir} to {url}")
        return {"url": url, "repo_id": options.repo_id}
