"""The optimizer-step count of a run, and the warning before training when it is below the recipe's floor."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from accelerate.data_loader import BatchSamplerShard
from torch.utils.data import BatchSampler, SequentialSampler
from transformers import TrainingArguments

from finetune_musicgen import main
from musicgen_lora.train.optimizer_steps import MIN_OPTIMIZER_STEPS, planned_optimizer_steps
from musicgen_lora.train.trainer import MusicgenTrainer

from ..conftest import base_argv

PLANNED = re.compile(r"Only (\d+) optimizer steps planned")


def planned_in(messages: list[str]) -> list[int]:
    return [int(match.group(1)) for match in map(PLANNED.search, messages) if match]


def train_noting_warnings(argv: list[str], monkeypatch, caplog) -> dict:
    """Train in-process; returns the step counts warned before ``Trainer.train`` began (``before``), the warning
    messages of the whole run (``messages``) and the steps the Trainer took (``steps``)."""
    before: list[int] = []
    train = MusicgenTrainer.train

    def train_after_noting_the_warnings(self, *args, **kwargs):
        before.extend(planned_in(caplog.messages))
        return train(self, *args, **kwargs)

    monkeypatch.setattr(MusicgenTrainer, "train", train_after_noting_the_warnings)
    with caplog.at_level("WARNING", logger="musicgen_lora"):
        result = main(argv)
    state = json.loads((Path(result["output_dir"]) / "trainer_state.json").read_text(encoding="utf-8"))
    return {"before": before, "messages": list(caplog.messages), "steps": state["global_step"]}


def short_run(tiny_model_dir, corpus_dir, data_cache_dir, out: Path, *options: str) -> list[str]:
    """A run on the 8 clips of 3 s of the session corpus, 1 s windows, no samples: only the step count varies."""
    return base_argv(tiny_model_dir, corpus_dir, out, data_cache_dir) + [
        "--max_duration_in_seconds",
        "1",
        "--lora_dropout",
        "0",
        *options,
    ]


class StoppedBeforeTraining(Exception):
    """Raised where ``Trainer.train`` would have begun."""


def stop_before_training(monkeypatch, caplog) -> dict:
    """Make ``Trainer.train`` note the step counts warned so far (``warned``) and the number of optimizer steps the
    Trainer itself works out for the run (``trainer_steps``, from its own dataloader), then stop."""
    seen: dict = {}

    def note_and_stop(self, *args, **kwargs):
        seen["warned"] = planned_in(caplog.messages)
        seen["trainer_steps"] = self.set_initial_training_values(self.args, self.get_train_dataloader())[-1]
        raise StoppedBeforeTraining

    monkeypatch.setattr(MusicgenTrainer, "train", note_and_stop)
    return seen


@pytest.mark.slow
def test_a_run_of_few_steps_warns_before_training_with_the_count_the_trainer_then_takes(
    tiny_model_dir, corpus_dir, data_cache_dir, tmp_path, monkeypatch, caplog
):
    # 8 clips, batch 3 (a short last batch), accumulation 2 (a partial last group), 1.5 epochs (a fraction)
    options = ("--per_device_train_batch_size", "3", "--gradient_accumulation_steps", "2", "--num_train_epochs", "1.5")
    done = train_noting_warnings(
        short_run(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path / "run", *options), monkeypatch, caplog
    )
    assert done["before"] == [done["steps"]]  # warned once, before the first step, with the count then trained
    assert done["steps"] < MIN_OPTIMIZER_STEPS
    (warning,) = [message for message in done["messages"] if PLANNED.search(message)]
    assert "8 training examples at 6 a step (batch 3 x accumulation 2) for 1.5 epochs" in warning
    for fix in ("chunk_long_tracks", "gradient_accumulation_steps", "num_train_epochs", "max_steps", "Recipe"):
        assert fix in warning  # every way out is named


def test_max_steps_below_the_floor_warns_naming_max_steps(
    tiny_model_dir, corpus_dir, data_cache_dir, tmp_path, monkeypatch, caplog
):
    seen = stop_before_training(monkeypatch, caplog)
    argv = short_run(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path / "run", "--max_steps", "2")
    with caplog.at_level("WARNING", logger="musicgen_lora"), pytest.raises(StoppedBeforeTraining):
        main(argv + ["--chunk_long_tracks", "true"])
    assert seen["warned"] == [seen["trainer_steps"]] == [2]
    (warning,) = [message for message in caplog.messages if PLANNED.search(message)]
    assert "max_steps is 2" in warning and "raise max_steps" in warning and "chunk_long_tracks" not in warning


def test_a_run_of_enough_steps_does_not_warn(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path, monkeypatch, caplog):
    # 8 clips at 8 a step: one step an epoch, as many epochs as the floor has steps
    epochs = str(MIN_OPTIMIZER_STEPS)
    options = ("--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2", "--num_train_epochs", epochs)
    seen = stop_before_training(monkeypatch, caplog)
    with caplog.at_level("WARNING", logger="musicgen_lora"), pytest.raises(StoppedBeforeTraining):
        main(short_run(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path / "run", *options))
    assert seen["trainer_steps"] == MIN_OPTIMIZER_STEPS and seen["warned"] == []
    assert not planned_in(caplog.messages)


class Launched(TrainingArguments):
    """Training arguments as in one of ``processes`` launched processes (``world_size`` comes from the launcher's
    environment otherwise)."""

    processes = 1

    @property
    def world_size(self) -> int:
        return self.processes


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("processes", [1, 2, 3])
@pytest.mark.parametrize("examples", [1, 7, 16, 112])
def test_the_count_shares_batches_among_processes_as_accelerate_does(examples, processes, drop_last, tmp_path):
    """Several processes: accelerate's sharded batch sampler (what Trainer's dataloader becomes) gives each process
    its batches; the planned steps are the epochs times those batches grouped by the accumulation."""
    training = Launched(
        output_dir=str(tmp_path), per_device_train_batch_size=2, gradient_accumulation_steps=3, num_train_epochs=4,
        dataloader_drop_last=drop_last, use_cpu=True, report_to="none",
    )  # fmt: skip
    training.processes = processes
    batches = BatchSampler(SequentialSampler(range(examples)), batch_size=2, drop_last=drop_last)
    shard = BatchSamplerShard(batches, num_processes=processes, process_index=0, even_batches=True)
    assert planned_optimizer_steps(examples, training) == 4 * max(math.ceil(len(shard) / 3), 1)
