"""What each of the page's buttons does, in plain Python (no Gradio here, so it is tested without a browser).

Every public method of :class:`Studio` takes the page's values and returns plain data (Markdown strings, pandas
DataFrames, file paths); problems come back as a message (``**Error:** ...``), never as a traceback. The work itself is
done by the project's commands, started through :mod:`.runs`.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import soundfile as sf

from . import backend
from .progress import Progress, loss_history, read_log
from .project import DEMO_PROJECT, Project, RunForm, add_uploads, build_config, save_captions, write_config
from .runs import RunManager, RunState, python_command, script

logger = logging.getLogger(__name__)
T = TypeVar("T")
POLL_SECONDS = 1.0  # how often a button that waits for its command refreshes the page
LOG_TAIL_CHARS = 4000


def error_text(err: BaseException) -> str:
    """The page's message for a problem: the one-line user error, or a short note for anything unexpected (whose
    traceback goes to the studio's terminal, not the page)."""
    if isinstance(err, backend.UserError):
        return f"**Error:** {backend.one_line(err)}"
    logger.exception("unexpected error in the studio")
    problem = f"{type(err).__name__}: {backend.one_line(err)[:300]}"
    return f"**Error:** unexpected problem ({problem}); the studio's terminal shows the details"


def tail(text: str, chars: int = LOG_TAIL_CHARS) -> str:
    """The end of a log as it looks in a terminal (each ``\\r``-redrawn progress line shown once)."""
    lines = [line.rsplit("\r", 1)[-1] for line in text[-4 * chars :].split("\n")]
    return "\n".join(line for line in lines if line.strip())[-chars:]


def _duration(path: str) -> float | None:
    try:
        return round(sf.info(path).duration, 2)
    except (RuntimeError, OSError, sf.LibsndfileError):
        return None


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


TRACK_COLUMNS = ["file", "split", "seconds", "status", "caption", "bpm", "key", "training caption"]
CAPTION_COLUMN = TRACK_COLUMNS.index("caption")


def counts_frame(label: str, unit: str, counts: dict[str, int] | None = None) -> pd.DataFrame:
    """A bar plot's data: one row per bin (``label``: text) with its count (``unit``); typed even when empty, so the
    plot treats the bins as categories."""
    counts = counts or {}
    return pd.DataFrame(
        {label: pd.Series(list(counts), dtype=object), unit: pd.Series(list(counts.values()), dtype=int)}
    )


@dataclass
class DataView:
    """The Data tab's report."""

    summary: str = ""
    lengths: pd.DataFrame = field(default_factory=lambda: counts_frame("length", "clips"))
    tempi: pd.DataFrame = field(default_factory=lambda: counts_frame("tempo", "tracks"))
    keys: pd.DataFrame = field(default_factory=lambda: counts_frame("key", "tracks"))
    tracks: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=TRACK_COLUMNS))


@dataclass
class TrainView:
    """The Train tab's live state."""

    status: str
    running: bool
    losses: pd.DataFrame  # long format: step, value, curve
    codebooks: pd.DataFrame  # long format: step, value, codebook
    samples: list[tuple[str, str]]  # (label, wav path), oldest render first
    log: str


class Studio:
    """The page's actions on the projects of one folder."""

    def __init__(self, projects_dir: str | Path) -> None:
        self.root = Path(projects_dir).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.runs = RunManager()

    def project(self, name: str) -> Project:
        return Project.open(self.root, name)

    # ------------------------------------------------------------------------------------------ form defaults

    def defaults(self, name: str) -> RunForm:
        """The form for a project: its saved config if it has one, else the demo's or generic values."""
        project = self.project(name)
        if project.config_path.is_file():
            return form_from_config(json.loads(project.config_path.read_text(encoding="utf-8")))
        if name == DEMO_PROJECT:
            return self.demo_form()
        folder = str(project.data_dir) if project.data_dir.is_dir() else ""
        return RunForm(base_model="facebook/musicgen-small", dataset=folder, batch_size=4)

    def demo_form(self) -> RunForm:
        """The offline demo: the tiny random MusicGen and the synthetic corpus (built on first use), with the demo
        training's settings (a run of a minute on a laptop CPU)."""
        project = self.project(DEMO_PROJECT)
        backend.ensure_demo_assets(project.demo_model_dir, project.data_dir)
        demo = backend.DEMO_CONFIG
        rest = {k: demo[k] for k in ("max_duration_in_seconds", "min_duration_in_seconds", "lora_alpha", "seed")}
        return RunForm(
            base_model=str(project.demo_model_dir),
            dataset=str(project.data_dir),
            steps=40,
            epochs=1,
            learning_rate=demo["learning_rate"],
            rank=demo["lora_r"],
            batch_size=demo["per_device_train_batch_size"],
            sample_prompts="\n".join(demo["sample_prompts"]),
            sample_every_steps=20,
            save_steps=20,
            logging_steps=5,
            sample_seconds=demo["sample_duration_in_seconds"],
            extra_json=json.dumps(rest, indent=1),
        )

    def _config(self, project: Project, form: RunForm, **overrides: Any) -> tuple[Path, list[str]]:
        """Write the form's config into the project and check it as training will (UserError if it is bad)."""
        config, notices = build_config(project, form)
        config.update(overrides)
        path = write_config(project, config)
        backend.check_config(path)
        return path, notices

    # ---------------------------------------------------------------------------------------------- data tab

    def upload(self, name: str, files: list[str] | None) -> tuple[str, str]:
        """Copy uploaded audio (or zips of it) into the project's data folder. Returns ``(message, folder)``."""
        project = self.project(name)
        if not files:
            return "**Error:** no files chosen; pick audio files (wav, flac, ogg, mp3, ...) or a zip of them", ""
        added, skipped = add_uploads(files, project.data_dir)
        message = f"Added {len(added)} file(s) to `{project.data_dir}`."
        if skipped:
            message += " Left out: " + "; ".join(skipped[:10]) + (" ..." if len(skipped) > 10 else "")
        return message, str(project.data_dir)

    def prepare(self, name: str, form: RunForm) -> Iterator[tuple[str, str, DataView | None]]:
        """Run ``python -m musicgen_lora.prepare`` on the form's config; yields ``(message, log, view)`` while it
        runs and once at the end with the data report (``view`` None until then)."""
        try:
            project = self.project(name)
            config_path, notices = self._config(project, form)
            state = self.runs.start(
                project.folder, "prepare", python_command("-m", "musicgen_lora.prepare", str(config_path))
            )
        except Exception as err:  # noqa: BLE001 - every problem becomes the page's message
            yield error_text(err), "", None
            return
        for note in notices:
            logger.info(note)
        while state.returncode is None:  # (not `running`: the exit status is recorded just after the process ends)
            yield "Preparing the data…", tail(Path(state.log).read_text(encoding="utf-8", errors="replace")), None
            time.sleep(POLL_SECONDS)
            state = self.runs.state(project.folder) or state
        log = tail(Path(state.log).read_text(encoding="utf-8", errors="replace"))
        if state.returncode != 0:
            error = read_log(Path(state.log)).error
            message = (
                f"**Error:** {error}"
                if error
                else f"**Error:** preparation failed (exit status {state.returncode}); see the log"
            )
            yield message, log, None
            return
        yield (
            "Prepared. The report is below; edit captions in the table and press *Save captions*.",
            log,
            self.data_view(name),
        )

    def data_view(self, name: str) -> DataView:
        """The data report of the project's last preparation, and its per-file table."""
        project = self.project(name)
        if not project.report_path.is_file() or not project.config_path.is_file():
            return DataView(summary="No data report yet: choose a folder and press *Prepare*.")
        report = json.loads(project.report_path.read_text(encoding="utf-8"))
        args = backend.check_config(project.config_path)
        view = DataView(summary=report_summary(report))
        lengths, tempi, keys, skipped = {}, {}, {}, {}
        for split in report["splits"].values():
            for label, count in split.get("length_histogram", {}).items():
                lengths[label] = lengths.get(label, 0) + count
            tempo_key = split.get("tempo_key") or {}
            for label, count in tempo_key.get("bpm_histogram", {}).items():
                tempi[label] = tempi.get(label, 0) + count
            for label, count in tempo_key.get("keys", {}).items():
                keys[label] = keys.get(label, 0) + count
            for entry in split.get("files", {}).get("skipped_files", []):
                skipped[str(Path(entry["path"]).resolve())] = entry["reason"]
        view.lengths = counts_frame("length", "clips", lengths)
        view.tempi = counts_frame("tempo", "tracks", tempi)
        view.keys = counts_frame("key", "tracks", keys)
        view.tracks = self._track_table(args, skipped)
        return view

    @staticmethod
    def _track_table(args: Any, skipped: dict[str, str]) -> pd.DataFrame:
        root = Path(args.dataset_name)
        rows = []
        for track in backend.list_tracks(args):
            path = str(Path(track["path"]).resolve())
            reason = skipped.get(path)
            status = "kept" if reason is None else f"left out: {reason}"
            if not track["used"]:
                reason = status = (
                    "not used (max_train_samples)"
                    if track["split"] == args.train_split_name
                    else "not used (max_eval_samples)"
                )
            measured = {}
            if args.add_metadata and reason is None:
                try:
                    measured = backend.measured_fields(args, path) or {}
                except Exception as err:  # noqa: BLE001 - an unreadable file shows as such, the table still loads
                    reason = f"unreadable: {backend.one_line(err)[:80]}"
                    status = f"left out: {reason}"
            name = str(Path(path).relative_to(root.resolve())) if root.resolve() in Path(path).parents else path
            rows.append(
                [
                    name,
                    track["split"],
                    _duration(path),
                    status,
                    track["caption"] or "",
                    measured.get("bpm"),
                    measured.get("key") or "",
                    backend.final_caption(args, track["caption"], measured) if reason is None else "",
                ]
            )
        return pd.DataFrame(rows, columns=TRACK_COLUMNS)

    def save_captions(self, name: str, table: pd.DataFrame | None) -> str:
        """Write the table's captions into the folder's caption files (only those that changed)."""
        project = self.project(name)
        if table is None or len(table) == 0 or not project.config_path.is_file():
            return "**Error:** nothing to save; prepare a folder first"
        args = backend.check_config(project.config_path)
        root = Path(args.dataset_name).resolve()
        captions = {  # rows added in the page (no file) are ignored
            str((root / str(row["file"])).resolve()): str(row["caption"] or "")
            for _, row in table.iterrows()
            if str(row["file"] or "").strip()
        }
        changed = save_captions(root, captions, args.text_column_name)
        if not changed:
            return "No caption changed."
        return (
            f"Saved {changed} caption(s) in `{root}`. Training uses them (it prepares the data again, from cached "
            "codes)."
        )

    def audio_of_row(self, name: str, table: pd.DataFrame | None, row: int) -> str | None:
        """The audio file of a table row, for the player."""
        project = self.project(name)
        if table is None or not 0 <= row < len(table) or not project.config_path.is_file():
            return None
        root = Path(json.loads(project.config_path.read_text(encoding="utf-8"))["dataset_name"])
        path = root / str(table.iloc[row]["file"])
        return str(path) if path.is_file() else None

    # --------------------------------------------------------------------------------------------- train tab

    def start_training(self, name: str, form: RunForm, start_over: bool = False) -> str:
        """Start ``python finetune_musicgen.py config.json`` (refused while a run is going, or when the project
        holds a previous run and ``start_over`` is not ticked)."""
        try:
            project = self.project(name)
            state = self.runs.state(project.folder)
            if state is not None and state.running:  # said first: a second tab's Start while the run goes
                return f"**Error:** a {state.kind} run is already going in this project; wait for it or stop it first"
            previous = previous_run(project.run_dir)
            if previous and not start_over:
                return (
                    f"**Error:** this project already holds a run ({previous}); press *Resume* to continue it, or tick "
                    "*Start over* to replace it (kept aside until the new run succeeds, then deleted)"
                )
            config_path, notices = self._config(project, form, overwrite_output_dir=bool(start_over))
            self.runs.start(project.folder, "train", python_command(script("finetune_musicgen.py"), str(config_path)))
        except Exception as err:  # noqa: BLE001
            return error_text(err)
        return "Training started." + "".join(f" Note: {n}." for n in notices)

    def resume_training(self, name: str) -> str:
        """Continue the project's run from its newest complete checkpoint, with the config it was started with."""
        try:
            project = self.project(name)
            checkpoint = backend.newest_complete_checkpoint(project.run_dir)
            if checkpoint is None or not project.config_path.is_file():
                return (
                    "**Error:** no checkpoint to resume from yet; press *Start* (checkpoints are saved every *save "
                    "every N steps*)"
                )
            # as a flag, so a config edited in the page since the run started still continues it (see train.rerun)
            argv = python_command(
                script("finetune_musicgen.py"), str(project.config_path), "--resume_from_checkpoint", "true"
            )
            self.runs.start(project.folder, "train", argv, resume=True)
        except Exception as err:  # noqa: BLE001
            return error_text(err)
        return f"Resuming from {checkpoint.name}."

    def stop_training(self, name: str) -> str:
        try:
            self.runs.stop(self.project(name).folder)
        except Exception as err:  # noqa: BLE001
            return error_text(err)
        return "Stopping: training saves a checkpoint, then ends."

    def train_view(self, name: str) -> TrainView:
        """The Train tab's live state: status line, loss curves, samples rendered so far, the log's end."""
        project = self.project(name)
        state = self.runs.state(project.folder)
        if state is None or state.kind != "train":
            return TrainView(
                "No training run yet: set the options and press *Start*.",
                False,
                _empty_losses(),
                _empty_losses(),
                samples_of(project.run_dir),
                "",
            )
        text = Path(state.log).read_text(encoding="utf-8", errors="replace") if Path(state.log).is_file() else ""
        progress = read_log(Path(state.log))
        train, evals = loss_history(project.run_dir, progress, since=state.fresh_since)
        losses, codebooks = loss_frames(train, evals)
        return TrainView(
            status_line(state, progress, project.run_dir),
            state.running,
            losses,
            codebooks,
            samples_of(project.run_dir),
            tail(text),
        )


def form_from_config(config: dict[str, Any]) -> RunForm:
    """The form that writes ``config`` (the inverse of :func:`project.build_config`), the rest as JSON."""
    precision = "bf16" if config.get("bf16") else "fp16" if config.get("fp16") else "fp32"
    steps = config.get("max_steps", -1)
    mapped = {
        "base_model": "model_name_or_path",
        "dataset": "dataset_name",
        "trigger_word": "instance_prompt",
        "add_metadata": "add_metadata",
        "epochs": "num_train_epochs",
        "learning_rate": "learning_rate",
        "rank": "lora_r",
        "batch_size": "per_device_train_batch_size",
        "gradient_checkpointing": "gradient_checkpointing",
        "sample_every_steps": "sample_every_steps",
        "save_steps": "save_steps",
        "logging_steps": "logging_steps",
        "sample_seconds": "sample_duration_in_seconds",
    }
    defaults = asdict(RunForm(base_model="", dataset=""))
    values = {name: config.get(key, defaults[name]) for name, key in mapped.items()}
    values["trigger_word"] = values["trigger_word"] or ""
    used = set(mapped.values()) | {
        "max_steps",
        "bf16",
        "fp16",
        "sample_prompts",
        "save_strategy",
        "disable_tqdm",
        "output_dir",
        "overwrite_output_dir",
        "data_cache_dir",
    }
    rest = {
        k: v
        for k, v in config.items()
        if k not in used and not (k == "lora_alpha" and v == 2 * config.get("lora_r", 0))
    }
    return RunForm(
        **values,
        steps=steps if steps and steps > 0 else 0,
        precision=precision,
        sample_prompts="\n".join(config.get("sample_prompts", [])),
        extra_json=json.dumps(rest, indent=1) if rest else "",
    )


def form_fields() -> list[str]:
    """The names of :class:`RunForm`'s fields, in order (the page's inputs follow it)."""
    return [f.name for f in fields(RunForm)]


def previous_run(run_dir: Path) -> str | None:
    """What shows that ``run_dir`` holds a previous run (its newest checkpoint or a result file), or None."""
    checkpoints = backend.checkpoint_folders(run_dir)
    if checkpoints:
        return checkpoints[-1].name
    return next((name for name in backend.RUN_MARKERS if (run_dir / name).exists()), None)


def report_summary(report: dict[str, Any]) -> str:
    """The data report's numbers as Markdown: files found, read and left out (with reasons), hours, captions."""
    lines = []
    for name, split in report["splits"].items():
        files = split.get("files", {})
        reasons = ", ".join(f"{n} {kind}" for kind, n in files.get("reasons", {}).items())
        left = split.get("left_out", {})
        lines.append(
            f"**{name}**: {files.get('found', split['tracks'])} files found, {files.get('read', split['tracks'])} "
            f"read, "
            f"{files.get('skipped', 0)} left out{f' ({reasons})' if reasons else ''}; {split['tracks']} tracks, "
            f"{split['examples']} examples; {split['hours_found']:.3f} h found, {split['hours_kept']:.3f} h kept; "
            f"{left.get('too_short_tracks', 0)} too short, {left.get('silent_tracks', 0)} silent; captions: "
            f"{split.get('captions', {}).get('tracks_with_own_caption', 0)} own, "
            f"{split.get('captions', {}).get('tracks_with_added_tempo_key', 0)} with tempo/key added."
        )
    return "\n\n".join(lines)


def _empty_losses() -> pd.DataFrame:
    return pd.DataFrame(
        {"step": pd.Series(dtype=float), "value": pd.Series(dtype=float), "curve": pd.Series(dtype=str)}
    )


def loss_frames(train: list[dict[str, float]], evals: list[dict[str, float]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long-format frames for the plots: the train (and eval) loss, and each codebook's cross-entropy."""
    losses = [{"step": r["step"], "value": r["loss"], "curve": "train loss"} for r in train if "loss" in r]
    losses += [{"step": r["step"], "value": r["eval_loss"], "curve": "eval loss"} for r in evals if "eval_loss" in r]
    codebooks = [
        {"step": r["step"], "value": value, "curve": key.replace("ce_", "")}
        for r in train
        for key, value in r.items()
        if key.startswith("ce_q")
    ]
    empty = _empty_losses()
    return (pd.DataFrame(losses) if losses else empty), (pd.DataFrame(codebooks) if codebooks else empty)


def _stage_order(folder: Path) -> tuple[int, int]:
    if folder.name == "base":
        return 0, 0
    if folder.name.startswith("step-") and folder.name[5:].isdigit():
        return 1, int(folder.name[5:])
    return 2, 0  # final


def samples_of(run_dir: Path) -> list[tuple[str, str]]:
    """The listening samples rendered so far, ``(label, wav)``: base first, then each step, then final."""
    samples = []
    stages = [p for p in (run_dir / "samples").glob("*") if p.is_dir()] if (run_dir / "samples").is_dir() else []
    for stage in sorted(stages, key=_stage_order):
        prompts = {}
        if (stage / "prompts.txt").is_file():
            for line in (stage / "prompts.txt").read_text(encoding="utf-8").splitlines():
                file_name, _, prompt = line.partition("\t")
                prompts[file_name] = prompt
        for wav in sorted(stage.glob("*.wav"), key=lambda p: (len(p.stem), p.stem)):
            samples.append((f"{stage.name} · {prompts.get(wav.name, wav.stem)}", str(wav)))
    return samples


def status_line(state: RunState, progress: Progress, run_dir: Path) -> str:
    """One Markdown line saying where the run is."""
    if state.returncode is None:  # going, or just ended and its exit status not recorded yet
        if state.stop_requested:
            return f"**Stopping** at step {progress.step}: saving a checkpoint…"
        if not progress.total:
            return "**Starting**: loading the model and preparing the data…"
        percent = 100 * progress.fraction
        return (
            f"**Training**: step {progress.step}/{progress.total} ({percent:.0f} %), {_clock(progress.elapsed_s)} "
            f"elapsed, "
            f"about {_clock(progress.remaining_s)} left"
        )
    if state.returncode == 0:
        return f"**Finished**: {progress.step} steps. The adapter is in `{run_dir}`; listen on the *Listen* tab."
    checkpoint = backend.newest_complete_checkpoint(run_dir)
    if state.stopped:
        saved = f"{checkpoint.name} is saved" if checkpoint else "no checkpoint was saved"
        return f"**Stopped** at step {progress.step}; {saved}. Press *Resume* to continue."
    reason = progress.error or "see the log below"
    resume = f" *Resume* continues from {checkpoint.name}." if checkpoint else ""
    return f"**Training failed** (exit status {state.returncode}): {reason}.{resume}"


def guarded(function: Callable[..., T]) -> Callable[..., T | str]:
    """Wrap a handler so that any problem comes back as the page's message instead of an exception."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as err:  # noqa: BLE001
            return error_text(err)

    return wrapper
