"""The audio folder's own files, edited from the page: captions, exclusions, uploads.

Caption edits are written into the folder's own caption files, in the layout preparation reads: the ``text``
column of ``metadata.jsonl`` / ``metadata.csv`` when the folder has one, else the ``.txt`` file beside each audio
file. Changed captions change the data's fingerprint, so the next training prepares again (from cached codes).

A file is left out of training without deleting it: a file listed in a metadata file loses its row, which is kept in
``.studio-excluded.jsonl`` beside that metadata file; a file without one is renamed ``NAME.excluded`` (preparation
reads audio extensions only). Including it again puts the row back, or the name.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

from . import backend

CAPTION_FILES = ("metadata.jsonl", "metadata.csv")
UPLOAD_EXTENSIONS = (*backend.AUDIO_EXTENSIONS, *backend.FFMPEG_EXTENSIONS, ".txt", ".jsonl", ".csv")
EXCLUDED_SUFFIX = ".excluded"
EXCLUDED_ROWS = ".studio-excluded.jsonl"


def _caption_file(audio: Path, dataset_dir: Path) -> Path | None:
    """The metadata file that lists ``audio`` (in its folder or a parent, up to the dataset folder), if any."""
    folder = audio.parent
    while True:
        for name in CAPTION_FILES:
            if (folder / name).is_file():
                return folder / name
        if folder == dataset_dir or dataset_dir not in folder.parents:
            return None
        folder = folder.parent


def _read_rows(path: Path) -> tuple[list[dict[str, Any] | None], list[str]]:
    """A metadata file's rows (None for a blank jsonl line, kept in place) and, for a CSV, its header."""
    if path.suffix == ".jsonl":
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) if line.strip() else None for line in lines], []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader), list(reader.fieldnames or [])


def _write_rows(path: Path, rows: list[dict[str, Any] | None], header: list[str]) -> None:
    staging = path.with_name(path.name + ".tmp")
    if path.suffix == ".jsonl":
        text = "".join((json.dumps(row, ensure_ascii=False) if row is not None else "") + "\n" for row in rows)
        staging.write_text(text, encoding="utf-8")
    else:
        with staging.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=header)
            writer.writeheader()
            writer.writerows(row for row in rows if row is not None)
    os.replace(staging, path)


def _row_file(metadata: Path, row: dict[str, Any]) -> str | None:
    """The absolute path of the audio file a metadata row names."""
    name = row.get("file_name") or row.get("audio")
    return str((metadata.parent / str(name)).resolve()) if name else None


def _rewrite_metadata(path: Path, captions: dict[str, str], text_column: str) -> int:
    """Set the caption of the rows whose file (relative to ``path``'s folder) is in ``captions``; other columns
    and rows are kept as they are. Returns the number of rows changed."""
    rows, header = _read_rows(path)
    if header and text_column not in header:
        header.append(text_column)
    changed = 0
    for row in rows:
        if row is None:
            continue
        key = _row_file(path, row)
        if key in captions and row.get(text_column) != captions[key]:
            row[text_column] = captions[key]
            changed += 1
    _write_rows(path, rows, header)
    return changed


def save_captions(dataset_dir: str | Path, captions: dict[str, str], text_column: str = "text") -> int:
    """Write edited captions into the folder's caption files (see the module docstring).

    Args:
        captions: ``{audio file path: new caption}``; files outside ``dataset_dir`` are refused.

    Returns:
        The number of captions changed.

    Raises:
        UserError: a file outside the folder, or a caption with a line break in a ``.txt`` layout.
    """
    root = Path(dataset_dir).expanduser().resolve()
    by_file: dict[Path | None, dict[str, str]] = {}
    for path, caption in captions.items():
        audio = _inside(root, path)
        by_file.setdefault(_caption_file(audio, root), {})[str(audio)] = " ".join(str(caption).split())
    changed = 0
    for metadata, entries in by_file.items():
        if metadata is not None:
            changed += _rewrite_metadata(metadata, entries, text_column)
            continue
        for audio, caption in entries.items():
            sidecar = Path(audio).with_suffix(".txt")
            old = sidecar.read_text(encoding="utf-8").strip() if sidecar.is_file() else None
            if caption != (old or ""):
                sidecar.write_text(caption + "\n", encoding="utf-8")
                changed += 1
    return changed


# ------------------------------------------------------------------------------------------------- uploads


def _extract_zip(archive: Path, target: Path) -> tuple[list[str], list[str]]:
    """Extract the audio and caption files of a zip into ``target``; entries that would land outside it (``..``,
    absolute paths) and other file types are left out."""
    added, skipped = [], []
    try:
        with zipfile.ZipFile(archive) as bundle:
            for entry in bundle.infolist():
                if entry.is_dir():
                    continue
                destination = (target / entry.filename).resolve()
                if target.resolve() not in destination.parents:
                    skipped.append(f"{entry.filename} (outside the folder)")
                elif destination.suffix.lower() not in UPLOAD_EXTENSIONS or "__MACOSX" in entry.filename:
                    skipped.append(f"{entry.filename} (not audio or captions)")
                else:
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    with bundle.open(entry) as source, destination.open("wb") as out:
                        shutil.copyfileobj(source, out)
                    added.append(str(destination.relative_to(target.resolve())))
    except zipfile.BadZipFile:
        raise backend.UserError(
            f"'{archive.name}' is not a readable zip file; upload the audio files or a valid zip"
        ) from None
    return added, skipped


def add_uploads(files: list[str | Path], target: Path) -> tuple[list[str], list[str]]:
    """Copy uploaded audio and caption files into ``target`` (zips are extracted).

    Returns:
        ``(added, skipped)``: file names added (relative to ``target``), and those left out with the reason.
    """
    target.mkdir(parents=True, exist_ok=True)
    added: list[str] = []
    skipped: list[str] = []
    for upload in files:
        path = Path(upload)
        if path.suffix.lower() == ".zip":
            more, left = _extract_zip(path, target)
            added += more
            skipped += left
        elif path.suffix.lower() in UPLOAD_EXTENSIONS:
            shutil.copyfile(path, target / path.name)
            added.append(path.name)
        else:
            skipped.append(f"{path.name} (not audio or captions)")
    return added, skipped


# ------------------------------------------------------------------------------------------------ exclusions


def _inside(root: Path, path: str | Path) -> Path:
    audio = Path(path).resolve()
    if root not in audio.parents:
        raise backend.UserError(f"'{path}' is not inside the audio folder '{root}'; prepare that folder again")
    return audio


def excluded_files(dataset_dir: str | Path, text_column: str = "text") -> dict[str, str | None]:
    """The audio files of the folder left out of training from the page: ``{absolute path, as it was: caption}``."""
    root = Path(dataset_dir).expanduser().resolve()
    if not root.is_dir():
        return {}
    found: dict[str, str | None] = {}
    for renamed in root.rglob(f"*{EXCLUDED_SUFFIX}"):
        audio = renamed.with_suffix("")
        sidecar = audio.with_suffix(".txt")
        found[str(audio)] = sidecar.read_text(encoding="utf-8").strip() if sidecar.is_file() else None
    for aside in root.rglob(EXCLUDED_ROWS):
        for line in aside.read_text(encoding="utf-8").splitlines():
            if line.strip():
                entry = json.loads(line)
                path = _row_file(aside.parent / entry["metadata"], entry["row"])
                if path:
                    found[path] = entry["row"].get(text_column)
    return found


def exclude_file(dataset_dir: str | Path, path: str | Path) -> None:
    """Leave one audio file out of training without deleting it (see the module docstring)."""
    root = Path(dataset_dir).expanduser().resolve()
    audio = _inside(root, path)
    metadata = _caption_file(audio, root)
    if metadata is None:
        os.replace(audio, audio.with_name(audio.name + EXCLUDED_SUFFIX))
        return
    rows, header = _read_rows(metadata)
    kept = [row for row in rows if row is None or _row_file(metadata, row) != str(audio)]
    removed = [row for row in rows if row is not None and _row_file(metadata, row) == str(audio)]
    with (metadata.parent / EXCLUDED_ROWS).open("a", encoding="utf-8") as aside:
        for row in removed:
            aside.write(json.dumps({"metadata": metadata.name, "row": row}, ensure_ascii=False) + "\n")
    _write_rows(metadata, kept, header)


def include_file(dataset_dir: str | Path, path: str | Path) -> None:
    """Undo :func:`exclude_file`: the file is trained on again."""
    root = Path(dataset_dir).expanduser().resolve()
    audio = Path(path).resolve()
    renamed = audio.with_name(audio.name + EXCLUDED_SUFFIX)
    if renamed.is_file() and root in renamed.parents:
        os.replace(renamed, audio)
        return
    for aside in root.rglob(EXCLUDED_ROWS):
        entries = [json.loads(line) for line in aside.read_text(encoding="utf-8").splitlines() if line.strip()]
        back = [e for e in entries if _row_file(aside.parent / e["metadata"], e["row"]) == str(audio)]
        if not back:
            continue
        for entry in back:
            metadata = aside.parent / entry["metadata"]
            rows, header = _read_rows(metadata)
            _write_rows(metadata, [*rows, entry["row"]], header)
        rest = [e for e in entries if e not in back]
        if rest:
            aside.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in rest), encoding="utf-8")
        else:
            aside.unlink()
        return
