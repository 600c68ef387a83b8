"""Logging for the command-line tools: our messages at INFO, libraries at WARNING; LOGLEVEL overrides both."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

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


def progress(**kwargs: Any) -> Any:
    """A ``datasets`` progress bar: hidden when datasets' bars are disabled (``disable_tqdm``, see
    :func:`musicgen_lora.logs.progress_bars`) or when the output is not a terminal."""
    return datasets.utils.tqdm(disable=None, **kwargs)


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """``datasets`` progress bars (and ours, which follow them) on or off for a block (``disable_tqdm``)."""
    was_enabled = datasets.utils.is_progress_bar_enabled()
    if was_enabled and not enabled:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled and not enabled:
            datasets.enable_progress_bars()
