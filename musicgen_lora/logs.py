"""Logging for the command-line tools: our messages at INFO, libraries at WARNING; LOGLEVEL overrides both."""

from __future__ import annotations

import logging
import os

import datasets
import transformers


def setup_logging() -> None:
    """Configure logging once for a command-line run (LOGLEVEL=DEBUG also enables tracebacks, see errors.py)."""
    level = os.environ.get("LOGLEVEL", "INFO").upper()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=level)
    logging.getLogger("musicgen_lora").setLevel(level)
    library_level = level if level == "DEBUG" else "WARNING"
    transformers.utils.logging.set_verbosity(logging.getLevelName(library_level))
    datasets.utils.logging.set_verbosity(logging.getLevelName(library_level))
