"""Nothing lost: killed runs resume exactly, half-written checkpoints are never resumed, old runs are not mixed in."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from finetune_musicgen import main
from musicgen_lora.config.arguments import LoraArguments
from musicgen_lora.errors import UserError
from musicgen_lora.train.checkpoints import is_complete, newest_complete_checkpoint, resolve_resume

from ..conftest import ROOT, base_argv

STEPS = 12


def run_argv(model_dir: Path, corpus_dir: Path, out: Path, cache: Path) -> list[str]:
    # Random windows (1 s of 3 s clips), conditioning dropout and LoRA dropout all draw random numbers: a resumed
    # run only matches if data order, RNG state, optimizer and scheduler all come back exactly.
    return base_argv(model_dir, corpus_dir, out, cache) + [
        "--max_steps",
        str(STEPS),
        "--per_device_train_batch_size",
        "2",
        "--learning_rate",
        "1e-2",
        "--max_duration_in_seconds",
        "1",
        "--logging_steps",
        "1",
        "--save_strategy",
        "steps",
        "--save_steps",
        "1",
        "--text_dropout_prob",
        "0.3",
        "--lora_dropout",
        "0.1",
    ]


def losses_by_step(output_dir: Path) -> dict[int, float]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return {r["step"]: r["loss"] for r in state["log_history"] if "loss" in r}


def test_a_run_killed_several_times_ends_exactly_like_an_uninterrupted_one(
    tiny_model_dir, corpus_dir, data_cache_dir, tmp_path
):
    reference = tmp_path / "reference"
    main(run_argv(tiny_model_dir, corpus_dir, reference, data_cache_dir))

    out = tmp_path / "killed"
    argv = run_argv(tiny_model_dir, corpus_dir, out, data_cache_dir)
    command = [sys.executable, str(ROOT / "finetune_musicgen.py"), *argv]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(0)
    resumed_at = []
    for attempt in range(3):
        target = rng.randint(2 + 3 * attempt, 3 + 3 * attempt)  # kill after this checkpoint appears ...
        process = subprocess.Popen(
            command,  # the same command every time: it continues from the newest complete checkpoint
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while not (out / f"checkpoint-{target}").exists():
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "training did not reach the kill point"
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.05))  # ... plus a little, so some kills land in the middle of a save
        process.send_signal(signal.SIGKILL)
        process.wait()
        resumed_at.append(int(newest_complete_checkpoint(out).name.split("-")[1]))
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert f"checkpoint-{resumed_at[-1]} detected, resuming" in finished.stderr
    adapter = (out / "adapter_model.safetensors").read_bytes()
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already finished with this config" in again.stderr, again.stderr[-3000:]
    assert (out / "adapter_model.safetensors").read_bytes() == adapter

    expected, got = load_file(reference / "adapter_model.safetensors"), load_file(out / "adapter_model.safetensors")
    assert expected.keys() == got.keys()
    assert max(float((expected[k] - got[k]).abs().max()) for k in expected) <= 1e-6
    reference_losses, resumed_losses = losses_by_step(reference), losses_by_step(out)
    assert sorted(resumed_losses) == list(range(1, STEPS + 1))
    for step in range(resumed_at[-1] + 1, STEPS + 1):  # logged after the last resume point
        assert resumed_losses[step] == pytest.approx(reference_losses[step], abs=1e-6), step


def make_checkpoint(folder: Path, state: str | None, weights: bool = True, truncate: bool = False) -> Path:
    folder.mkdir(parents=True)
    if state is not None:
        (folder / "trainer_state.json").write_text(state)
    if weights:
        save_file({"lora_A": torch.zeros(4, 8)}, str(folder / "adapter_model.safetensors"))
    if truncate:  # a save cut short (disk full, a kill): the header promises more bytes than the file holds
        weights_file = folder / "adapter_model.safetensors"
        weights_file.write_bytes(weights_file.read_bytes()[:-16])
    return folder


def test_resume_true_takes_the_newest_complete_checkpoint(tmp_path):
    make_checkpoint(tmp_path / "checkpoint-2", "{}")
    make_checkpoint(tmp_path / "checkpoint-10", "{}")
    make_checkpoint(tmp_path / "checkpoint-11", '{"log_hist')  # killed while writing its state
    make_checkpoint(tmp_path / "checkpoint-12", None)  # killed before writing its state
    make_checkpoint(tmp_path / "checkpoint-13", "{}", weights=False)
    make_checkpoint(tmp_path / "checkpoint-14", "{}", truncate=True)  # its weights damaged
    garbage = make_checkpoint(tmp_path / "checkpoint-15", "{}") / "adapter_model.safetensors"
    garbage.write_bytes(b"\xff" * 64)  # a header length of exabytes: refused without reading it
    assert resolve_resume(True, tmp_path) == str(tmp_path / "checkpoint-10")  # numeric order: 10 > 2
    assert not is_complete(tmp_path / "checkpoint-15")
    assert not is_complete(tmp_path / "checkpoint-14")
    with pytest.raises(UserError, match="checkpoint-14' is incomplete or damaged"):
        resolve_resume(str(tmp_path / "checkpoint-14"), tmp_path)
    assert not is_complete(tmp_path / "checkpoint-11")
    with pytest.raises(UserError, match="checkpoint-12' is incomplete or damaged"):
        resolve_resume(str(tmp_path / "checkpoint-12"), tmp_path)
    with pytest.raises(UserError, match="holds no complete checkpoint"):
        resolve_resume(True, tmp_path / "empty")
    assert resolve_resume(None, tmp_path) is None and resolve_resume(False, tmp_path) is None


def test_the_same_command_again_reports_a_finished_run_and_another_config_is_refused(trained_run, capsys):
    out = Path(trained_run["output_dir"])
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = main(
        trained_run["argv"] + ["--logging_steps", "1", "--disable_tqdm", "false"]
    )  # options that shape nothing
    assert again["already_finished"] and again["model"] is None
    assert again["train"]["train_loss"] == pytest.approx(trained_run["train"]["train_loss"])
    assert again["samples"] == sorted(trained_run["samples"])
    with pytest.raises(SystemExit) as stopped:
        main(trained_run["argv"] + ["--max_steps", "1", "--lora_r", "2"])
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert stopped.value.code == 2
    default_rank = LoraArguments().lora_r
    assert f"holds a finished run with another config (lora_r: {default_rank} -> 2; max_steps: 40 -> 1)" in message
    assert "lora_r cannot change in a run that continues" in message and "overwrite_output_dir true" in message
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing touched


def test_a_run_without_a_checkpoint_starts_over_and_a_stopped_one_continues(
    tiny_model_dir, corpus_dir, data_cache_dir, tmp_path, caplog
):
    out = tmp_path / "run"
    argv = base_argv(tiny_model_dir, corpus_dir, out, data_cache_dir) + ["--max_train_samples", "2", "--max_steps", "4"]
    argv += ["--per_device_train_batch_size", "2", "--save_strategy", "steps", "--save_steps", "2"]
    out.mkdir()
    (out / "finetune_config.json").write_text(json.dumps({"lora_r": 64}))  # a run that failed before any checkpoint
    main(argv)  # another config, but nothing to lose: it starts over
    assert (
        not (out / "previous-run").exists()
        and json.loads((out / "finetune_config.json").read_text())["lora_r"] == LoraArguments().lora_r
    )
    reference = load_file(out / "adapter_model.safetensors")

    # as if the machine went away after checkpoint-2: the same command continues from there and ends the same
    shutil.rmtree(out / "checkpoint-4")
    for name in ("adapter_model.safetensors", "train_results.json", "trainer_state.json"):
        (out / name).unlink()
    with caplog.at_level("INFO"):
        main(argv)
    assert "checkpoint-2 detected, resuming" in caplog.text
    got = load_file(out / "adapter_model.safetensors")
    assert max(float((got[k] - reference[k]).abs().max()) for k in reference) <= 1e-6


def test_overwrite_output_dir_removes_the_old_checkpoints(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path):
    out = tmp_path / "run"
    common = base_argv(tiny_model_dir, corpus_dir, out, data_cache_dir) + [
        "--max_train_samples",
        "2",
        "--per_device_train_batch_size",
        "2",
        "--save_strategy",
        "steps",
    ]
    main(common + ["--max_steps", "3", "--save_steps", "1"])
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    main(common + ["--max_steps", "2", "--save_steps", "2", "--overwrite_output_dir", "true"])
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    assert json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["max_steps"] == 2


def test_rotation_keeps_the_best_and_the_newest(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path):
    from .test_training import split_corpus

    dataset = split_corpus(corpus_dir, tmp_path / "split")
    out = tmp_path / "run"
    result = main(
        base_argv(tiny_model_dir, dataset, out, data_cache_dir)
        + [
            "--eval_split_name",
            "validation",
            "--eval_strategy",
            "steps",
            "--eval_steps",
            "1",
            "--save_strategy",
            "steps",
            "--save_steps",
            "1",
            "--save_total_limit",
            "2",
            "--max_steps",
            "6",
            "--per_device_train_batch_size",
            "3",
            "--learning_rate",
            "5e-2",
            "--load_best_model_at_end",
            "true",
            "--metric_for_best_model",
            "eval_loss",
        ]
    )
    state = json.loads((out / "trainer_state.json").read_text())
    best = Path(state["best_model_checkpoint"])
    kept = sorted(p.name for p in out.glob("checkpoint-*"))
    assert best.name in kept and "checkpoint-6" in kept and len(kept) <= 2
    assert (out / "best" / "adapter_model.safetensors").read_bytes() == (
        best / "adapter_model.safetensors"
    ).read_bytes()
    assert (out / "best" / "tokenizer.json").is_file()  # loadable on its own
    evals = {r["step"]: r["eval_loss"] for r in state["log_history"] if "eval_loss" in r and r["step"] <= 6}
    assert int(best.name.split("-")[1]) == min(evals, key=evals.get)
    assert result["eval"]["eval_loss"] == pytest.approx(min(evals.values()), rel=1e-6)  # final = best weights


def test_a_failed_save_leaves_no_partial_checkpoint_and_says_so(
    tiny_model_dir, corpus_dir, data_cache_dir, tmp_path, monkeypatch, capsys
):
    import errno

    import transformers.trainer

    out = tmp_path / "full-disk"
    original = transformers.trainer.Trainer._save_rng_state
    calls = []

    def fill_disk(self, output_dir):
        calls.append(output_dir)
        if len(calls) == 2:  # the second checkpoint: its weights are written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, output_dir)

    monkeypatch.setattr(transformers.trainer.Trainer, "_save_rng_state", fill_disk)
    with pytest.raises(SystemExit):
        main(
            base_argv(tiny_model_dir, corpus_dir, out, data_cache_dir)
            + [
                "--max_steps",
                "4",
                "--save_strategy",
                "steps",
                "--save_steps",
                "1",
                "--max_train_samples",
                "2",
                "--per_device_train_batch_size",
                "2",
            ]
        )
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("error: disk full while saving") and "checkpoint-1" in message
    assert is_complete(out / "checkpoint-1") and not (out / "checkpoint-2").exists()
    weights = load_file(out / "checkpoint-1" / "adapter_model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())


@pytest.mark.slow
def test_a_full_disk_in_torch_save_leaves_no_partial_checkpoint_and_names_the_one_to_continue_from(
    tiny_model_dir, corpus_dir, data_cache_dir, tmp_path, monkeypatch, capsys
):
    """TB1 (2026-12-07): a full disk makes torch.save raise RuntimeError (not OSError) after the adapter of checkpoint-2
    was written; the partial folder goes, one line names checkpoint-1, and the same command continues from it."""
    out = tmp_path / "full-disk"
    real_save = torch.save

    def full_disk(obj, path, *args, **kwargs):
        if "checkpoint-2" in str(path):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 207232 vs 207120")
        return real_save(obj, path, *args, **kwargs)

    argv = base_argv(tiny_model_dir, corpus_dir, out, data_cache_dir) + [
        "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1", "--max_train_samples", "2",
        "--per_device_train_batch_size", "2",
    ]  # fmt: skip
    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", full_disk)
        with pytest.raises(SystemExit) as stopped:
            main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "error: saving failed ([enforce fail at inline_container.cc:672] . unexpected pos 207232 vs 207120; is the "
        f"disk full?) for '{out / 'checkpoint-2'}' (its partial folder was removed); free some space (or lower "
        f"save_total_limit), then run the same command again to continue from '{out / 'checkpoint-1'}'"
    )
    assert not (out / "checkpoint-2").exists() and is_complete(out / "checkpoint-1")
    assert main(argv)["log_history"][-1]["step"] == 2  # the same command continued from checkpoint-1 to the end
