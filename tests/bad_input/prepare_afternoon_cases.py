"""Preparation defects of the new user's afternoon (2026-12-07, ../shared/findings/new-user-afternoon-2026-12-07.md),
each as a catalogue case: one line, exit 2, every earlier file byte-identical. Most fail while the data is listed or
screened, before anything is decoded; the disk-full cases make the writer fail as a full disk does."""

from __future__ import annotations

import errno
import json
import os
import pathlib
import re
import shutil
import struct
from pathlib import Path
from typing import Any

import datasets

import finetune_musicgen
from musicgen_lora.files import run_lock

from ..conftest import base_argv
from .world import Case, World

TRAIN, PREPARE = "train", "prepare"


def _prepare_over_the_run(*extra: str) -> Any:
    """``prepare`` into the earlier finished run's folder (without overwrite_output_dir)."""
    return lambda w: base_argv(w.model, w.shared_corpus, w.run, w.cache) + list(extra)


def _run_locked_by_a_live_training(w: World) -> list[str]:
    w.resources.enter_context(run_lock(w.run))  # held as a running training holds it, until the case ends
    return base_argv(w.model, w.shared_corpus, w.run, w.cache) + ["--max_duration_in_seconds", "4"]


def _wav_header(rate: int, frames: int) -> bytes:
    """The 44-byte header of an 8-bit mono PCM WAV of ``frames`` frames at ``rate`` Hz."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate, 1, 8)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + frames)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + (struct.pack("<I", frames))
    )


def _one_file(write: Any) -> Any:
    """``prepare`` on a folder holding one ``a.wav`` written by ``write(path)``, captioned."""

    def argv(w: World) -> list[str]:
        folder = w.path("songs")
        folder.mkdir()
        write(folder / "a.wav")
        (folder / "a.txt").write_text("a caption")
        return base_argv(w.model, folder, w.path("out"), w.cache)

    return argv


def _sample_rate_of_1_hz(path: Path) -> None:
    path.write_bytes(_wav_header(1, 8) + bytes(range(100, 108)))  # 8 samples at 1 Hz: "8 s" of audio


def _ten_hours(path: Path) -> None:
    frames = 10 * 3600 * 4000
    with open(path, "wb") as handle:  # a sparse file: 144 MB that take no disk
        handle.write(_wav_header(4000, frames))
        handle.truncate(44 + frames)


def _reviewed_rows_without_text(w: World) -> list[str]:
    folder = w.songs(metadata="".join(
        json.dumps({"file_name": name, "text": "", "caption_is_final": True}) + "\n" for name in ("a.wav", "b.wav")
    ))  # fmt: skip
    return base_argv(w.model, folder, w.path("out"), w.cache) + ["--instance_prompt", "sks"]


def _invisible_caption(w: World) -> list[str]:
    folder = w.songs(metadata="".join(
        json.dumps({"file_name": name, "text": "\u200b\u200b \u2060"}) + "\n" for name in ("a.wav", "b.wav")
    ))  # fmt: skip
    return base_argv(w.model, folder, w.path("out"), w.cache)


def _disk_full_while_saving(w: World) -> list[str]:
    save = datasets.Dataset.save_to_disk

    def full(dataset: datasets.Dataset, path: str, *args: Any, **kwargs: Any) -> None:
        if "prepared_data" in str(path):
            Path(path).mkdir(parents=True, exist_ok=True)
            (Path(path) / "data-00000-of-00001.arrow").write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        save(dataset, path, *args, **kwargs)

    w.monkeypatch.setattr(datasets.Dataset, "save_to_disk", full)
    return base_argv(w.model, w.songs(), w.path("out"), w.cache) + ["--instance_prompt", "tone"]


def _disk_full_in_the_cache(w: World) -> list[str]:
    cache = w.path("small-cache")
    write_text = pathlib.Path.write_text

    def full(path: pathlib.Path, *args: Any, **kwargs: Any) -> int:
        if cache in path.parents:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return write_text(path, *args, **kwargs)

    w.monkeypatch.setattr(pathlib.Path, "write_text", full)
    return base_argv(w.model, w.songs(), w.path("out"), cache) + ["--instance_prompt", "tone"]


def _stopped_run_on_changed_data(w: World) -> list[str]:
    """A run stopped after its first checkpoint (trained on a copy of the corpus), whose metadata then lost rows."""
    corpus = w.corpus
    argv = base_argv(w.model, corpus, w.path("stopped"), w.cache) + [
        "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1", "--max_train_samples", "4",
        "--per_device_train_batch_size", "2", "--logging_steps", "1",
    ]  # fmt: skip
    finetune_musicgen.main(argv)
    stopped = w.path("stopped")
    shutil.rmtree(stopped / "checkpoint-2")  # as if stopped after step 1
    for name in ("train_results.json", "all_results.json", "adapter_model.safetensors"):
        (stopped / name).unlink(missing_ok=True)
    rows = (corpus / "metadata.jsonl").read_text().splitlines()
    (corpus / "metadata.jsonl").write_text("\n".join(rows[1:]) + "\n")  # the first track gone
    return argv


PREPARE_AFTERNOON_CASES: dict[str, Case] = {
    "W12 prepare while a training holds the run's lock": Case(
        PREPARE, _run_locked_by_a_live_training, r"another training run \(process \d+ on .*\) is writing to"
    ),
    "W12 prepare over a finished run's data with other options": Case(
        PREPARE,
        _prepare_over_the_run("--max_duration_in_seconds", "4"),
        r"holds a run whose prepared_data was prepared with other options \(max_duration_in_seconds: [\d.]+ -> 4.0",
    ),
    "W13 a stopped run continued on changed data": Case(
        TRAIN,
        _stopped_run_on_changed_data,
        r"holds a run stopped at checkpoint-1 that was trained on other data \(1 track\(s\) gone: clip_000.wav\)",
        slow=True,
    ),
    "W15 a sample rate of 1 Hz": Case(
        PREPARE, _one_file(_sample_rate_of_1_hz), r"were skipped \(1 bad sample rate; .*a sample rate of 1 Hz"
    ),
    "TB5 a 10-hour file": Case(
        PREPARE, _one_file(_ten_hours), r"were skipped \(1 too long; .*a.wav' is 10.0 h long .*cut it into parts"
    ),
    "TB3 disk full while writing prepared_data": Case(
        PREPARE, _disk_full_while_saving, r"disk full while preparing the data into output_dir .*free some space"
    ),
    "TB4 disk full in data_cache_dir": Case(
        PREPARE, _disk_full_in_the_cache, r"disk full while preparing the data into data_cache_dir .*small-cache"
    ),
    "UC5 reviewed rows with empty text": Case(
        PREPARE,
        _reviewed_rows_without_text,
        r"2 reviewed clip\(s\) \(caption_is_final true\) have an empty caption .*set caption_is_final false",
    ),
    "UC17 captions of zero-width spaces only": Case(
        PREPARE, _invisible_caption, r"2 clip\(s\) have no caption \(first: 'a.wav'\)"
    ),
    "UC19 dataset_name with ~": Case(
        TRAIN,
        lambda w: w.train("--dataset_name", "~/no-such-folder-qzx"),
        re.escape(f"dataset path '~/no-such-folder-qzx' not found (looked for '{os.path.expanduser('~')}/no-such"),
    ),
}
