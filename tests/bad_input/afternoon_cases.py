"""The new user's afternoon of 2026-12-07 (../shared/findings/new-user-afternoon-2026-12-07.md), the cases of
training, generate and push that ended in a traceback, an unclear line, or lost or changed earlier files: each now
one line naming the problem and the fix, exit status 2, every earlier file byte-identical. (The finding's id leads each
case's name; the cases that now succeed, such as resuming a finished run, are in tests/train/test_rerun_plans.py.)"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import peft.peft_model
import torch
from filelock import FileLock
from safetensors import SafetensorError

import musicgen_lora.generate.cli as generate_cli
from musicgen_lora.demo.tiny import save_tiny_musicgen
from musicgen_lora.generate.out_dir import LOCK_NAME

from .tool_cases import GENERATE, PUSH, generate
from .train_cases import TRAIN, config, flag
from .world import Case, World

# ------------------------------------------------------------------------------------------------ training


def _stopped_run(w: World) -> Path:
    """The earlier run as if it had stopped after a checkpoint-1 (its final results not written yet)."""
    checkpoint = w.run / "checkpoint-1"
    checkpoint.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (checkpoint / name).write_bytes((w.run / name).read_bytes())
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 1, "log_history": []}))
    (w.run / "train_results.json").unlink()
    return checkpoint


def _its_own_config(w: World, *words: str) -> list[str]:
    """The earlier run's own command again (its finetune_config.json), with ``words`` added."""
    return [str(w.run / "finetune_config.json"), "--output_dir", str(w.run), *words]


def _failing_save(w: World, target: str, error: Exception) -> None:
    """``target`` ("torch" or "safetensors") raises ``error`` when it writes into a checkpoint folder, as a full disk
    makes torch.save (the optimizer) or safetensors (the adapter) fail."""
    module, name = (torch, "save") if target == "torch" else (peft.peft_model, "safe_save_file")
    original = getattr(module, name)

    def save(obj: Any, path: Any, *args: Any, **kwargs: Any) -> Any:
        if "checkpoint-" in str(path):
            raise error
        return original(obj, path, *args, **kwargs)

    w.monkeypatch.setattr(module, name, save)


def _disk_full(target: str, error: Exception) -> Any:
    def argv(w: World) -> list[str]:
        _failing_save(w, target, error)
        return w.train("--save_strategy", "steps", "--save_steps", "1")

    return argv


TORCH_FULL = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 207232 vs 207120")
SAFETENSORS_FULL = SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

TRAIN_AFTERNOON: dict[str, Case] = {
    "UC4: resume_from_checkpoint names the run folder, which has no checkpoint": Case(
        TRAIN,
        lambda w: w.train("--resume_from_checkpoint", str(w.run)),
        r"resume_from_checkpoint names a run's folder, and '.*run' holds no complete checkpoint; start without it",
    ),
    "UC2: resume a checkpoint with another lora_r": Case(
        TRAIN,
        lambda w: w.train("--lora_r", "4", "--resume_from_checkpoint", str(_stopped_run(w))),
        r"checkpoint '.*checkpoint-1' holds weights trained with other LoRA options \(lora_r: 16 -> 4\), which cannot "
        r"change in a run that continues",
    ),
    "UC2: the same command with another lora_r on a stopped run does not suggest resume": Case(
        TRAIN,
        lambda w: (_stopped_run(w), _its_own_config(w, "--lora_r", "4"))[1],
        r"holds a run stopped at checkpoint-1 with another config \(lora_r: 16 -> 4\); .* lora_r cannot change in a "
        r"run that continues",
    ),
    "W2: resume another run's checkpoint at max_steps": Case(
        TRAIN,
        lambda w: w.train("--resume_from_checkpoint", str(w.other_checkpoint)),
        r"checkpoint '.*checkpoint-1' is at step 1 and max_steps is 1: nothing is left to train from it; raise "
        r"max_steps to train longer",
    ),
    "W2: resume this run's checkpoint at max_steps, by its path, before the run finished": Case(
        TRAIN,
        lambda w: w.train("--resume_from_checkpoint", str(_stopped_run(w))),
        r"checkpoint '.*run/checkpoint-1' is at step 1 and max_steps is 1: nothing is left to train from it",
    ),
    "UC9: resume_from_checkpoint false on a stopped run": Case(
        TRAIN,
        lambda w: (_stopped_run(w), _its_own_config(w, "--resume_from_checkpoint", "false"))[1],
        r"resume_from_checkpoint is false, but output_dir .* holds a run stopped at checkpoint-1 with this config; "
        r"leave resume_from_checkpoint out to continue it",
    ),
    "UC9: JSON false for resume_from_checkpoint on a stopped run": Case(
        TRAIN,
        lambda w: (_stopped_run(w), [config(w, "stop.json", **_saved(w), resume_from_checkpoint=False)])[1],
        r"resume_from_checkpoint is false, but output_dir",
    ),
    "UC7: fp16 and bf16 both": Case(TRAIN, flag("--fp16", "true", "--bf16", "true"), r"fp16 and bf16 are both set"),
    "UC8: fsdp_config alone": Case(TRAIN, flag("--fsdp_config", "{}"), r"fsdp is not supported for MusicGen"),
    "UC8: fsdp_config {} in the config file": Case(
        TRAIN, lambda w: [config(w, fsdp_config={})], r"fsdp is not supported for MusicGen"
    ),
    "W7: a list option in Python's quotes": Case(
        TRAIN, flag("--sample_prompts", "['lofi']"), r"--sample_prompts .* looks like a JSON list but is not valid JSON"
    ),
    "W7: a list option as an empty JSON list": Case(
        TRAIN, flag("--lora_target_modules", "[]"), r"--lora_target_modules is an empty list; leave it out"
    ),
    "W7: a JSON list with a number for text": Case(
        TRAIN, flag("--sample_prompts", '["lofi", 5]'), r"--sample_prompts holds 5, not str"
    ),
    "UC13: a config naming the demo's model, run where it is not": Case(
        TRAIN,
        lambda w: [config(w, model_name_or_path="demo_output/tiny-musicgen", dataset_name="demo_output/corpus")],
        r"'demo_output/tiny-musicgen' not found in '.*': it is the offline demo's, which `python finetune_musicgen.py` "
        r"\(no arguments\) builds where it runs",
    ),
    "UC1: NaN with the progress bar drawn: the error is the last line, and no checkpoint is claimed": Case(
        TRAIN,
        flag("--learning_rate", "1e6", "--max_steps", "3", "--disable_tqdm", "false"),
        r"(loss|a gradient) became NaN or infinite at step \d; lower learning_rate.*; no checkpoint was saved before "
        r"it; the previous run in .* is back in place",
    ),
    "TB1: disk full while torch.save writes the checkpoint": Case(
        TRAIN,
        _disk_full("torch", TORCH_FULL),
        r"saving failed \(.*unexpected pos.*; is the disk full\?\) for '.*checkpoint-1' \(its partial folder was "
        r"removed\); free some space .* run the same command again \(no checkpoint is complete yet: it starts from the "
        r"beginning\); the previous run in .* is back",
    ),
    "TB2: disk full while safetensors writes the checkpoint's adapter": Case(
        TRAIN,
        _disk_full("safetensors", SAFETENSORS_FULL),
        r"disk full while saving '.*checkpoint-1' \(its partial folder was removed\); free some space \(or lower "
        r"save_total_limit\), then run the same command again",
    ),
}


def _saved(w: World) -> dict[str, Any]:
    """The earlier run's requested options (its finetune_config.json), for a config file of the same run into the
    copy."""
    saved = json.loads((w.run / "finetune_config.json").read_text())
    return saved | {"overwrite_output_dir": None, "output_dir": str(w.run)}


# ------------------------------------------------------------------------------------------------ generate


def _held_lock(w: World) -> list[str]:
    """Another generation holds --out_dir's lock (a second lock object on the file: the OS lock is per open file)."""
    out = w.path("out")
    out.mkdir()
    lock = FileLock(out / LOCK_NAME, timeout=0)
    w.resources.enter_context(lock)
    return generate()(w)


def _finished_meanwhile(w: World) -> list[str]:
    """Another generation wrote into the new --out_dir between this one's first check and its lock."""
    real = generate_cli.out_dir_lock

    @contextlib.contextmanager
    def lock_after_the_other(out: Path) -> Iterator[None]:
        w.write("out/0.wav", b"RIFF the other generation's clip")
        with real(out):
            yield

    w.monkeypatch.setattr(generate_cli, "out_dir_lock", lock_after_the_other)
    return generate()(w)


def _unfinished_run(w: World) -> str:
    """The earlier run as it is before its end: a checkpoint, no final adapter."""
    _stopped_run(w)
    (w.run / "adapter_config.json").unlink()
    return str(w.run)


def _caption_folder(w: World) -> Path:
    folder = w.songs("songs", 2)
    w.write("songs/a.txt", "a low tone")
    return folder


def _unreadable_base(w: World) -> str:
    """A copy of the earlier run's adapter whose recorded base cannot be read here (so only its weights tell)."""
    folder = w.path("adapter")
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes((w.run / "adapter_model.safetensors").read_bytes())
    adapter_config = json.loads((w.run / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps(adapter_config | {"base_model_name_or_path": "/gone"}))
    return str(folder)


def _stereo(w: World) -> str:
    return str(save_tiny_musicgen(w.path("stereo"), seed=0, variant="stereo"))


GENERATE_AFTERNOON: dict[str, Case] = {
    "W3: another generation is writing to --out_dir": Case(
        GENERATE, _held_lock, r"another generation is writing to --out_dir '.*out'; wait for it to finish"
    ),
    "W3: another generation finished into the new --out_dir meanwhile": Case(
        GENERATE, _finished_meanwhile, r"--out_dir '.*out' holds earlier generations \(0.wav\)"
    ),
    "W5: --out_dir is the training corpus": Case(
        GENERATE,
        lambda w: generate("--out_dir", str(w.corpus))(w),
        r"--out_dir '.*corpus' is a folder of training data \(clip_000.wav, .*\): a training on it would learn",
    ),
    "W5: --out_dir is a folder of songs with .txt captions, even with --overwrite": Case(
        GENERATE,
        lambda w: generate("--out_dir", str(_caption_folder(w)), "--overwrite")(w),
        r"--out_dir '.*songs' is a folder of training data \(a.wav, b.wav\)",
    ),
    "UC20: a prompt on two lines": Case(
        GENERATE, generate("--prompt", "lofi\npiano"), r"--prompt number 2 holds a line break; write each prompt on one"
    ),
    "U9: adapter_config.json damaged, no --base_model": Case(
        GENERATE,
        lambda w: ["--adapter", _broken(w), "--prompt", "x", "--out_dir", str(w.path("out"))],
        r"cannot load adapter '.*adapter': '.*adapter/adapter_config.json' is not valid JSON \(Expecting property name "
        r"enclosed in double quotes at line 1, column 2\); restore that file",
    ),
    "UC3: adapter folder missing, no --base_model": Case(
        GENERATE,
        lambda w: ["--adapter", str(w.path("no-such-run")), "--prompt", "x"],
        r"cannot load adapter '.*no-such-run': not found",
    ),
    "UC3: a stopped run as the adapter": Case(
        GENERATE,
        lambda w: ["--adapter", _unfinished_run(w), "--prompt", "x"],
        r"cannot load adapter '.*run': it holds no adapter_config.json \(a run that has not finished\?\); give one of "
        r"its checkpoints, e.g. '.*run/checkpoint-1'",
    ),
    "W6: a mono adapter on a stereo base": Case(
        GENERATE,
        lambda w: generate("--base_model", _stereo(w))(w),
        r"adapter '.*run' was trained on another kind of MusicGen than this base \(audio_channels 1 -> 2, "
        r"num_codebooks 4 -> 8\); use the base it was trained on",
    ),
    "W6: a mono adapter on a stereo base, its recorded base unreadable": Case(
        GENERATE,
        lambda w: ["--base_model", _stereo(w), "--adapter", _unreadable_base(w), "--prompt", "x"],
        r"adapter '.*adapter' does not fit this base model: it has no weights for \d+ of its layers on this base, "
        r"e.g. .*lm_heads.4",
    ),
}


def _broken(w: World) -> str:
    folder = w.path("adapter")
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes((w.run / "adapter_model.safetensors").read_bytes())
    (folder / "adapter_config.json").write_text("{not json")
    return str(folder)


# ------------------------------------------------------------------------------------------------ push

PUSH_AFTERNOON: dict[str, Case] = {
    "UC15: the folder is missing": Case(
        PUSH, lambda w: [str(w.path("none")), "--repo_id", "me/x"], r"'.*none' not found; give the output_dir of a"
    ),
    "UC15: the folder is a file": Case(
        PUSH, lambda w: [str(w.write("f", "x")), "--repo_id", "me/x"], r"'.*f' is a file, not a run's folder"
    ),
    "UC15: repo id with --": Case(
        PUSH, lambda w: [str(w.run), "--repo_id", "user/na--me"], r"'user/na--me' is not a Hub repository id \(.*--"
    ),
    "UC15: repo id ending in .git": Case(
        PUSH, lambda w: [str(w.run), "--repo_id", "user/name.git"], r"'user/name.git' is not a Hub repository id"
    ),
}

AFTERNOON_CASES = (TRAIN_AFTERNOON, GENERATE_AFTERNOON, PUSH_AFTERNOON)
