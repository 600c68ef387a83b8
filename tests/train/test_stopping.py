"""Ctrl-C or SIGTERM during training: the step's end saves a checkpoint and the run stops with one line naming it and
exit status 130 (README, *Never lose work*); a signal after the last step names no checkpoint that is not there."""

from __future__ import annotations

import os
import signal

import pytest
from transformers import TrainerCallback

from finetune_musicgen import main
from musicgen_lora.train import run

from ..conftest import base_argv


class SignalAt(TrainerCallback):
    """Sends SIGTERM to this process at the end of ``step`` (None: when training ends), as a scheduler would."""

    def __init__(self, step: int | None) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_train_end(self, args, state, control, **kwargs):
        if self.step is None:
            os.kill(os.getpid(), signal.SIGTERM)


def stopped_run(step, tiny_model_dir, corpus_dir, cache, out, monkeypatch, capsys) -> str:
    original = run.build_trainer

    def with_signal(*args, **kwargs):
        trainer = original(*args, **kwargs)
        trainer.add_callback(SignalAt(step))
        return trainer

    monkeypatch.setattr(run, "build_trainer", with_signal)
    options = ["--max_steps", "3", "--per_device_train_batch_size", "2", "--max_duration_in_seconds", "1"]
    with pytest.raises(SystemExit) as stopped:
        main(base_argv(tiny_model_dir, corpus_dir, out, cache) + options)  # save_strategy "no": only the stop saves
    assert stopped.value.code == 130
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    return line


def test_sigterm_saves_a_checkpoint_and_names_it(
    tiny_model_dir, corpus_dir, data_cache_dir, tmp_path, monkeypatch, capsys
):
    line = stopped_run(1, tiny_model_dir, corpus_dir, data_cache_dir, tmp_path / "out", monkeypatch, capsys)
    assert (tmp_path / "out" / "checkpoint-1" / "adapter_model.safetensors").is_file()
    assert line.startswith("error: stopped by SIGTERM at step 1 of 3; the checkpoint is '") and "checkpoint-1'" in line
    assert line.endswith("run the same command again to continue from it")


def test_a_signal_after_the_last_step_names_no_checkpoint(
    tiny_model_dir, corpus_dir, data_cache_dir, tmp_path, monkeypatch, capsys
):
    line = stopped_run(None, tiny_model_dir, corpus_dir, data_cache_dir, tmp_path / "out", monkeypatch, capsys)
    assert not list((tmp_path / "out").glob("checkpoint-*"))
    assert "no checkpoint was written" in line and "continue from it" not in line, line
