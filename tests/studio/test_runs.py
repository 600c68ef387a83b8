"""The run manager (one run per project, stop, resume, crashes, a second studio) and the live progress read from a
real training run's log."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import soundfile as sf

from musicgen_lora.errors import UserError
from musicgen_lora.studio.handlers import samples_of, status_line
from musicgen_lora.studio.progress import START_MARKER, exact_history, loss_history, parse_log, read_log
from musicgen_lora.studio.runs import LOCK_NAME, RunManager

from .conftest import RUN_STEPS, tiny_form, wait_until

# A stand-in for finetune_musicgen.py with the behaviour the studio relies on: Trainer's bar and log dicts, a
# checkpoint and exit status 130 on SIGINT, or an "error: ..." line and status 2.
FAKE_TRAINING = textwrap.dedent(
    """
    import json, signal, sys
    from pathlib import Path

    run, mode = Path(sys.argv[1]), sys.argv[2]
    first = 1 + max([int(p.name.split("-")[1]) for p in run.glob("checkpoint-*")] or [0])
    if mode == "crash":
        print("  0%|          | 0/10 [00:00<?, ?it/s]", flush=True)
        message = "error: training stopped: the loss became NaN at step 1; lower learning_rate"
        print(message, file=sys.stderr, flush=True)
        sys.exit(2)
    step = first - 1

    def save_and_exit(*_):
        folder = run / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "adapter_model.safetensors").write_bytes((2).to_bytes(8, "little") + b"{}")  # empty, but whole
        history = [{"loss": 5.0 - s / 10, "step": s} for s in range(1, step + 1)]
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": history}))
        print(f"Saved {folder.name}; continue with --resume_from_checkpoint true", flush=True)
        sys.exit(130)

    signal.signal(signal.SIGINT, save_and_exit)
    for step in range(first, first + 2):
        print(f" {step * 10}%|#         | {step}/10 [00:0{step}<00:0{9 - step}, 1.00it/s]", end="\\r", flush=True)
        print("{'loss': '%.4g', 'ce_q1': '4.2', 'epoch': '0.1'}" % (5.0 - step / 10), flush=True)
    print("waiting", flush=True)
    signal.pause()
    """
)


@pytest.fixture
def fake(tmp_path) -> dict:
    script = tmp_path / "fake_training.py"
    script.write_text(FAKE_TRAINING)
    projects = tmp_path / "projects"
    folders = {name: projects / name for name in ("a", "b")}
    for folder in folders.values():
        (folder / "run").mkdir(parents=True)
    return {"script": str(script), **folders}


def _argv(fake: dict, project: str, mode: str = "wait") -> list[str]:
    return [sys.executable, fake["script"], str(fake[project] / "run"), mode]


def _log(state) -> str:
    return Path(state.log).read_text(encoding="utf-8")


def test_one_run_per_project_stop_saves_and_resume_continues(fake):
    runs, other_studio = RunManager(), RunManager()
    state = runs.start(fake["a"], "train", _argv(fake, "a"))
    wait_until(lambda: "waiting" in _log(state), 60, "the fake run to start")
    assert (fake["a"] / "studio" / LOCK_NAME).is_file()
    with pytest.raises(UserError, match="already going"):
        runs.start(fake["a"], "train", _argv(fake, "a"))  # a second tab, or a double click
    with pytest.raises(UserError, match="already going"):
        other_studio.start(fake["a"], "prepare", _argv(fake, "a"))  # another studio on the same folder
    assert other_studio.state(fake["a"]).running  # ... which sees the run
    other = runs.start(fake["b"], "train", _argv(fake, "b"))  # another project is free
    runs.stop(fake["a"])
    state = runs.wait(fake["a"], timeout=60)
    assert state.returncode == 130 and state.stopped and not state.running
    assert not (fake["a"] / "studio" / LOCK_NAME).exists()
    progress = read_log(Path(state.log))
    assert (
        status_line(state, progress, fake["a"] / "run")
        == "**Stopped** at step 2; checkpoint-2 is saved. Press *Resume* to continue."
    )
    with pytest.raises(UserError, match="nothing to stop"):
        runs.stop(fake["a"])

    resumed = runs.start(fake["a"], "train", _argv(fake, "a") + ["--resume_from_checkpoint", "true"], resume=True)
    assert resumed.fresh_since == state.fresh_since and len(resumed.history) == 1
    wait_until(lambda: _log(resumed).count("waiting") == 2, 60, "the resumed run to start")
    runs.stop(fake["a"])
    assert runs.wait(fake["a"], timeout=60).returncode == 130
    progress = read_log(Path(resumed.log))
    assert progress.starts == 2 and _log(resumed).count(START_MARKER) == 2  # one log for both starts
    assert progress.step == 4 and sorted(progress.train) == [1, 2, 3, 4]
    train, _ = loss_history(fake["a"] / "run", progress)
    assert [r["step"] for r in train] == [1, 2, 3, 4]  # checkpoint-4's exact values, then the log's
    assert train[0]["loss"] == pytest.approx(4.9)
    runs.stop(fake["b"])
    assert runs.wait(fake["b"], timeout=60).returncode == 130 and other.kind == "train"


def test_a_crash_is_reported_in_one_line_and_frees_the_project(fake):
    runs = RunManager()
    runs.start(fake["a"], "train", _argv(fake, "a", "crash"))
    state = runs.wait(fake["a"], timeout=60)
    assert state.returncode == 2 and not state.stopped
    line = status_line(state, read_log(Path(state.log)), fake["a"] / "run")
    assert (
        line
        == "**Training failed** (exit status 2): training stopped: the loss became NaN at step 1; lower learning_rate."
    )
    runs.start(fake["a"], "train", _argv(fake, "a", "crash"))  # the lock was released
    assert runs.wait(fake["a"], timeout=60).returncode == 2


def test_a_stale_lock_does_not_block_a_new_run(fake):
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    lock = fake["a"] / "studio" / LOCK_NAME
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": int(gone.stdout), "kind": "train", "started": 0}))
    runs = RunManager()
    runs.start(fake["a"], "train", _argv(fake, "a", "crash"))
    assert runs.wait(fake["a"], timeout=60).returncode == 2


def test_a_new_studio_finds_a_running_run_and_can_stop_it(fake):
    first = RunManager()
    state = first.start(fake["a"], "train", _argv(fake, "a"))
    wait_until(lambda: "waiting" in _log(state), 60, "the fake run to start")
    restarted = RunManager()  # the page was restarted while training went on
    assert restarted.state(fake["a"]).running
    restarted.stop(fake["a"])
    assert first.wait(fake["a"], timeout=60).returncode == 130


# ---------------------------------------------------------------------------------- a real training run


def test_the_log_gives_progress_and_the_losses_trainer_state_records(studio_run):
    progress = parse_log(studio_run["log"])
    assert (progress.step, progress.total) == (RUN_STEPS, RUN_STEPS) and progress.remaining_s == 0
    assert progress.error is None and progress.summary["train_loss"] > 0
    _, history = exact_history(studio_run["project"].run_dir)
    exact = {record["step"]: record for record in history if "loss" in record}
    assert sorted(progress.train) == sorted(exact) == [2, 4, 6]
    for step, logged in progress.train.items():  # the log rounds to 4 significant digits
        for key in ("loss", "ce_q1", "ce_q2", "ce_q3", "ce_q4", "grad_norm"):
            assert logged[key] == pytest.approx(exact[step][key], rel=1e-3), (step, key)
    train, _ = loss_history(studio_run["project"].run_dir, progress, since=studio_run["state"].fresh_since)
    assert [r["loss"] for r in train] == [exact[s]["loss"] for s in (2, 4, 6)]  # exact values once saved


def test_the_train_view_shows_the_finished_run_its_curves_and_samples(studio_run):
    view = studio_run["studio"].train_view("tiny")
    assert not view.running and view.status.startswith(f"**Finished**: {RUN_STEPS} steps")
    assert sorted(set(view.losses["curve"])) == ["train loss"] and list(view.losses["step"]) == [2.0, 4.0, 6.0]
    assert sorted(set(view.codebooks["curve"])) == ["q1", "q2", "q3", "q4"]
    assert [label for label, _ in view.samples] == [
        f"{stage} · lofi hip hop, piano" for stage in ("base", "step-3", "step-6", "final")
    ]
    for _, path in view.samples:
        assert sf.info(path).duration == pytest.approx(0.5, abs=0.05)
    assert samples_of(studio_run["project"].run_dir) == view.samples


def test_a_second_start_is_refused_until_start_over_is_ticked(studio_run):
    message = studio_run["studio"].start_training("tiny", studio_run["form"])
    assert message.startswith("**Error:** this project already holds a run (checkpoint-6)"), message


def test_the_data_view_lists_every_file_with_what_preparation_measured(studio_run, corpus_dir):
    view = studio_run["studio"].data_view("tiny")
    assert "4 files found, 4 read, 0 left out" in view.summary  # max_train_samples: 4
    assert list(view.tracks["file"]) == sorted(p.name for p in corpus_dir.glob("*.wav"))
    assert list(view.tracks["status"]) == ["kept"] * 4 + ["not used (max_train_samples)"] * 4
    assert view.tracks["bpm"][:4].notna().all() and view.tracks["bpm"][4:].isna().all()
    first = json.loads((corpus_dir / "metadata.jsonl").read_text().splitlines()[0])
    assert view.tracks["caption"][0] == first["text"]
    assert view.tracks["training caption"][0].startswith(first["text"])  # own caption first, as in training
    assert view.lengths["clips"].sum() == 4 and view.keys["tracks"].sum() == 4


def test_stop_then_resume_a_real_run_continues_from_its_checkpoint(studio_run, tiny_model_dir, corpus_dir):
    studio = studio_run["studio"]
    form = tiny_form(tiny_model_dir, corpus_dir, steps=40, save_steps=2, logging_steps=1, sample_prompts="")
    assert studio.start_training("stopped", form).startswith("Training started")
    project = studio.project("stopped")
    state = studio.runs.state(project.folder)
    wait_until(lambda: read_log(Path(state.log)).step >= 3, 300, "three training steps")
    assert studio.stop_training("stopped").startswith("Stopping")
    state = studio.runs.wait(project.folder, timeout=120)
    assert state.stopped and state.returncode != 0
    view = studio.train_view("stopped")
    assert view.status.startswith("**Stopped** at step") and "is saved. Press *Resume* to continue." in view.status
    assert studio.resume_training("stopped").startswith("Resuming from checkpoint-")
    state = studio.runs.wait(project.folder, timeout=600)
    assert state.returncode == 0, Path(state.log).read_text()[-3000:]
    view = studio.train_view("stopped")
    assert view.status.startswith("**Finished**: 40 steps")
    assert list(view.losses["step"]) == [float(step) for step in range(1, 41)]  # one curve across both starts
