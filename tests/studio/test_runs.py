"""The run manager (one run per project, stop, resume, crashes, a second studio) and the live progress read from a
real training run's log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import soundfile as sf

from musicgen_lora.errors import UserError
from musicgen_lora.studio.progress import START_MARKER, read_progress
from musicgen_lora.studio.runs import EXIT_NAME, LOCK_NAME, UNKNOWN_EXIT, RunManager
from musicgen_lora.studio.views import gallery, loss_frames, status_line

from .conftest import RUN_STEPS, tiny_form, wait_until

# A stand-in for the training command with the behaviour the studio relies on: progress.jsonl lines, a checkpoint and
# exit status 130 on SIGINT, an "error: ..." line and status 2, or a clean end (status 0, train_results.json).
FAKE_TRAINING = textwrap.dedent(
    """
    import json, signal, sys, time
    from pathlib import Path

    run, mode = Path(sys.argv[1]), sys.argv[2]
    first = 1 + max([int(p.name.split("-")[1]) for p in run.glob("checkpoint-*")] or [0])
    progress = run / "progress.jsonl"

    def line(event, step, **values):
        with progress.open("a") as out:
            record = {"event": event, "time": time.time(), "step": step, "max_steps": 10, **values}
            out.write(json.dumps(record) + "\\n")

    if mode == "crash":
        message = "error: training stopped: the loss became NaN at step 1; lower learning_rate"
        print(message, file=sys.stderr, flush=True)
        sys.exit(2)
    step = first - 1

    def save_and_exit(*_):
        folder = run / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "adapter_model.safetensors").write_bytes((2).to_bytes(8, "little") + b"{}")  # empty, but whole
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        line("end", step, stopped=True, seconds=1.0)
        print(f"Saved {folder.name}; continue with --resume_from_checkpoint true", flush=True)
        sys.exit(130)

    signal.signal(signal.SIGINT, save_and_exit)
    line("start", step, resumed_from=step or None, device={"kind": "cpu", "name": "test", "memory_total": 2**33})
    for step in range(first, first + 2):
        line("step", step, seconds=float(step), memory_used=2**30, memory_peak=None)
        line("log", step, loss=5.0 - step / 10, ce_q1=4.2, seconds=float(step))
    if mode == "finish":
        (run / "train_results.json").write_text("{}")
        line("end", step, stopped=False, seconds=3.0)
        sys.exit(0)
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


def _status(state, fake, project="a") -> str:
    run = fake[project] / "run"
    return status_line(state, read_progress(run), run, "a/run")[0]


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
    assert _status(state, fake) == "**Stopped** at step 2; checkpoint-2 is saved. Press *Resume* to continue."
    with pytest.raises(UserError, match="nothing to stop"):
        runs.stop(fake["a"])

    resumed = runs.start(
        fake["a"], "train", _argv(fake, "a") + ["--resume_from_checkpoint", "true"], resume=True,
        resumed_from="checkpoint-2",
    )  # fmt: skip
    assert resumed.fresh_since == state.fresh_since and len(resumed.history) == 1
    wait_until(lambda: _log(resumed).count("waiting") == 2, 60, "the resumed run to start")
    runs.stop(fake["a"])
    assert runs.wait(fake["a"], timeout=60).returncode == 130
    assert _log(resumed).count(START_MARKER) == 2  # one log for both starts
    progress = read_progress(fake["a"] / "run")
    assert progress.step == 4 and [r["step"] for r in progress.train] == [1, 2, 3, 4]  # one curve across both starts
    assert progress.train[0]["loss"] == pytest.approx(4.9)
    wait_until(lambda: "waiting" in _log(other), 60, "the other project's run to start")  # its handler is set
    runs.stop(fake["b"])
    assert runs.wait(fake["b"], timeout=60).returncode == 130 and other.kind == "train"


def test_a_crash_is_reported_in_one_line_and_frees_the_project(fake):
    runs = RunManager()
    runs.start(fake["a"], "train", _argv(fake, "a", "crash"))
    state = runs.wait(fake["a"], timeout=60)
    assert state.returncode == 2 and not state.stopped
    assert _status(state, fake) == (
        "**Training failed** (exit status 2): training stopped: the loss became NaN at step 1; lower *Learning rate*."
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


def test_a_run_that_ends_while_another_studio_watches_keeps_its_exit_status(fake):
    """The studio that started a run was stopped (its process gone, as after SIGTERM); a new one finds the run ended:
    it reads the status the run's parent wrote, so a finished run says Finished (it used to say failed, -1)."""
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from musicgen_lora.studio.runs import RunManager
        state = RunManager().start(Path({str(fake["a"])!r}), "train", {_argv(fake, "a", "finish")!r})
        print(state.pid)
        """
    )  # a studio process that starts the run and exits at once, as a stopped studio leaves its runs going
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    restarted = RunManager()
    state = wait_until(lambda: (found := restarted.state(fake["a"])).returncode is not None and found, 60, "the end")
    assert state.returncode == 0 and _status(state, fake).startswith("**Finished**: 2 steps")
    assert json.loads((fake["a"] / "studio" / EXIT_NAME).read_text())["returncode"] == 0


def test_a_run_whose_parent_vanished_says_so(fake):
    runs = RunManager()
    state = runs.start(fake["a"], "train", _argv(fake, "a"))
    wait_until(lambda: "waiting" in _log(state), 60, "the fake run to start")
    os.killpg(state.pid, signal.SIGKILL)  # the parent and the command, with no chance to write a status
    state = runs.wait(fake["a"], timeout=60)
    assert state.returncode == UNKNOWN_EXIT
    assert "ended while no studio was watching, without an exit status" in _status(state, fake)


# ---------------------------------------------------------------------------------- a real training run


def test_the_progress_file_gives_the_curves_and_the_samples(studio_run):
    run_dir = studio_run["project"].run_dir
    progress = read_progress(run_dir, since=studio_run["state"].fresh_since)
    assert (progress.step, progress.max_steps) == (RUN_STEPS, RUN_STEPS) and progress.end["stopped"] is False
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    exact = {record["step"]: record for record in history if "loss" in record}
    assert [r["step"] for r in progress.train] == sorted(exact) == [2, 4, 6]
    for record in progress.train:  # Trainer's own values, not the log's rounded ones
        for key in ("loss", "ce_q1", "ce_q2", "ce_q3", "ce_q4", "grad_norm"):
            assert record[key] == exact[record["step"]][key], (record["step"], key)
    losses, codebooks = loss_frames(progress)
    assert list(losses["step"]) == [2, 4, 6] and sorted(set(codebooks["curve"])) == ["q1", "q2", "q3", "q4"]
    rows = gallery(progress, run_dir)
    assert [prompt for prompt, _ in rows] == ["lofi hip hop, piano"]
    assert [label for label, _ in rows[0][1]] == ["base", "step 3", "step 6", "final"]
    for _, path in rows[0][1]:
        assert sf.info(path).duration == pytest.approx(0.5, abs=0.05)


def test_the_train_view_shows_the_finished_run_its_curves_and_samples(studio_run):
    view = studio_run["studio"].train_view("tiny")
    assert not view.running and view.status.startswith(f"**Finished**: {RUN_STEPS} steps in ")
    assert "The adapter is in `tiny/run`" in view.status and view.fraction == 1.0
    assert sorted(set(view.losses["curve"])) == ["train loss"] and list(view.losses["step"]) == [2.0, 4.0, 6.0]
    assert sorted(set(view.codebooks["curve"])) == ["q1", "q2", "q3", "q4"]
    assert view.device.startswith("**Device**: CPU")


def test_start_and_resume_on_a_finished_run_say_what_to_do(studio_run):
    studio = studio_run["studio"]
    message = studio.start_training("tiny", studio_run["form"])
    assert message.startswith(f"**Error:** this project's run has finished ({RUN_STEPS} steps); to train a new one, "
                              "tick *Start over*"), message  # fmt: skip
    message = studio.resume_training("tiny")
    assert message.startswith(f"**Error:** the run has finished ({RUN_STEPS} steps): there is nothing to resume")


def test_the_data_view_lists_every_file_with_what_preparation_measured(studio_run, corpus_dir):
    view = studio_run["studio"].data_view("tiny")
    assert "4 files found, 4 read, 0 left out" in view.summary  # max_train_samples: 4
    assert list(view.tracks["file"]) == sorted(p.name for p in corpus_dir.glob("*.wav"))
    assert list(view.tracks["status"]) == ["kept"] * 4 + ["not used (max_train_samples)"] * 4
    assert view.tracks["bpm"][:4].notna().all() and view.tracks["bpm"][4:].isna().all()
    first = json.loads((corpus_dir / "metadata.jsonl").read_text().splitlines()[0])
    assert view.tracks["caption"][0] == first["text"]
    assert view.tracks["training caption"][0].startswith(first["text"])  # own caption first, as in training
    assert view.lengths["clips"].sum() == 4 and view.keys["tracks"].sum() == 4  # only the kept files' keys


def test_stop_then_resume_a_real_run_continues_from_its_checkpoint(studio_run, tiny_model_dir, corpus_dir):
    studio = studio_run["studio"]
    form = tiny_form(tiny_model_dir, corpus_dir, steps=40, save_steps=2, logging_steps=1, sample_prompts="")
    assert studio.resume_training("stopped").startswith("**Error:** no checkpoint to resume from yet; one is saved")
    assert studio.start_training("stopped", form).startswith("Training started")
    project = studio.project("stopped")
    assert studio.resume_training("stopped") == (
        "**Error:** a train run is going in this project; it cannot be resumed while it runs"
    )
    wait_until(lambda: read_progress(project.run_dir).step >= 3, 300, "three training steps")
    assert studio.stop_training("stopped").startswith("Stopping")
    state = studio.runs.wait(project.folder, timeout=120)
    assert state.stopped and state.returncode != 0
    view = studio.train_view("stopped")
    assert view.status.startswith("**Stopped** at step") and "is saved. Press *Resume* to continue." in view.status
    message = studio.resume_training("stopped")
    assert message.startswith("Resuming from checkpoint-")
    assert studio.train_view("stopped").status.startswith(f"**Resuming from {message.split()[-1][:-1]}**")
    state = studio.runs.wait(project.folder, timeout=600)
    assert state.returncode == 0, Path(state.log).read_text()[-3000:]
    view = studio.train_view("stopped")
    assert view.status.startswith("**Finished**: 40 steps")
    assert list(view.losses["step"]) == [float(step) for step in range(1, 41)]  # one curve across both starts
