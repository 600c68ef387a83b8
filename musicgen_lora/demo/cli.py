"""The offline demo: ``python finetune_musicgen.py`` with nothing on the command line (also ``musicgen-lora demo``).

It trains LoRA adapters on a tiny random MusicGen over a synthetic corpus, both built in ``demo_output/`` on first
use (:mod:`.assets`), with the embedded demo config. Training from a config file never imports this module, so the
synthesiser is loaded only when the demo runs."""

from __future__ import annotations

import sys
from typing import Any

from ..config.parsing import parse_config
from ..errors import UserError, exit_on_user_error, program_name
from ..logs import setup_logging
from ..train.run import run_training
from .assets import DEMO_CONFIG, ensure_demo_assets


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Build the demo's assets where they are missing and train on them; returns what
    :func:`~musicgen_lora.train.run.run_training` returns. Bad input exits with one ``error:`` line (status 2).

    Args:
        argv: empty, or only ``--debug`` (full tracebacks): the demo takes no options.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    setup_logging()
    with exit_on_user_error(argv):
        options = [word for word in argv if word != "--debug"]
        if options:
            raise UserError(
                f"{program_name('musicgen-lora demo')} takes no options (got {options[0]!r}); for your own run use: "
                "musicgen-lora train CONFIG.json"
            )
        parsed = parse_config(argv, defaults=DEMO_CONFIG)
        ensure_demo_assets(parsed)
        return run_training(parsed)
