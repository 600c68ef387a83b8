"""The training command: ``python finetune_musicgen.py CONFIG.json [--key value ...]`` (also ``musicgen-lora
train``). With nothing on the command line those two run the offline demo instead (:func:`musicgen_lora.cli.finetune`
chooses; :mod:`musicgen_lora.demo.cli`), so this module, and training from a config, never load the demo's
synthesiser."""

from __future__ import annotations

import sys
from typing import Any

from ..config.demo_paths import require_demo_assets
from ..config.parsing import parse_config
from ..errors import exit_on_user_error
from ..logs import setup_logging
from .run import run_training


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the config and train; bad input exits with one ``error:`` line (status 2; 130 after Ctrl-C)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    setup_logging()
    with exit_on_user_error(argv):
        parsed = parse_config(argv)
        require_demo_assets(parsed)  # a user's config naming the demo's folders: where they come from
        return run_training(parsed)
