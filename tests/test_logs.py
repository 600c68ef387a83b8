"""Logs and progress bars: log_level / log_level_replica decide what each process says, disable_tqdm silences every
library's bars for the block and puts them back after."""

from __future__ import annotations

import io
import logging

import datasets
import huggingface_hub.utils
import pytest
import transformers

from musicgen_lora.config.arguments import MusicgenTrainingArguments
from musicgen_lora.logs import apply_process_log_level, progress, progress_bars, setup_logging


@pytest.mark.parametrize(
    ("is_main", "options", "expected"),
    [
        (True, {}, logging.INFO),  # passive: what setup_logging chose
        (False, {}, logging.WARNING),  # replicas: warnings only, by default
        (True, {"log_level": "error"}, logging.ERROR),
        (False, {"log_level_replica": "debug"}, logging.DEBUG),
    ],
)
def test_each_process_logs_at_its_level(is_main, options, expected, tmp_path, monkeypatch):
    monkeypatch.setattr(MusicgenTrainingArguments, "should_log", property(lambda self: is_main))
    training = MusicgenTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", **options)
    setup_logging()
    ours = logging.getLogger("musicgen_lora")
    try:
        apply_process_log_level(training)
        assert ours.level == expected
    finally:
        setup_logging()  # the next command starts from INFO again


def test_disable_tqdm_silences_every_librarys_bars_and_restores_them():
    def states() -> tuple[bool, bool, bool]:
        return (
            datasets.utils.is_progress_bar_enabled(),
            transformers.utils.logging.is_progress_bar_enabled(),
            not huggingface_hub.utils.are_progress_bars_disabled(),
        )

    before = states()
    assert before == (True, True, True)
    with progress_bars(enabled=False):
        assert states() == (False, False, False)
    assert states() == before
    with progress_bars(enabled=True):
        assert states() == before


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_our_bars_show_on_a_terminal_and_follow_disable_tqdm():
    terminal = _Terminal()
    with progress(total=2, desc="Encoding", file=terminal) as bar:
        bar.update(2)
    assert "Encoding" in terminal.getvalue() and "2/2" in terminal.getvalue()
    assert progress(total=2, file=io.StringIO()).disable  # a file or a pipe: no bar
    with progress_bars(enabled=False):
        assert progress(total=2, file=_Terminal()).disable
