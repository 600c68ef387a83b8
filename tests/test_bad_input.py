"""The bad-input catalogue through the real CLI: exit status 2, one line naming the problem and the fix, no
traceback, and an earlier good run in the same output_dir left byte-for-byte intact."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from .conftest import ROOT, base_argv


@pytest.fixture(scope="module")
def earlier_run(trained_run, tmp_path_factory) -> Path:
    """A copy of a finished good run: every bad input below is aimed at it with overwrite_output_dir true."""
    target = tmp_path_factory.mktemp("earlier") / "run"
    shutil.copytree(trained_run["output_dir"], target)
    return target


@pytest.fixture(scope="module")
def other_base_checkpoint(tmp_path_factory, corpus_dir, data_cache_dir) -> Path:
    """A checkpoint trained on a tiny MusicGen with another codebook size (so every LoRA head differs in shape)."""
    from finetune_musicgen import main
    from musicgen_lora.demo.tiny import build_tiny_musicgen

    root = tmp_path_factory.mktemp("other-base")
    model, processor = build_tiny_musicgen(seed=1, codebook_size=32)
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    main(
        base_argv(root / "model", corpus_dir, root / "run", data_cache_dir)
        + [
            "--max_steps",
            "1",
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
    return root / "run" / "checkpoint-1"


def folder_with_audio(root: Path, write) -> Path:
    folder = root / "songs"
    folder.mkdir()
    write(folder / "a.wav")
    (folder / "a.txt").write_text("a caption")
    return folder


def config_file(root: Path, text: str) -> str:
    path = root / "config.json"
    path.write_text(text)
    return str(path)


def _corrupt(path: Path) -> None:
    path.write_bytes(b"RIFFjunk")


def _samples(count: int):
    return lambda path: sf.write(path, np.zeros(count), 32000)


MINIMAL = '{"model_name_or_path": "m", "dataset_name": "d", "output_dir": "o"'

# id -> (argv builder(tmp, model, corpus, checkpoint), expected message pattern)
CASES = {
    "config missing": (lambda t, m, c, k: [str(t / "missing.json")], r"config file .*missing.json' not found"),
    "config not JSON": (lambda t, m, c, k: [config_file(t, MINIMAL + ',\n  "lora_r": 8,\n}')],
                        r"not valid JSON: .* line 3, column 1"),
    "unknown key": (lambda t, m, c, k: [config_file(t, MINIMAL + ', "learning_rat": 0.1}')],
                    r"unknown option 'learning_rat'.*did you mean 'learning_rate'"),
    "wrong type": (lambda t, m, c, k: [config_file(t, MINIMAL + ', "lora_r": "eight"}')],
                   r"'lora_r'.*must be of type int, got \"eight\""),
    "learning rate <= 0": (lambda t, m, c, k: ["--learning_rate", "0"], r"learning_rate must be > 0"),
    "lora_r <= 0": (lambda t, m, c, k: ["--lora_r", "0"], r"lora_r must be a positive integer"),
    "dropout outside [0, 1)": (lambda t, m, c, k: ["--lora_dropout", "1.5"], r"lora_dropout must be in \[0, 1\)"),
    "min duration > max": (lambda t, m, c, k: ["--min_duration_in_seconds", "20", "--max_duration_in_seconds", "10"],
                           r"min_duration_in_seconds \(20.0\) is larger than max_duration_in_seconds"),
    "max duration > 30 s": (lambda t, m, c, k: ["--max_duration_in_seconds", "60"],
                            r"max_duration_in_seconds must be in \(0, 30\]"),
    "dataset path missing": (lambda t, m, c, k: ["--dataset_name", str(t / "no-such-folder")],
                             r"dataset path .*no-such-folder' not found"),
    "dataset folder empty": (lambda t, m, c, k: ["--dataset_name", str(Path(t / "empty").mkdir() or t / "empty")],
                             r"holds no audio files"),
    "audio column missing": (lambda t, m, c, k: ["--dataset_name", str(_metadata_without_file_name(t))],
                             r"no 'file_name' or 'audio' column \(columns: path, text\)"),
    # a corpus of only a bad file: it is skipped, and nothing usable remains
    "corrupt audio": (lambda t, m, c, k: ["--dataset_name", str(folder_with_audio(t, _corrupt))],
                      r"all 1 audio file\(s\) of .*songs' \(train split\) were skipped \(1 unreadable; .*"
                      r"because cannot read audio file .*a.wav'"),
    "empty audio": (lambda t, m, c, k: ["--dataset_name", str(folder_with_audio(t, _samples(0)))],
                    r"were skipped \(1 empty; .*because audio file .*a.wav' is empty \(0 samples\)"),
    "NaN audio": (lambda t, m, c, k: ["--dataset_name", str(folder_with_audio(
        t, lambda p: sf.write(p, np.full(3200, np.nan, np.float32), 32000, subtype="FLOAT")))],
        r"were skipped \(1 not finite; .*because audio file .*a.wav' contains NaN"),
    "one-sample audio": (lambda t, m, c, k: ["--dataset_name", str(folder_with_audio(t, _samples(1)))],
                         r"were skipped \(1 too short; .*because audio file .*a.wav' holds a single sample"),
    # strict: a good file and a bad one; the bad one stops the run
    "bad audio with strict": (lambda t, m, c, k: ["--dataset_name", str(_good_and_corrupt(t)), "--strict", "true"],
                              r"cannot read audio file .*b.wav' .*\(strict is on: .*set strict false to skip them\)"),
    "model is not MusicGen": (lambda t, m, c, k: ["--model_name_or_path", str(_t5_folder(t))],
                              r"cannot load model .*give a MusicGen Hub id"),
    "adapter of another base": (lambda t, m, c, k: ["--resume_from_checkpoint", str(k)],
                                r"checkpoint .*checkpoint-1' was trained on another base model \(.*size mismatch"),
    "output_dir not writable": (lambda t, m, c, k: ["--output_dir", str(_file(t / "a-file") / "out")],
                                r"output_dir .*a-file/out' is not writable"),
}  # fmt: skip


def _good_and_corrupt(root: Path) -> Path:
    folder = folder_with_audio(root, lambda p: sf.write(p, 0.3 * np.sin(np.arange(64000) / 10.0), 32000))
    (folder / "b.wav").write_bytes(b"RIFFjunk")
    return folder


def _metadata_without_file_name(root: Path) -> Path:
    folder = root / "meta"
    folder.mkdir()
    sf.write(folder / "a.wav", np.zeros(3200), 32000)
    (folder / "metadata.jsonl").write_text(json.dumps({"path": "a.wav", "text": "x"}) + "\n")
    return folder


def _t5_folder(root: Path) -> Path:
    from transformers import T5Config

    T5Config(d_model=8, d_ff=8, num_layers=1, num_heads=1, d_kv=8, vocab_size=32).save_pretrained(root / "t5")
    return root / "t5"


def _file(path: Path) -> Path:
    path.write_text("not a folder")
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_through_the_cli(
    case, tmp_path, tiny_model_dir, corpus_dir, data_cache_dir, earlier_run, other_base_checkpoint
):
    build, pattern = CASES[case]
    extra = build(tmp_path, tiny_model_dir, corpus_dir, other_base_checkpoint)
    if extra and extra[0].endswith(".json"):
        argv = extra  # the config file itself is the problem
    else:
        argv = (
            base_argv(tiny_model_dir, corpus_dir, earlier_run, data_cache_dir)
            + [
                "--overwrite_output_dir",
                "true",
                "--max_steps",
                "2",
                "--max_train_samples",
                "2",
                "--per_device_train_batch_size",
                "2",
            ]
            + extra
        )
    before = snapshot(earlier_run)
    result = subprocess.run(
        [sys.executable, str(ROOT / "finetune_musicgen.py"), *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0]
    assert re.search(pattern, errors[0]), errors[0]
    assert ";" in errors[0]  # the problem; then the fix
    if case == "adapter of another base":  # fails after preparing: the new config's prepared_data/ stays, for reuse
        before = {k: v for k, v in before.items() if not k.startswith("prepared_data/")}
        assert {k: v for k, v in snapshot(earlier_run).items() if not k.startswith("prepared_data/")} == before
    else:
        assert snapshot(earlier_run) == before  # the earlier good run is untouched


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path):
    """The real CLI in a subprocess whose disk 'fills up' while the second checkpoint is written."""
    out = tmp_path / "run"
    argv = base_argv(tiny_model_dir, corpus_dir, out, data_cache_dir) + [
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
    script = (
        "import errno, sys, safetensors.torch as st, transformers.trainer as tt\n"
        "original, calls = tt.Trainer._save_rng_state, []\n"
        "def full(self, output_dir):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 2: raise OSError(errno.ENOSPC, 'No space left on device')\n"
        "    return original(self, output_dir)\n"
        "tt.Trainer._save_rng_state = full\n"
        "import finetune_musicgen; finetune_musicgen.main(sys.argv[1:])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: disk full while saving") and "resume_from_checkpoint true" in last
    assert (out / "checkpoint-1" / "trainer_state.json").is_file() and not (out / "checkpoint-2").exists()
