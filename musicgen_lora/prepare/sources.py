"""Sources of training audio, each loaded into one schema (a ``datasets.Dataset`` with columns ``audio`` and ``text``):
a local folder (metadata.jsonl/.csv or .txt captions), a Hub dataset (downloaded or streamed), or a single file (see
:mod:`.file_sources`).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets

from ..audio.io import AUDIO_EXTENSIONS, FFMPEG_EXTENSIONS
from ..config.arguments import DataArguments
from ..errors import UserError, one_line
from .file_sources import load_file_source


def _read_metadata(folder: Path) -> list[dict[str, Any]] | None:
    jsonl, csv_path = folder / "metadata.jsonl", folder / "metadata.csv"
    if jsonl.is_file():
        rows = []
        for number, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise UserError(f"{jsonl} line {number} is not valid JSON ({err.msg}); fix that line") from None
        return rows
    if csv_path.is_file():
        with csv_path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    return None


def _load_local_folder(folder: Path, data_args: DataArguments) -> datasets.Dataset:
    rows = _read_metadata(folder)
    if rows is not None:
        if not rows:
            raise UserError(f"the metadata file in '{folder}' has no rows; add one row per audio file")
        columns = sorted(rows[0])
        path_column = "file_name" if "file_name" in rows[0] else data_args.audio_column_name
        if path_column not in rows[0]:
            raise UserError(
                f"the metadata in '{folder}' has no 'file_name' or '{data_args.audio_column_name}' column (columns: "
                f"{', '.join(columns)}); add file_name with each audio file's path relative to the folder"
            )
        paths = [str(folder / row[path_column]) for row in rows]
        texts = [row.get(data_args.text_column_name) for row in rows]
        conditional = data_args.conditional_audio_column_name
        if conditional is not None:
            if conditional not in rows[0]:
                raise UserError(
                    f"conditional audio column '{conditional}' not found in the metadata of '{folder}' (columns: "
                    f"{', '.join(columns)}); set conditional_audio_column_name to a column of audio paths, or unset it"
                )
            return datasets.Dataset.from_dict(
                {"audio": paths, "text": _as_text(texts), "conditional_audio": [str(folder / r[conditional]) for r in rows]}
            )
        if all(t is None for t in texts) and data_args.instance_prompt is None:
            raise UserError(
                f"caption column '{data_args.text_column_name}' not found in the metadata of '{folder}' (columns: "
                f"{', '.join(columns)}); set text_column_name to the caption column, or set instance_prompt"
            )
    else:
        # formats that need FFmpeg are picked up too: without it they are skipped and reported, not ignored
        extensions = AUDIO_EXTENSIONS + FFMPEG_EXTENSIONS
        paths = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in extensions and p.is_file())
        if not paths:
            raise UserError(
                f"dataset folder '{folder}' holds no audio files ({', '.join(extensions)}); point dataset_name "
                "at your music folder"
            )
        texts = []
        for path in paths:
            caption_file = Path(path).with_suffix(".txt")
            texts.append(caption_file.read_text(encoding="utf-8").strip() if caption_file.is_file() else None)
    if data_args.conditional_audio_column_name is not None:
        raise UserError(
            f"conditional_audio_column_name needs a metadata.jsonl/.csv in '{folder}' with that column; add one or unset it"
        )
    return datasets.Dataset.from_dict({"audio": paths, "text": _as_text(texts)})


def _as_text(values: list[Any]) -> list[str | None]:
    return [v if v is None else str(v) for v in values]


# Endings that make a dataset_name a file, never a Hub id (Hub ids are 'user/name' and have no file extension).
FILE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".jsonl.gz", ".json", ".parquet", ".txt") + AUDIO_EXTENSIONS + FFMPEG_EXTENSIONS


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", ".", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)
        or name.lower().endswith(FILE_SUFFIXES)
    )  # fmt: skip


def _load_hub_split(data_args: DataArguments, split: str, cache_dir: str | None) -> datasets.Dataset:
    try:
        dataset = datasets.load_dataset(
            data_args.dataset_name, data_args.dataset_config_name, split=split, cache_dir=cache_dir
        )
    except Exception as err:  # noqa: BLE001 - datasets raises many kinds (connection, missing split, bad config)
        raise UserError(
            f"cannot load dataset '{data_args.dataset_name}' split '{split}' from the Hub: {one_line(err)[:300]}; check the "
            "id, dataset_config_name and split names (or point dataset_name at an existing local folder)"
        ) from None
    columns = dataset.column_names
    if data_args.audio_column_name not in columns:
        raise UserError(
            f"audio column '{data_args.audio_column_name}' not found in '{data_args.dataset_name}'; columns are: "
            f"{', '.join(columns)}; set audio_column_name"
        )
    if data_args.text_column_name not in columns and data_args.instance_prompt is None:
        raise UserError(
            f"caption column '{data_args.text_column_name}' not found in '{data_args.dataset_name}'; columns are: "
            f"{', '.join(columns)}; set text_column_name, or set instance_prompt to caption every clip"
        )
    conditional = data_args.conditional_audio_column_name
    if conditional is not None and conditional not in columns:
        raise UserError(
            f"conditional audio column '{conditional}' not found in '{data_args.dataset_name}'; columns are: "
            f"{', '.join(columns)}; set conditional_audio_column_name, or unset it"
        )
    audio_columns = {data_args.audio_column_name: "audio", **({conditional: "conditional_audio"} if conditional else {})}
    for column in audio_columns:
        dataset = dataset.cast_column(column, datasets.Audio(decode=False))
    texts = dataset[data_args.text_column_name] if data_args.text_column_name in columns else [None] * len(dataset)
    dataset = dataset.select_columns(list(audio_columns))
    for column, name in audio_columns.items():
        if column != name:
            dataset = dataset.rename_column(column, name)
    return dataset.add_column("text", _as_text(texts))


def load_split(data_args: DataArguments, split: str, cache_dir: str | None = None) -> datasets.Dataset:
    """Load one split as a Dataset with columns ``audio`` and ``text`` (``text`` may hold None).

    Args:
        cache_dir: where a Hub dataset is downloaded (the ``cache_dir`` model option; None: the Hub's default).

    Raises:
        UserError: missing path, empty folder, missing columns, or a dataset the Hub cannot give.
    """
    name = data_args.dataset_name
    local = Path(name).expanduser()
    if local.is_dir():
        folder = local / split if (local / split).is_dir() else local
        if folder == local and split != data_args.train_split_name:
            raise UserError(
                f"split '{split}' requested but '{local}' has no subfolder '{split}'; create it with the evaluation "
                "audio, or unset eval_split_name"
            )
        return _load_local_folder(folder, data_args)
    if local.is_file():  # a CSV, a jsonl manifest or one audio file
        return load_file_source(local, data_args, split)
    if _looks_like_path(name):
        raise UserError(
            f"dataset path '{name}' not found (looked in '{Path.cwd()}'); check the path (or use a Hub dataset id like "
            "'user/name')"
        )
    return _load_hub_split(data_args, split, cache_dir)


def open_stream(data_args: DataArguments, split: str, cache_dir: str | None = None) -> datasets.IterableDataset:
    """One split of ``dataset_name`` as a ``datasets`` stream with columns ``audio`` (undecoded) and ``text``."""
    name = data_args.dataset_name
    try:
        stream = datasets.load_dataset(name, data_args.dataset_config_name, split=split, streaming=True, cache_dir=cache_dir)
    except Exception as err:  # noqa: BLE001 - datasets raises many kinds (connection, missing split, bad config)
        raise UserError(
            f"cannot stream dataset '{name}' split '{split}': {one_line(err)[:300]}; check the id, "
            "dataset_config_name and split names (or set streaming false)"
        ) from None
    columns = list(stream.features or {}) or stream.column_names or []
    if data_args.audio_column_name not in columns:
        raise UserError(
            f"audio column '{data_args.audio_column_name}' not found in '{name}'; columns are: {', '.join(columns)}; set "
            "audio_column_name"
        )
    if data_args.text_column_name not in columns and data_args.instance_prompt is None:
        raise UserError(
            f"caption column '{data_args.text_column_name}' not found in '{name}'; columns are: {', '.join(columns)}; set "
            "text_column_name, or set instance_prompt to caption every clip"
        )
    stream = stream.cast_column(data_args.audio_column_name, datasets.Audio(decode=False))  # decoded here, no torchcodec
    keep = [data_args.audio_column_name] + ([data_args.text_column_name] if data_args.text_column_name in columns else [])
    return stream.select_columns(keep)


def stream_rows(stream: datasets.IterableDataset, data_args: DataArguments) -> Iterator[dict[str, Any]]:
    """Rows ``{"audio", "text", "source"}`` of a stream (closed properly when not read to the end)."""
    with contextlib.closing(iter(stream)) as rows:
        try:
            for index, row in enumerate(rows):
                audio = row[data_args.audio_column_name]
                source = audio.get("path") if isinstance(audio, dict) and audio.get("path") else f"row {index}"
                text = row.get(data_args.text_column_name)
                yield {"audio": audio, "text": None if text is None else str(text), "source": str(source)}
        except ImportError as err:  # datasets' folder builders encode audio files through torchcodec
            raise UserError(
                f"streaming '{data_args.dataset_name}' needs {one_line(err)}; streaming is for Hub datasets (Parquet): set "
                "streaming false to read a local folder directly"
            ) from None
