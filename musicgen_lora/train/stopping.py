"""Stopping on request: Ctrl-C (SIGINT) or SIGTERM (a preemptible machine being reclaimed) while training finishes
the current optimizer step, saves a complete checkpoint and ends the run with one line saying how to continue.

A second Ctrl-C stops at once (Python's usual KeyboardInterrupt; the last complete checkpoint is still there).
Under several processes every process of the launch receives the terminal's Ctrl-C and saves together.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal(TrainerCallback):
    """After a stop signal, the step's end saves a checkpoint and stops training (``signal_name`` says which)."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    @contextlib.contextmanager
    def listening(self) -> Iterator[None]:
        """Catch the stop signals for a block (only the main thread may set signal handlers; elsewhere: no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}

        def handle(number: int, frame: Any) -> None:
            if self.signal_name is not None:  # asked twice: stop now
                signal.signal(signal.SIGINT, signal.default_int_handler)
                raise KeyboardInterrupt
            self.signal_name = signal.Signals(number).name
            logger.warning(
                "%s received: saving a checkpoint after this step, then stopping (again: stop at once)",
                self.signal_name,
            )

        for number in STOP_SIGNALS:
            signal.signal(number, handle)
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        if self.signal_name is not None:
            control.should_save = True
            control.should_training_stop = True
