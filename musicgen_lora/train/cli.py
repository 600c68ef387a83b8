"""The training command: ``python finetune_musicgen.py [CONFIG.json] [--key value ...]`` (also
``musicgen-lora train``); with nothing on the command line, the offline demo."""

from __future__ import annotations

import sys
from typing import Any

from ..config.parsing import parse_config
from ..demo.assets import DEMO_CONFIG, ensure_demo_assets, require_demo_assets
from ..errors import exit_on_user_error
from ..logs import setup_logging
from .run import run_training


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the config (the embedded demo for an empty command line, which builds its assets where missing), and
    train; bad input exits with one ``error:`` line (status 2; 130 after Ctrl-C)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    setup_logging()
    with exit_on_user_error(argv):
        parsed = parse_config(argv, defaults=DEMO_CONFIG)
        if [word for word in argv if word != "--debug"]:  # a config of the user's: the demo's folders must be there
            require_demo_assets(parsed)
        else:
            ensure_demo_assets(parsed)
        return run_training(parsed)
