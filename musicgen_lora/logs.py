"""Logging for the command-line tools: our messages at INFO, libraries at WARNING; LOGLEVEL overrides both."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import datasets
import huggingface_hub
import transformers
from tqdm.auto import tqdm


def setup_logging() -> None:
    """Configure logging once for a command-line run (LOGLEVEL=DEBUG also enables tracebacks, see errors.py)."""
    level = os.environ.get("LOGLEVEL", "INFO").upper()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=level)
    logging.getLogger("musicgen_lora").setLevel(level)
    library_level = level if level == "DEBUG" else "WARNING"
    transformers.utils.logging.set_verbosity(logging.getLevelName(library_level))
    datasets.utils.logging.set_verbosity(logging.getLevelName(library_level))


def apply_process_log_level(training: transformers.TrainingArguments) -> None:
    """Our messages at ``log_level`` on the process that logs (the main one) and ``log_level_replica`` on the others
    (default "warning": under several processes only the main one logs INFO); "passive" keeps the level as it is.
    Trainer sets transformers' own verbosity from the same two options."""
    name = training.log_level if training.should_log else training.log_level_replica
    if name != "passive":
        logging.getLogger("musicgen_lora").setLevel(name.upper())


def progress(**kwargs: Any) -> Any:
    """A ``tqdm.auto`` progress bar (a widget in notebooks): hidden while bars are off (``disable_tqdm``, see
    :func:`progress_bars`) and when the output is not a terminal; ``disable=True`` hides it too."""
    hidden = kwargs.pop("disable", False) or not datasets.utils.is_progress_bar_enabled()
    return tqdm(disable=True if hidden else None, **kwargs)


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Progress bars on or off for a block (``disable_tqdm``): ours, which follow ``datasets``' switch, and those of
    ``datasets``, ``transformers`` (loading weights) and ``huggingface_hub`` (downloads, uploads)."""
    if enabled:
        yield
        return
    switches = [
        (datasets.utils.is_progress_bar_enabled, datasets.disable_progress_bars, datasets.enable_progress_bars),
        (
            transformers.utils.logging.is_progress_bar_enabled,
            transformers.utils.logging.disable_progress_bar,
            transformers.utils.logging.enable_progress_bar,
        ),
        (
            lambda: not huggingface_hub.utils.are_progress_bars_disabled(),
            huggingface_hub.utils.disable_progress_bars,
            huggingface_hub.utils.enable_progress_bars,
        ),
    ]
    turned_off = []
    for is_enabled, disable, enable in switches:
        if is_enabled():
            disable()
            turned_off.append(enable)
    try:
        yield
    finally:
        for enable in turned_off:
            enable()
