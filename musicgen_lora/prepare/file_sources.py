"""Sources given as a single file in ``dataset_name``: a CSV of paths and captions, an audiocraft-style jsonl
manifest, or one (long) audio file.

Each becomes the training split: a ``datasets.Dataset`` with columns ``audio`` (path) and ``text`` (caption or None),
like the folder and Hub sources of :mod:`musicgen_lora.prepare`. Relative audio paths are resolved against the file's
own folder first, then the working directory (audiocraft writes manifests with paths relative to where it ran).

* **CSV** (``.csv``, or ``.tsv`` with tabs): a path column (``file_name``, ``path``, or ``audio_column_name``) and a
  caption column (``text_column_name``; ``caption`` or ``description`` are accepted too). With
  ``conditional_audio_column_name``, a column of paths to the melody audio.
* **audiocraft manifest** (``.jsonl``, optionally ``.jsonl.gz``): one JSON object a line with ``path`` (and
  ``duration``, ``sample_rate``, ... which are ignored: the audio itself is read). The caption of each file is, in
  order: the manifest's ``text_column_name`` field, the ``description`` of the sidecar ``.json`` next to the audio
  file (``song.wav`` + ``song.json``, audiocraft's MusicInfo), or a caption built from the sidecar's metadata
  (genre, moods, keywords, instrument, bpm, key).
* **one audio file**: a single track (caption from a same-named ``.txt``, or ``instance_prompt``); with
  ``chunk_long_tracks`` it is cut into chunks, otherwise each step trains on a random window of it."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import datasets

from ..audio.io import AUDIO_EXTENSIONS, FFMPEG_EXTENSIONS
from ..config.arguments import DataArguments
from ..errors import UserError
from ..files import read_user_text
from .captions import caption_of, clean_caption

logger = logging.getLogger(__name__)

CSV_PATH_COLUMNS = ("file_name", "path")
_EXTRA_FIELDS = object()  # csv.DictReader's key for the values of a row longer than the header


CSV_CAPTION_FALLBACKS = ("caption", "description")


# Sidecar metadata fields (audiocraft's MusicInfo) turned into a caption when there is no description, in this order.
SIDECAR_FIELDS = ("genre", "moods", "keywords", "instrument", "bpm", "key")


# The column options' defaults: a changed one names a column the user expects to be read, so it must exist.
DEFAULT_COLUMNS = {
    f.name: f.default for f in dataclasses.fields(DataArguments) if f.name in ("audio_column_name", "text_column_name")
}


def chosen_column(option: str, value: str, candidates: tuple[str, ...], columns: list[str], where: str) -> str | None:
    """The column a column option picks: the user's own name when they changed the option (it must exist), else the
    first of ``candidates`` that exists (None: none does).

    Raises:
        UserError: the option was changed and names no column of the table.
    """
    if value != DEFAULT_COLUMNS[option]:
        if value not in columns:
            raise UserError(
                f"{option} '{value}' is not a column of {where} (columns: {', '.join(columns)}); set it to one of "
                "them, or remove it"
            )
        return value
    return next((column for column in candidates if column in columns), None)


def refuse_column_options(data_args: DataArguments, where: str, options: tuple[str, ...] = tuple(DEFAULT_COLUMNS)):
    """Raises UserError when a column option was changed for a source that has no such column (it would be ignored)."""
    for option in options:
        value = getattr(data_args, option)
        if value != DEFAULT_COLUMNS[option]:
            raise UserError(
                f"{option} '{value}' names a column, but {where} has no table of columns; remove the option"
            )


def _resolve(base: Path, value: Any, source: Path, line: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{source} row {line} has no audio path; give every row a path to an audio file")
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    return str(base / path) if (base / path).exists() or not path.exists() else str(path.resolve())


def _as_caption(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value if str(v).strip())
    return clean_caption(str(value), where)


def read_csv_rows(path: Path, what: str, delimiter: str = ",") -> list[tuple[int, dict[str, Any]]]:
    """The rows of a CSV the user wrote, with the line each ends on: ``(line, {column: value})``; a value missing
    from a short row is None.

    Raises:
        UserError: not UTF-8, not CSV, or a row with more values than the header has columns (a caption holding the
            delimiter without quotes, which would otherwise be cut short silently).
    """
    text = read_user_text(path, what)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, restkey=_EXTRA_FIELDS)  # type: ignore[arg-type]
    rows = []
    try:
        for row in reader:
            if _EXTRA_FIELDS in row:
                columns, separators = len(reader.fieldnames or []), "tabs" if delimiter == "\t" else "commas"
                raise UserError(
                    f"{path} line {reader.line_num} has {columns + len(row[_EXTRA_FIELDS])} fields but the header has "
                    f"{columns}; put values that hold {separators} (e.g. a caption) in double quotes"
                )
            rows.append((reader.line_num, row))
    except csv.Error as err:
        raise UserError(f"cannot read '{path}' as CSV ({err}); save it as CSV with a header row") from None
    return rows


def unique_tracks(entries: list[tuple[int, str, str, str | None]], source: Path) -> list[int]:
    """Which of a table's rows to keep: each audio file once (the same track twice would be trained twice, and could
    land on both sides of a split).

    Args:
        entries: per row, ``(line, audio path, the path as written, caption)``.

    Returns:
        The indices of the rows to keep; a repeat with the same caption is dropped with a warning.

    Raises:
        UserError: a file listed twice with different captions.
    """
    seen: dict[str, tuple[int, str | None]] = {}
    keep = []
    for index, (line, audio, written, caption) in enumerate(entries):
        key = os.path.realpath(audio)  # a link to a listed file is the same track
        if key not in seen:
            seen[key] = (line, caption)
            keep.append(index)
            continue
        first, first_caption = seen[key]
        if first_caption != caption:
            raise UserError(
                f"{source} lists '{written}' twice (lines {first} and {line}) with different captions; keep one row "
                "per audio file"
            )
        logger.warning("%s lists '%s' twice (lines %d and %d): the repeat is ignored", source, written, first, line)
    return keep


def load_csv(path: Path, data_args: DataArguments) -> datasets.Dataset:
    """A CSV (or TSV) of audio paths and captions."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    numbered = read_csv_rows(path, "CSV file", delimiter)
    rows = [row for _, row in numbered]
    if not rows:
        raise UserError(f"'{path}' has no rows; add a header row and one row per audio file")
    columns = list(rows[0])
    audio_option, text_option = data_args.audio_column_name, data_args.text_column_name
    path_column = chosen_column(
        "audio_column_name", audio_option, (*CSV_PATH_COLUMNS, audio_option), columns, f"'{path}'"
    )
    if path_column is None:
        raise UserError(
            f"'{path}' has no path column (columns: {', '.join(columns)}); name the column of audio paths "
            f"'file_name' or 'path', or set audio_column_name to it"
        )
    text_column = chosen_column(
        "text_column_name", text_option, (text_option, *CSV_CAPTION_FALLBACKS), columns, f"'{path}'"
    )
    if text_column is None and data_args.instance_prompt is None:
        raise UserError(
            f"caption column '{data_args.text_column_name}' not found in '{path}' (columns: {', '.join(columns)}); set "
            "text_column_name to the caption column, or set instance_prompt"
        )
    base = path.parent
    conditional = data_args.conditional_audio_column_name
    if conditional is not None and conditional not in columns:
        raise UserError(
            f"conditional audio column '{conditional}' not found in '{path}' (columns: {', '.join(columns)}); "
            "set conditional_audio_column_name to a column of audio paths, or unset it"
        )
    entries = [
        (
            line,
            _resolve(base, row.get(path_column), path, line),
            row[path_column],
            _as_caption(row.get(text_column), f"{path} line {line}"),
        )
        for line, row in numbered
    ]
    keep = unique_tracks(entries, path)
    data: dict[str, list] = {"audio": [entries[i][1] for i in keep], "text": [entries[i][3] for i in keep]}
    if conditional is not None:
        data["conditional_audio"] = [
            _resolve(base, numbered[i][1].get(conditional), path, numbered[i][0]) for i in keep
        ]
    return datasets.Dataset.from_dict(data)


def sidecar_caption(audio_path: str) -> str | None:
    """Caption from the sidecar ``.json`` next to an audio file: its description, else its metadata fields."""
    sidecar = Path(audio_path).with_suffix(".json")
    if not sidecar.is_file():
        return None
    try:
        info = json.loads(read_user_text(sidecar, "sidecar metadata"))
    except json.JSONDecodeError as err:
        raise UserError(f"sidecar metadata '{sidecar}' is not valid JSON ({err}); fix or remove it") from None
    if not isinstance(info, dict):
        return None
    description = _as_caption(info.get("description"), f"sidecar '{sidecar}'")
    if description:
        return description
    words = []
    for name in SIDECAR_FIELDS:
        value = _as_caption(info.get(name), f"sidecar '{sidecar}'")
        if value:
            words.append(f"{value} bpm" if name == "bpm" else value)
    return ", ".join(words) or None


def load_manifest(path: Path, data_args: DataArguments) -> datasets.Dataset:
    """An audiocraft-style jsonl manifest (one ``{"path": ...}`` object a line), captions from sidecar ``.json``."""
    if data_args.conditional_audio_column_name is not None:
        raise UserError(
            f"conditional_audio_column_name is not supported with a jsonl manifest ('{path}'); use a CSV with that "
            "column, or unset it"
        )
    refuse_column_options(data_args, f"the manifest '{path}' (its audio paths are in 'path')", ("audio_column_name",))
    if path.name.lower().endswith(".gz"):
        try:
            with gzip.open(path, "rt", encoding="utf-8-sig") as handle:
                lines = handle.read().splitlines()
        except (OSError, UnicodeDecodeError, EOFError) as err:
            raise UserError(
                f"manifest '{path}' cannot be read as gzipped UTF-8 text ({err}); fix or recompress it"
            ) from None
    else:
        lines = read_user_text(path, "manifest").splitlines()
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path} line {number} is not valid JSON ({err.msg}); fix that line") from None
        if not isinstance(row, dict) or "path" not in row:
            raise UserError(f"{path} line {number} has no 'path' field; each line needs the audio file's path")
        audio = _resolve(path.parent, row["path"], path, number)
        caption = caption_of(row.get(data_args.text_column_name), f"{path} line {number}") or sidecar_caption(audio)
        entries.append((number, audio, str(row["path"]), caption))
    if not entries:
        raise UserError(f"manifest '{path}' has no entries; add one JSON line per audio file")
    keep = unique_tracks(entries, path)
    return datasets.Dataset.from_dict({"audio": [entries[i][1] for i in keep], "text": [entries[i][3] for i in keep]})


def load_audio_file(path: Path, data_args: DataArguments) -> datasets.Dataset:
    """One audio file as a one-track dataset (caption from a same-named .txt, else instance_prompt)."""
    if data_args.conditional_audio_column_name is not None:
        raise UserError(
            f"conditional_audio_column_name needs a table of audio paths, not the single file '{path}'; use a CSV "
            "or unset it"
        )
    refuse_column_options(data_args, f"the single audio file '{path}'")
    caption_file = path.with_suffix(".txt")
    text = read_user_text(caption_file, "caption file").strip() if caption_file.is_file() else None
    return datasets.Dataset.from_dict({"audio": [str(path)], "text": [text or None]})


def load_file_source(path: Path, data_args: DataArguments, split: str) -> datasets.Dataset:
    """The training split from a single-file source (CSV, manifest or audio file).

    Raises:
        UserError: another split is requested, an unknown file kind, or a malformed file.
    """
    if split != data_args.train_split_name:
        raise UserError(
            f"split '{split}' requested but dataset_name '{path}' is a single file (the training data); set "
            "eval_split_percentage to hold out tracks for evaluation, or unset eval_split_name"
        )
    name = path.name.lower()
    if name.endswith((".csv", ".tsv")):
        return load_csv(path, data_args)
    if name.endswith((".jsonl", ".jsonl.gz")):
        return load_manifest(path, data_args)
    if path.suffix.lower() in AUDIO_EXTENSIONS + FFMPEG_EXTENSIONS:  # the latter decoded through torchcodec/FFmpeg
        return load_audio_file(path, data_args)
    raise UserError(
        f"dataset_name '{path}' is a file of unknown kind; point it at a folder, a .csv of paths and captions, a "
        f".jsonl manifest, or an audio file ({', '.join(AUDIO_EXTENSIONS + FFMPEG_EXTENSIONS)})"
    )
