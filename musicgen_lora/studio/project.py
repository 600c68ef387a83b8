"""A studio project: one folder holding its audio, the config the form wrote, its run and its renders.

::

    PROJECTS_DIR/
      .cache/                     EnCodec codes and analyses, shared by all projects (data_cache_dir)
      NAME/
        data/                     uploaded audio (or any folder picked on the Data tab)
        config.json               the run's config, written from the form (what prepare and training read)
        run/                      output_dir: adapter, checkpoint-N/, samples/, prepared_data/, evaluation/
        renders/N-.../            the Listen tab's renders, one folder per model
        merged/                   the standalone model (adapter merged in)
        studio/                   the run manager's lock, state and logs

Caption edits are written into the folder's own caption files, in the layout preparation reads: the ``text``
column of ``metadata.jsonl`` / ``metadata.csv`` when the folder has one, else the ``.txt`` file beside each audio
file. Changed captions change the data's fingerprint, so the next training prepares again (from cached codes).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import backend

PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEMO_PROJECT = "demo"
CAPTION_FILES = ("metadata.jsonl", "metadata.csv")
UPLOAD_EXTENSIONS = (*backend.AUDIO_EXTENSIONS, *backend.FFMPEG_EXTENSIONS, ".txt", ".jsonl", ".csv")
# Keys the studio owns: the form's fields and where the run goes. The JSON box may hold every other option.
STUDIO_KEYS = ("output_dir", "dataset_name")


def check_project_name(name: str | None) -> str:
    """``name`` stripped, when it is a plain folder name.

    Raises:
        UserError: it is not (a path, spaces, empty, too long).
    """
    name = (name or "").strip()
    if not PROJECT_NAME.match(name):
        raise backend.UserError(
            f"project name {name!r} is not allowed; use letters, digits, '_', '-' or '.' (at most 64), e.g. my-songs"
        )
    return name


@dataclass(frozen=True)
class Project:
    """Paths of one project folder (see the module docstring)."""

    root: Path  # PROJECTS_DIR
    name: str

    @classmethod
    def open(cls, projects_dir: str | Path, name: str) -> Project:
        """The project called ``name`` (created on first use).

        Raises:
            UserError: a name that is not a plain folder name.
        """
        project = cls(Path(projects_dir).expanduser().resolve(), check_project_name(name))
        project.folder.mkdir(parents=True, exist_ok=True)
        return project

    @property
    def folder(self) -> Path:
        return self.root / self.name

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def config_path(self) -> Path:
        return self.folder / "config.json"

    @property
    def run_dir(self) -> Path:
        return self.folder / "run"

    @property
    def cache_dir(self) -> Path:
        return self.root / ".cache"

    @property
    def demo_model_dir(self) -> Path:
        return self.folder / "tiny-musicgen"

    @property
    def report_path(self) -> Path:
        return self.run_dir / backend.PREPARED_DIR_NAME / backend.REPORT_NAME


def list_projects(projects_dir: str | Path) -> list[str]:
    """The project folders under ``projects_dir``."""
    root = Path(projects_dir).expanduser()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and PROJECT_NAME.match(p.name))


# ------------------------------------------------------------------------------------------------ the config


@dataclass
class RunForm:
    """The Data and Train tabs' fields, as the page sends them."""

    base_model: str
    dataset: str
    trigger_word: str = ""
    add_metadata: bool = True
    steps: float | None = 0  # 0: train for `epochs`
    epochs: float | None = 3
    learning_rate: float | None = 2e-4
    rank: float | None = 16
    batch_size: float | None = 8
    precision: str = "fp32"
    gradient_checkpointing: bool = False
    sample_prompts: str = ""
    sample_every_steps: float | None = 0
    save_steps: float | None = 100
    logging_steps: float | None = 10
    sample_seconds: float | None = 8
    extra_json: str = ""


PRECISIONS = {"fp32": {}, "bf16": {"bf16": True}, "fp16": {"fp16": True}}


def _number(value: Any, label: str, integer: bool = False, minimum: float | None = None) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise backend.UserError(f"{label} is empty; enter a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise backend.UserError(f"{label} must be a number, got {value!r}") from None
    if integer and number != int(number):
        raise backend.UserError(f"{label} must be a whole number, got {value}")
    if minimum is not None and number < minimum:
        raise backend.UserError(f"{label} must be at least {minimum:g}, got {number:g}")
    return int(number) if integer else number


def parse_extra_json(text: str) -> dict[str, Any]:
    """The optional JSON box: an object of further options (``{}`` when empty).

    Raises:
        UserError: not JSON, or not an object, or a key the studio sets itself.
    """
    if not (text or "").strip():
        return {}
    try:
        values = json.loads(text)
    except json.JSONDecodeError as err:
        raise backend.UserError(
            f"the JSON options are not valid JSON ({err.msg} at line {err.lineno} column {err.colno}); fix them or "
            "empty the box"
        ) from None
    if not isinstance(values, dict):
        raise backend.UserError(
            'the JSON options must be an object like {"lora_dropout": 0.1}; fix them or empty the box'
        )
    owned = [key for key in STUDIO_KEYS if key in values]
    if owned:
        raise backend.UserError(
            f"the JSON options set {', '.join(owned)}, which the studio sets itself (the project's run folder and the "
            "Data tab's folder); remove it from the JSON"
        )
    return values


def build_config(project: Project, form: RunForm) -> tuple[dict[str, Any], list[str]]:
    """The run's config from the form: the JSON box's options, then the form's fields over them.

    Returns:
        ``(config, notices)``: notices name the JSON keys a form field replaced.

    Raises:
        UserError: an empty or malformed field, bad JSON, a missing folder.
    """
    extra = parse_extra_json(form.extra_json)
    if not (form.base_model or "").strip():
        raise backend.UserError("the base model is empty; enter a Hub id (facebook/musicgen-small) or a model folder")
    dataset = Path((form.dataset or "").strip()).expanduser()
    if not str(form.dataset or "").strip():
        raise backend.UserError("no audio folder; enter the folder of your songs on the Data tab, or upload files")
    if not dataset.is_dir():
        raise backend.UserError(f"audio folder '{dataset}' not found; enter an existing folder, or upload files")
    if form.precision not in PRECISIONS:
        raise backend.UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {form.precision!r}")
    steps = _number(form.steps, "steps", integer=True, minimum=0)
    rank = _number(form.rank, "LoRA rank", integer=True, minimum=1)
    fields: dict[str, Any] = {
        "model_name_or_path": form.base_model.strip(),
        "instance_prompt": form.trigger_word.strip() or None,
        "add_metadata": bool(form.add_metadata),
        "max_steps": steps if steps > 0 else -1,
        "num_train_epochs": _number(form.epochs, "epochs", minimum=0),
        "learning_rate": _number(form.learning_rate, "learning rate", minimum=0),
        "lora_r": rank,
        "per_device_train_batch_size": _number(form.batch_size, "batch size", integer=True, minimum=1),
        "bf16": False,
        "fp16": False,
        **PRECISIONS[form.precision],
        "gradient_checkpointing": bool(form.gradient_checkpointing),
        "sample_prompts": [line.strip() for line in (form.sample_prompts or "").splitlines() if line.strip()],
        "sample_every_steps": _number(form.sample_every_steps, "sample every N steps", integer=True, minimum=0),
        "sample_duration_in_seconds": _number(form.sample_seconds, "sample length", minimum=0),
        "save_strategy": "steps",
        "save_steps": _number(form.save_steps, "save every N steps", integer=True, minimum=1),
        "logging_steps": _number(form.logging_steps, "log every N steps", integer=True, minimum=1),
        "disable_tqdm": False,  # the page reads the progress bar (see progress.py)
    }
    notices = [
        f"the form's value of '{key}' replaces the JSON's"
        for key in fields
        if key in extra and extra[key] != fields[key]
    ]
    config = {"data_cache_dir": str(project.cache_dir), "lora_alpha": 2 * rank, **extra, **fields}
    config["dataset_name"] = str(dataset.resolve())
    config["output_dir"] = str(project.run_dir)
    return config, notices


def write_config(project: Project, config: dict[str, Any]) -> Path:
    """Write the config where prepare and training read it (atomically: a run may be reading the old one)."""
    staging = project.config_path.with_suffix(".tmp")
    staging.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    os.replace(staging, project.config_path)
    return project.config_path


# --------------------------------------------------------------------------------------------- caption edits


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


def _rewrite_metadata(path: Path, captions: dict[str, str], text_column: str) -> int:
    """Set the caption of the rows whose file (relative to ``path``'s folder) is in ``captions``; other columns
    and rows are kept as they are. Returns the number of rows changed."""
    if path.suffix == ".jsonl":
        lines = path.read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) if line.strip() else None for line in lines]
        header: list[str] = []
    else:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows, header = list(reader), list(reader.fieldnames or [])
        if text_column not in header:
            header.append(text_column)
    changed = 0
    for row in rows:
        if row is None:
            continue
        name = row.get("file_name") or row.get("audio")
        key = str((path.parent / str(name)).resolve()) if name else None
        if key in captions and row.get(text_column) != captions[key]:
            row[text_column] = captions[key]
            changed += 1
    staging = path.with_name(path.name + ".tmp")
    if path.suffix == ".jsonl":
        text = "".join((json.dumps(row, ensure_ascii=False) if row is not None else "") + "\n" for row in rows)
        staging.write_text(text, encoding="utf-8")
    else:
        with staging.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)
    os.replace(staging, path)
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
        audio = Path(path).resolve()
        if root not in audio.parents:
            raise backend.UserError(f"'{path}' is not inside the audio folder '{root}'; prepare that folder again")
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
