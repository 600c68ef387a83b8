"""Push a finished run to the Hugging Face Hub: adapter (or model), processor, model card and samples, one commit.

    python -m musicgen_lora.push OUTPUT_DIR --repo_id your-name/musicgen-lora-jazz [--private]

The token comes from ``HF_TOKEN`` or ``hf auth login`` (``--token`` works too, but stays in your shell history).
Transient failures are retried; a failed push changes no local file and says how to retry. ``HF_ENDPOINT`` selects
another Hub-compatible server."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from ..config.commands import CommandParser
from ..errors import exit_on_user_error
from ..logs import progress_bars, setup_logging
from .upload import push_folder


@dataclass
class PushArguments:
    """The options of ``python -m musicgen_lora.push`` (also ``musicgen-lora push``)."""

    output_dir: str = field(
        metadata={"positional": True, "metavar": "OUTPUT_DIR", "help": "the output_dir of a finished training run"}
    )
    repo_id: str = field(metadata={"help": "Hub repository, e.g. your-name/musicgen-lora-jazz"})
    private: bool = field(default=False, metadata={"help": "create the repository private"})
    token: str | None = field(default=None, metadata={"help": "Hub token (default: HF_TOKEN or the saved login)"})
    attempts: int = field(
        default=4,
        metadata={"choices": range(1, 21), "metavar": "1..20", "help": "tries in all for transient errors"},
    )
    debug: bool = field(default=False, metadata={"help": "full tracebacks instead of one-line errors"})


def build_parser() -> CommandParser:
    return CommandParser(
        PushArguments,
        prog="python -m musicgen_lora.push",
        description="Push a training run's output folder to a Hub model repository (created if missing), with a "
        "model card that names the base model by its Hub id and links the final samples.",
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else list(argv)
    setup_logging()
    # upload bars only where a person watches them, not into a log file
    with exit_on_user_error(argv), progress_bars(sys.stderr.isatty()):
        options = build_parser().parse(argv)
        url = push_folder(
            options.output_dir,
            options.repo_id,
            token=options.token,
            private=True if options.private else None,
            attempts=options.attempts,
        )
        print(f"pushed {options.output_dir} to {url}")
        return {"url": url, "repo_id": options.repo_id}
