"""``python -m musicgen_lora.prepare CONFIG.json [--key value ...]``: prepare a run's data and print its report."""

from __future__ import annotations

import sys
from typing import Any

from ..config.parsing import parse_config
from ..errors import exit_on_user_error
from ..logs import setup_logging
from .pipeline import prepare_command
from .report import summary

PROG = "python -m musicgen_lora.prepare"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else list(argv)
    setup_logging()
    with exit_on_user_error(argv):
        report = prepare_command(parse_config(argv, prog=PROG))
        print(summary(report))
        return report
