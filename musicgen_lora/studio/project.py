"""A studio project: one folder holding its audio, the config the form wrote, its run, earlier runs and renders.

::

    PROJECTS_DIR/
      .cache/                     EnCodec codes and analyses, shared by all projects (data_cache_dir)
      .presets/NAME.json          saved forms (presets), shared by all projects
      NAME/
        data/                     uploaded audio (or any folder picked on the Data tab)
        config.json               the run's config, written from the form (what prepare and training read)
        run/                      output_dir: adapter, checkpoint-N/, samples/, progress.jsonl, prepared_data/, ...
        history/NAME/             earlier runs, set aside by *Start over* (each with its own progress.jsonl)
        renders/N-.../            the Listen tab's renders, one folder per model
        merged/                   the standalone model (adapter merged in)
        studio/                   the run manager's lock, state, exit status and logs

A project's folder is made when something is first written into it (a config, an upload, a run), so a name typed
and abandoned leaves nothing behind. Paths inside the projects folder are shown relative to it (``demo/data``), and a
relative path typed into the page is read relative to it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import backend

PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEMO_PROJECT = "demo"
# Keys the studio owns: the form's fields and where the run goes. The JSON box may hold every other option.
STUDIO_KEYS = ("output_dir", "dataset_name")


def check_project_name(name: str | None, what: str = "project name") -> str:
    """``name`` stripped, when it is a plain folder name.

    Raises:
        UserError: it is not (a path, spaces, empty, too long).
    """
    name = (name or "").strip()
    if not PROJECT_NAME.match(name):
        raise backend.UserError(
            f"{what} {name!r} is not allowed; use letters, digits, '_', '-' or '.' (at most 64), e.g. my-songs"
        )
    return name


@dataclass(frozen=True)
class Project:
    """Paths of one project folder (see the module docstring)."""

    root: Path  # PROJECTS_DIR
    name: str

    @classmethod
    def open(cls, projects_dir: str | Path, name: str) -> Project:
        """The project called ``name`` (its folder is made by the first write into it).

        Raises:
            UserError: a name that is not a plain folder name.
        """
        return cls(Path(projects_dir).expanduser().resolve(), check_project_name(name))

    @property
    def folder(self) -> Path:
        return self.root / self.name

    @property
    def exists(self) -> bool:
        return self.folder.is_dir()

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
    def history_dir(self) -> Path:
        return self.folder / "history"

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


def shown_path(root: Path, path: str | Path | None) -> str:
    """A path as the page shows it: relative to the projects folder when inside it (``demo/data``)."""
    if not path:
        return ""
    resolved = Path(path).expanduser()
    try:
        return str(resolved.resolve().relative_to(root))
    except ValueError:
        return str(path)


def typed_path(root: Path, text: str | None) -> Path:
    """A folder typed into the page: absolute, ``~/...``, or relative to the projects folder."""
    path = Path((text or "").strip()).expanduser()
    return path if path.is_absolute() else root / path


def typed_model(root: Path, text: str | None) -> str:
    """The base model typed into the page: a folder (absolute, or relative to the projects folder) or a Hub id."""
    text = (text or "").strip()
    local = typed_path(root, text)
    return str(local.resolve()) if text and local.is_dir() else text


# ------------------------------------------------------------------------------------- rename, delete, history


def _rewrite_paths(path: Path, old: Path, new: Path) -> None:
    """Replace the folder ``old`` by ``new`` at the start of every path in a JSON file's string values."""
    if not path.is_file():
        return
    prefix = str(old)

    def moved(value: Any) -> Any:
        if isinstance(value, str) and (value == prefix or value.startswith(prefix + os.sep)):
            return str(new) + value[len(prefix) :]
        if isinstance(value, list):
            return [moved(v) for v in value]
        if isinstance(value, dict):
            return {k: moved(v) for k, v in value.items()}
        return value

    path.write_text(json.dumps(moved(json.loads(path.read_text(encoding="utf-8"))), indent=2), encoding="utf-8")


def rename_project(projects_dir: Path, old: str, new: str) -> Project:
    """Move a project to a new name; the paths its configs and run state hold follow it.

    Raises:
        UserError: a bad or taken name, or no such project.
    """
    source, target = Project.open(projects_dir, old), Project.open(projects_dir, check_project_name(new, "new name"))
    if not source.exists:
        raise backend.UserError(f"project '{old}' has no folder yet; nothing to rename (type the new name instead)")
    if target.exists:
        raise backend.UserError(f"a project called '{target.name}' exists already; choose another name")
    os.replace(source.folder, target.folder)
    for config in [
        target.config_path,
        target.run_dir / backend.RESOLVED_CONFIG_NAME,
        target.folder / "studio" / "run-state.json",
        *target.history_dir.glob(f"*/{backend.RESOLVED_CONFIG_NAME}"),
    ]:
        _rewrite_paths(config, source.folder, target.folder)
    return target


def delete_project(projects_dir: Path, name: str) -> None:
    """Delete a project's folder and everything in it (the page asks first)."""
    project = Project.open(projects_dir, name)
    if project.exists:
        shutil.rmtree(project.folder)


def set_run_aside(project: Project, name: str | None = None) -> str | None:
    """Move the project's run to ``history/NAME`` (its prepared data stays: the next run reuses it). Returns the
    name, or None when the project has no run.

    Raises:
        UserError: a bad name, or one the history already holds.
    """
    run = project.run_dir
    if not run.is_dir() or not any(p.name != backend.PREPARED_DIR_NAME for p in run.iterdir()):
        return None
    name = check_project_name(name, "name for the earlier run") if (name or "").strip() else _default_run_name(run)
    target = project.history_dir / name
    if target.exists():
        raise backend.UserError(f"the run history already holds '{name}'; choose another name for the earlier run")
    target.mkdir(parents=True)
    for path in run.iterdir():
        if path.name != backend.PREPARED_DIR_NAME:
            os.replace(path, target / path.name)
    log = project.folder / "studio" / "train.log"
    if log.is_file():
        shutil.copyfile(log, target / "train.log")
    return name


def _default_run_name(run: Path) -> str:
    stamp = max((p.stat().st_mtime for p in run.iterdir()), default=time.time())
    return "run-" + time.strftime("%Y%m%d-%H%M%S", time.localtime(stamp))


def history_runs(project: Project) -> dict[str, Path]:
    """The project's earlier runs, newest first: ``{name: folder}``."""
    if not project.history_dir.is_dir():
        return {}
    runs = [p for p in project.history_dir.iterdir() if p.is_dir()]
    return {p.name: p for p in sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)}


# ------------------------------------------------------------------------------------------------ the config


@dataclass
class RunForm:
    """The Data and Train tabs' fields, as the page sends them."""

    base_model: str
    dataset: str
    trigger_word: str = ""
    add_metadata: bool = True
    clap_model: str = ""
    steps: float | None = 0  # 0: train for `epochs`
    epochs: float | None = 3
    learning_rate: float | None = 2e-4
    rank: float | None = 16
    batch_size: float | None = 8
    accumulation: float | None = 1
    clip_seconds: float | None = 30
    precision: str = "fp32"
    gradient_checkpointing: bool = False
    sample_prompts: str = ""
    sample_every_steps: float | None = 0
    save_steps: float | None = 100
    logging_steps: float | None = 10
    sample_seconds: float | None = 8
    tracker: str = "none"
    extra_json: str = ""


PRECISIONS = {"fp32": {}, "bf16": {"bf16": True}, "fp16": {"fp16": True}}
TRACKERS = ("none", "tensorboard", "wandb")
# The form's fields and the options they write (the rest of the config comes from the JSON box).
FORM_OPTIONS = {
    "trigger_word": "instance_prompt",
    "add_metadata": "add_metadata",
    "clap_model": "clap_model_name_or_path",
    "epochs": "num_train_epochs",
    "learning_rate": "learning_rate",
    "rank": "lora_r",
    "batch_size": "per_device_train_batch_size",
    "accumulation": "gradient_accumulation_steps",
    "clip_seconds": "max_duration_in_seconds",
    "gradient_checkpointing": "gradient_checkpointing",
    "sample_every_steps": "sample_every_steps",
    "save_steps": "save_steps",
    "logging_steps": "logging_steps",
    "sample_seconds": "sample_duration_in_seconds",
}
# What the page calls an option, for messages that name one (an error of the command names the option).
FIELD_LABELS = {
    "model_name_or_path": "Base model",
    "dataset_name": "Audio folder",
    "instance_prompt": "Trigger word",
    "clap_model_name_or_path": "CLAP model folder",
    "max_steps": "Steps",
    "num_train_epochs": "Epochs",
    "learning_rate": "Learning rate",
    "lora_r": "LoRA rank",
    "per_device_train_batch_size": "Batch size",
    "gradient_accumulation_steps": "Gradient accumulation",
    "max_duration_in_seconds": "Clip length (s)",
    "sample_prompts": "Sample prompts",
    "sample_every_steps": "Render the samples every N steps",
    "save_steps": "Save a checkpoint every N steps",
    "logging_steps": "Log every N steps",
    "sample_duration_in_seconds": "Sample length (s)",
    "report_to": "Tracker",
}


def _number(value: Any, label: str, integer: bool = False, minimum: float | None = None, above: bool = False) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise backend.UserError(f"{label} is empty; enter a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise backend.UserError(f"{label} must be a number, got {value!r}") from None
    if integer and number != int(number):
        raise backend.UserError(f"{label} must be a whole number, got {value}")
    if minimum is not None and (number <= minimum if above else number < minimum):
        limit = "more than" if above else "at least"
        raise backend.UserError(f"{label} must be {limit} {minimum:g}, got {number:g}")
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
    if not str(form.dataset or "").strip():
        raise backend.UserError("no audio folder; enter the folder of your songs on the Data tab, or upload files")
    dataset = typed_path(project.root, form.dataset)
    if not dataset.is_dir():
        raise backend.UserError(
            f"audio folder '{form.dataset.strip()}' not found; enter an existing folder, or upload files"
        )
    if form.precision not in PRECISIONS:
        raise backend.UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {form.precision!r}")
    if form.tracker not in TRACKERS:
        raise backend.UserError(f"the tracker must be one of {', '.join(TRACKERS)}, got {form.tracker!r}")
    steps = _number(form.steps, "steps", integer=True, minimum=0)
    rank = _number(form.rank, "LoRA rank", integer=True, minimum=1)
    clap = (form.clap_model or "").strip()
    fields: dict[str, Any] = {
        "model_name_or_path": typed_model(project.root, form.base_model),
        "instance_prompt": form.trigger_word.strip() or None,
        "add_metadata": bool(form.add_metadata),
        "clap_model_name_or_path": str(typed_path(project.root, clap)) if clap else None,
        "max_steps": steps if steps > 0 else -1,
        "num_train_epochs": _number(form.epochs, "epochs", minimum=0),
        "learning_rate": _number(form.learning_rate, "learning rate", minimum=0, above=True),
        "lora_r": rank,
        "per_device_train_batch_size": _number(form.batch_size, "batch size", integer=True, minimum=1),
        "gradient_accumulation_steps": _number(form.accumulation, "gradient accumulation", integer=True, minimum=1),
        "max_duration_in_seconds": _number(form.clip_seconds, "clip length", minimum=0, above=True),
        "bf16": False,
        "fp16": False,
        **PRECISIONS[form.precision],
        "gradient_checkpointing": bool(form.gradient_checkpointing),
        "sample_prompts": [line.strip() for line in (form.sample_prompts or "").splitlines() if line.strip()],
        "sample_every_steps": _number(form.sample_every_steps, "sample every N steps", integer=True, minimum=0),
        "sample_duration_in_seconds": _number(form.sample_seconds, "sample length", minimum=0, above=True),
        "save_strategy": "steps",
        "save_steps": _number(form.save_steps, "save every N steps", integer=True, minimum=1),
        "logging_steps": _number(form.logging_steps, "log every N steps", integer=True, minimum=1),
        "report_to": form.tracker,
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
    """Check the config as training will, then write it where prepare and training read it (atomically: a run may
    be reading the old one). A config training would refuse is never written, so the project keeps its own.

    Raises:
        UserError: the option training would refuse, in training's words.
    """
    project.root.mkdir(parents=True, exist_ok=True)
    staging = project.root / f".config.{project.name}.{os.getpid()}.tmp.json"  # a refused project gets no folder
    try:
        staging.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        backend.check_config(staging)
        project.folder.mkdir(exist_ok=True)
        os.replace(staging, project.config_path)
    finally:
        staging.unlink(missing_ok=True)
    return project.config_path
