"""Fixtures of the studio's tests: a Studio over a temporary projects folder, and one real training run through it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from musicgen_lora.studio.handlers import Studio
from musicgen_lora.studio.project import RunForm

RUN_STEPS = 6


def wait_until(condition, timeout: float, what: str, poll: float = 0.05):
    """Poll ``condition()`` until it returns something truthy (returned), failing with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def tiny_form(model_dir: Path, dataset: Path, /, **changes) -> RunForm:
    """A form for a quick run on the tiny model (4 clips, 6 steps, a checkpoint and a render every 3 steps)."""
    values = {
        "base_model": str(model_dir),
        "dataset": str(dataset),
        "steps": RUN_STEPS,
        "epochs": 1,
        "learning_rate": 3e-3,
        "rank": 4,
        "batch_size": 4,
        "sample_prompts": "lofi hip hop, piano",
        "sample_every_steps": 3,
        "save_steps": 3,
        "logging_steps": 2,
        "sample_seconds": 0.5,
        "clip_seconds": 2,
        "accumulation": 1,
        "extra_json": json.dumps({"max_train_samples": 4, "seed": 0}),
    }
    values.update(changes)
    return RunForm(**values)


@pytest.fixture(scope="session")
def studio_run(tmp_path_factory, tiny_model_dir, corpus_dir) -> dict:
    """A project trained to the end by ``finetune_musicgen.py`` started from the studio (as the Start button does)."""
    studio = Studio(tmp_path_factory.mktemp("studio-projects"))
    form = tiny_form(tiny_model_dir, corpus_dir)
    message = studio.start_training("tiny", form)
    assert message.startswith("Training started"), message
    project = studio.project("tiny")
    state = studio.runs.wait(project.folder, timeout=600)
    log = Path(state.log).read_text(encoding="utf-8")
    assert state.returncode == 0, log[-3000:]
    return {"studio": studio, "project": project, "state": state, "form": form, "log": log}
