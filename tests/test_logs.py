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
from musicgen_lora.prepare.cli import main as prepare_main

from .conftest import base_argv


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


BAR_MARKS = ("it/s]", "examples/s]", "%|")  # what any tqdm bar prints


def test_no_bar_of_the_preparation_reaches_a_file_with_disable_tqdm(tiny_model_dir, corpus_dir, tmp_path, capfd):
    # loading weights, encoding, cutting chunks and evaluation windows, saving the splits: every bar of prepare
    options = ["--chunk_long_tracks", "true", "--max_duration_in_seconds", "1", "--eval_split_percentage", "25"]
    argv = base_argv(tiny_model_dir, corpus_dir, tmp_path / "out", tmp_path / "cache") + options
    prepare_main(argv + ["--disable_tqdm", "false"])  # the last value of a flag wins
    shown = capfd.readouterr().err
    assert "Saving the dataset" in shown  # without disable_tqdm the libraries' bars do print (the check can fail)
    assert "Encoding audio with EnCodec" not in shown  # ours: only on a terminal
    report = prepare_main(base_argv(tiny_model_dir, corpus_dir, tmp_path / "again", tmp_path / "cache2") + options)
    assert report["splits"]["eval"]["examples"] > 0  # chunks cut, evaluation windows cut, splits saved: no bar
    err = capfd.readouterr().err
    assert not [mark for mark in BAR_MARKS if mark in err], err[-2000:]
