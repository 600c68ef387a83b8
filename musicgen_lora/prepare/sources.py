"""Sources of training audio, each loaded into one schema (a ``datasets.Dataset`` with columns ``audio`` and ``text``):
a local folder (metadata.jsonl/.csv or .txt captions), a Hub dataset (downloaded or streamed), or a single file (see
:mod:`.file_sources`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets

from ..audio.io import AUDIO_EXTENSIONS, FFMPEG_EXTENSIONS
from ..config.arguments import DataArguments
from ..errors import UserError, one_line
from ..files import read_user_text
from .captions import caption_of
from .file_sources import chosen_column, load_file_source, read_csv_rows, refuse_column_options, unique_tracks

logger = logging.getLogger(__name__)


METADATA_FILES = ("metadata.jsonl", "metadata.csv")


# A metadata column saying that the row's text is the final caption (captions.jsonl, reviewed and copied in as
# metadata.jsonl, sets it): trained on as written, without the template or measured fields.
FINAL_COLUMN = "caption_is_final"


@dataclasses.dataclass(frozen=True)
class Listing:
    """One source split as listed: its tracks (columns ``audio``, ``text``, and ``caption_final`` /
    ``conditional_audio`` where given), and what the listing left out.

    Attributes:
        not_listed: audio files in a folder whose metadata does not list them (named relative to the folder).
        duplicates: data report entries (``{"path", "reason"}``) of links to a file that is already listed.
    """

    tracks: datasets.Dataset
    not_listed: tuple[str, ...] = ()
    duplicates: tuple[dict[str, str], ...] = ()


def _audio_files(folder: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Every audio file under ``folder`` (sorted), following linked subfolders (each real folder once), with links
    whose target is missing kept (screening reports them); and the report entries of links to a file that is
    already there under another name (left out: the same audio would be trained twice).

    Subfolders with a metadata file of their own (another split) are not entered.
    """
    extensions = AUDIO_EXTENSIONS + FFMPEG_EXTENSIONS
    found, seen_folders = [], set()
    for current, folders, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(current)
        if real in seen_folders:  # a link back up the tree, or a second link to the same folder
            folders[:] = []
            continue
        seen_folders.add(real)
        folders[:] = sorted(f for f in folders if not any((Path(current) / f / m).is_file() for m in METADATA_FILES))
        for name in files:
            path = os.path.join(current, name)
            if Path(name).suffix.lower() in extensions and (os.path.isfile(path) or os.path.islink(path)):
                found.append(path)
    by_target: dict[str, list[str]] = {}
    for path in sorted(found):
        by_target.setdefault(os.path.realpath(path), []).append(path)
    paths, duplicates = [], []
    for same in by_target.values():
        kept = next((p for p in same if not os.path.islink(p)), same[0])  # the file itself over a link to it
        paths.append(kept)
        for other in same:
            if other != kept:
                logger.warning(
                    "'%s' is a link to '%s', which is already listed: left out (the same audio would be trained twice)",
                    other,
                    kept,
                )
                duplicates.append({"path": other, "reason": f"duplicate: a link to {kept}"})
    return sorted(paths), duplicates


def _read_metadata(folder: Path) -> tuple[list[tuple[int, dict[str, Any]]], Path] | None:
    """The rows of a folder's ``metadata.jsonl`` (or ``.csv``) with their line numbers, and the file; None without.

    Raises:
        UserError: not UTF-8, a line that is not valid JSON or not a JSON object, a malformed CSV.
    """
    for name in METADATA_FILES:
        path = folder / name
        if path.is_file():
            break
    else:
        return None
    rows = []
    if path.suffix == ".jsonl":
        for number, line in enumerate(read_user_text(path, "metadata file").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{path} line {number} is not valid JSON ({err.msg}); fix that line") from None
            if not isinstance(row, dict):
                raise UserError(
                    f'{path} line {number} is not a JSON object; write each row as {{"file_name": ..., "text": ...}}'
                )
            rows.append((number, row))
    else:
        rows = read_csv_rows(path, "metadata file")
    return rows, path


def _load_local_folder(folder: Path, data_args: DataArguments) -> Listing:
    metadata = _read_metadata(folder)
    if metadata is None:
        if data_args.conditional_audio_column_name is not None:
            raise UserError(
                f"conditional_audio_column_name needs a metadata.jsonl/.csv in '{folder}' with that column; add one or "
                "unset it"
            )
        refuse_column_options(data_args, f"'{folder}' (no metadata.jsonl/.csv: captions come from .txt files)")
        return _load_audio_files(folder, data_args)
    rows, source = metadata
    if not rows:
        raise UserError(f"the metadata file '{source}' has no rows; add one row per audio file")
    columns = sorted({key for _, row in rows for key in row})
    audio_option, text_option = data_args.audio_column_name, data_args.text_column_name
    path_column = chosen_column("audio_column_name", audio_option, ("file_name", audio_option), columns, f"'{source}'")
    if path_column is None:
        raise UserError(
            f"the metadata in '{folder}' has no 'file_name' or '{audio_option}' column (columns: "
            f"{', '.join(columns)}); add file_name with each audio file's path relative to the folder"
        )
    text_column = chosen_column("text_column_name", text_option, (text_option,), columns, f"'{source}'")
    if text_column is None and data_args.instance_prompt is None:
        raise UserError(
            f"caption column '{text_option}' not found in the metadata of '{folder}' (columns: {', '.join(columns)}); "
            "set text_column_name to the caption column, or set instance_prompt"
        )
    conditional = data_args.conditional_audio_column_name
    if conditional is not None and conditional not in columns:
        raise UserError(
            f"conditional audio column '{conditional}' not found in the metadata of '{folder}' (columns: "
            f"{', '.join(columns)}); set conditional_audio_column_name to a column of audio paths, or unset it"
        )
    entries = []
    for number, row in rows:
        where = f"{source} line {number}"
        written = _relative_path(row.get(path_column), path_column, where)
        entries.append((number, str(folder / written), written, caption_of(row.get(text_column), where)))
    keep = unique_tracks(entries, source)
    table: dict[str, list] = {"audio": [entries[i][1] for i in keep], "text": [entries[i][3] for i in keep]}
    if FINAL_COLUMN in columns:  # a reviewed captions.jsonl: its captions are trained on as written
        table["caption_final"] = [
            _flag(rows[i][1].get(FINAL_COLUMN), FINAL_COLUMN, f"{source} line {rows[i][0]}") for i in keep
        ]
    if conditional:
        table["conditional_audio"] = [
            str(folder / _relative_path(rows[i][1].get(conditional), conditional, f"{source} line {rows[i][0]}"))
            for i in keep
        ]
    return Listing(datasets.Dataset.from_dict(table), not_listed=_not_listed(folder, table["audio"], source))


def _not_listed(folder: Path, listed: list[str], metadata: Path) -> tuple[str, ...]:
    """The audio files under ``folder`` that its metadata does not list (they are left out), with a warning."""
    known = {os.path.realpath(path) for path in listed}
    files, _ = _audio_files(folder)
    missing = tuple(
        os.path.relpath(path, folder) for path in files if os.path.realpath(path) not in known and os.path.exists(path)
    )
    if missing:
        logger.warning(
            "%d audio file(s) in '%s' are not listed in %s and are left out (%s%s); add a row for each to train on "
            "them",
            len(missing),
            folder,
            metadata.name,
            ", ".join(missing[:3]),
            ", ..." if len(missing) > 3 else "",
        )
    return missing


def _flag(value: Any, column: str, where: str) -> bool:
    """A metadata row's true/false column (JSON true/false or null; in a CSV: true, false or empty).

    Raises:
        UserError: anything else.
    """
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", ""):
        return value.strip().lower() == "true"
    raise UserError(f"{where}: '{column}' is {json.dumps(value)[:60]}; write true or false (or leave it out)")


def _relative_path(value: Any, column: str, where: str) -> str:
    """A metadata row's audio path (relative to the folder).

    Raises:
        UserError: missing, empty or not text.
    """
    if not isinstance(value, str) or not value.strip():
        raise UserError(
            f"{where}: '{column}' is {json.dumps(value)[:60] if value is not None else 'missing'}; give each row the "
            "audio file's path relative to the folder, as text"
        )
    return value.strip()


def _load_audio_files(folder: Path, data_args: DataArguments) -> Listing:
    """A folder of audio files without metadata, each captioned by a same-named ``.txt`` (if any)."""
    # formats that need FFmpeg are picked up too: without it they are skipped and reported, not ignored
    paths, duplicates = _audio_files(folder)
    if not paths:
        raise UserError(
            f"dataset folder '{folder}' holds no audio files ({', '.join(AUDIO_EXTENSIONS + FFMPEG_EXTENSIONS)}); "
            "point dataset_name at your music folder"
        )
    texts = []
    for path in paths:
        caption_file = Path(path).with_suffix(".txt")
        where = f"caption file '{caption_file}'"
        texts.append(
            caption_of(read_user_text(caption_file, "caption file"), where) if caption_file.is_file() else None
        )
    return Listing(datasets.Dataset.from_dict({"audio": paths, "text": texts}), duplicates=tuple(duplicates))


# Endings that make a dataset_name a file, never a Hub id (Hub ids are 'user/name' and have no file extension).
FILE_SUFFIXES = (
    (".csv", ".tsv", ".jsonl", ".jsonl.gz", ".json", ".parquet", ".txt") + AUDIO_EXTENSIONS + FFMPEG_EXTENSIONS
)


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", ".", "~"))
        or name.count("/") > 1
        or (os.sep != "/" and os.sep in name)
        or name.lower().endswith(FILE_SUFFIXES)
    )


def _load_hub_split(data_args: DataArguments, split: str, cache_dir: str | None) -> datasets.Dataset:
    try:
        dataset = datasets.load_dataset(
            data_args.dataset_name, data_args.dataset_config_name, split=split, cache_dir=cache_dir
        )
    except Exception as err:  # noqa: BLE001 - datasets raises many kinds (connection, missing split, bad config)
        raise UserError(
            f"cannot load dataset '{data_args.dataset_name}' split '{split}' from the Hub: {one_line(err)[:300]}; "
            f"check the "
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
    audio_columns = {
        data_args.audio_column_name: "audio",
        **({conditional: "conditional_audio"} if conditional else {}),
    }
    for column in audio_columns:
        dataset = dataset.cast_column(column, datasets.Audio(decode=False))
    texts = dataset[data_args.text_column_name] if data_args.text_column_name in columns else [None] * len(dataset)
    dataset = dataset.select_columns(list(audio_columns))
    for column, name in audio_columns.items():
        if column != name:
            dataset = dataset.rename_column(column, name)
    name = data_args.dataset_name
    return dataset.add_column("text", [caption_of(text, f"'{name}' row {i}") for i, text in enumerate(texts)])


def load_split(data_args: DataArguments, split: str, cache_dir: str | None = None) -> datasets.Dataset:
    """Load one split as a Dataset with columns ``audio`` and ``text`` (``text`` may hold None).

    Args:
        cache_dir: where a Hub dataset is downloaded (the ``cache_dir`` model option; None: the Hub's default).

    Raises:
        UserError: missing path, empty folder, missing columns, or a dataset the Hub cannot give.
    """
    return list_source(data_args, split, cache_dir).tracks


def list_source(data_args: DataArguments, split: str, cache_dir: str | None = None) -> Listing:
    """One split of ``dataset_name`` as listed, with what the listing left out (see :class:`Listing`).

    Raises:
        UserError: as :func:`load_split`.
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
        return Listing(load_file_source(local, data_args, split))
    if _looks_like_path(name):
        looked = f"looked for '{local}'" if local.is_absolute() else f"looked in '{Path.cwd()}'"  # '~' expanded
        raise UserError(
            f"dataset path '{name}' not found ({looked}); check the path (or use a Hub dataset id like 'user/name')"
        )
    return Listing(_load_hub_split(data_args, split, cache_dir))


def source_names(raw: datasets.Dataset, data_args: DataArguments, split: str) -> list[str]:
    """A name for each track of a split as :func:`load_split` returned it, for the ``source`` column of every prepared
    example and for captions.jsonl: the audio file's path relative to the dataset folder (the split's folder, or the
    manifest's folder) for local data (``../other/x.wav`` for a file beside it: the path a metadata.jsonl in that
    folder would give; links are not followed, so a link is named as itself), the file name or ``row N`` for Hub data.
    """
    local = Path(data_args.dataset_name).expanduser()
    base = None
    if local.is_dir():
        base = local / split if (local / split).is_dir() else local
    elif local.is_file():
        base = local.parent
    names = []
    for index, audio in enumerate(raw["audio"]):
        path = audio.get("path") if isinstance(audio, dict) else audio
        if not path:
            names.append(f"row {index}")
        elif base is None:  # a Hub dataset: the file name it was uploaded with
            names.append(Path(str(path)).name)
        else:
            try:
                names.append(Path(os.path.relpath(os.path.abspath(path), os.path.abspath(base))).as_posix())
            except ValueError:  # another drive (Windows): no relative path exists
                names.append(os.path.abspath(path))
    return names


def open_stream(data_args: DataArguments, split: str, cache_dir: str | None = None) -> datasets.IterableDataset:
    """One split of ``dataset_name`` as a ``datasets`` stream with columns ``audio`` (undecoded) and ``text``."""
    name = data_args.dataset_name
    try:
        stream = datasets.load_dataset(
            name, data_args.dataset_config_name, split=split, streaming=True, cache_dir=cache_dir
        )
    except Exception as err:  # noqa: BLE001 - datasets raises many kinds (connection, missing split, bad config)
        raise UserError(
            f"cannot stream dataset '{name}' split '{split}': {one_line(err)[:300]}; check the id, "
            "dataset_config_name and split names (or set streaming false)"
        ) from None
    columns = list(stream.features or {}) or stream.column_names or []
    if data_args.audio_column_name not in columns:
        raise UserError(
            f"audio column '{data_args.audio_column_name}' not found in '{name}'; columns are: {', '.join(columns)}; "
            f"set "
            "audio_column_name"
        )
    if data_args.text_column_name not in columns and data_args.instance_prompt is None:
        raise UserError(
            f"caption column '{data_args.text_column_name}' not found in '{name}'; columns are: {', '.join(columns)}; "
            f"set "
            "text_column_name, or set instance_prompt to caption every clip"
        )
    stream = stream.cast_column(
        data_args.audio_column_name, datasets.Audio(decode=False)
    )  # decoded here, no torchcodec
    keep = [data_args.audio_column_name] + (
        [data_args.text_column_name] if data_args.text_column_name in columns else []
    )
    return stream.select_columns(keep)


def stream_rows(stream: datasets.IterableDataset, data_args: DataArguments) -> Iterator[dict[str, Any]]:
    """Rows ``{"audio", "text", "source"}`` of a stream (closed properly when not read to the end)."""
    with contextlib.closing(iter(stream)) as rows:
        try:
            for index, row in enumerate(rows):
                audio = row[data_args.audio_column_name]
                source = audio.get("path") if isinstance(audio, dict) and audio.get("path") else f"row {index}"
                text = caption_of(row.get(data_args.text_column_name), f"'{data_args.dataset_name}' row {index}")
                yield {"audio": audio, "text": text, "source": str(source)}
        except ImportError as err:  # datasets' folder builders encode audio files through torchcodec
            raise UserError(
                f"streaming '{data_args.dataset_name}' needs {one_line(err)}; streaming is for Hub datasets "
                f"(Parquet): set "
                "streaming false to read a local folder directly"
            ) from None
