"""The folder ``generate`` writes into: one generation at a time, never a folder of training data, and earlier
generations replaced only when asked (``--overwrite``), once the new one has succeeded (:func:`files.kept_aside`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ..audio.io import AUDIO_EXTENSIONS, FFMPEG_EXTENSIONS
from ..errors import UserError
from ..files import ensure_writable_folder, lock_or_refuse

LOCK_NAME = ".musicgen-lora-generate.lock"
RECORDS = ("prompts.txt", "generation_config.json")  # what a generation writes besides its numbered clips
# Files that make a folder training data: metadata and saved datasets (a folder of audio files is one by itself)
DATA_FILES = ("metadata.jsonl", "metadata.csv", "captions.jsonl", "dataset_info.json", "state.json")


def generation_files(out: Path) -> list[Path]:
    """The files an earlier generation wrote into ``out`` (numbered clips, prompts.txt, generation_config.json)."""
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if p.name in RECORDS or (p.suffix in (".wav", ".mp3") and p.stem.isdigit()))


def training_data_files(folder: Path) -> list[str]:
    """Names of the files in ``folder`` (not below it) that make it a folder of training data: audio that is not a
    generation's numbered clip, metadata, a saved dataset."""
    if not folder.is_dir():
        return []
    audio = AUDIO_EXTENSIONS + FFMPEG_EXTENSIONS
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_file() and (p.name in DATA_FILES or (p.suffix.lower() in audio and not p.stem.isdigit()))
    )


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Check ``--out_dir`` before any model loads (call it again under :func:`out_dir_lock`: another generation may
    have written there in the meantime).

    Raises:
        UserError: a file; a folder of training data (a training on it would learn from the generated clips);
            earlier generations there without ``overwrite``; not writable.
    """
    if out.exists() and not out.is_dir():
        raise UserError(f"--out_dir '{out}' is a file, not a folder; choose a folder")
    data = training_data_files(out)  # (not its parents: a melody file beside the folder is no dataset)
    if data:
        raise UserError(
            f"--out_dir '{out}' is a folder of training data ({', '.join(data[:3])}{', ...' if len(data) > 3 else ''}"
            "): a training on it would learn from the generated clips; choose another --out_dir"
        )
    earlier = generation_files(out)
    if earlier and not overwrite:
        raise UserError(
            f"--out_dir '{out}' holds earlier generations ({', '.join(p.name for p in earlier[:3])}); choose another "
            "--out_dir, or add --overwrite to replace them"
        )
    ensure_writable_folder(out, "--out_dir")


@contextlib.contextmanager
def out_dir_lock(out: Path) -> Iterator[None]:
    """Hold ``out``'s generation lock for a block (an OS file lock: freed when the process ends, however it ends).

    Raises:
        UserError: another generation holds it.
    """
    refusal = f"another generation is writing to --out_dir '{out}'; wait for it to finish, or choose another --out_dir"
    with lock_or_refuse(out / LOCK_NAME, "generate", lambda holder: refusal):  # removes its file when released
        yield
