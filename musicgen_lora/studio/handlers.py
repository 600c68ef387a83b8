"""What the page's project bar, Data and Train tabs do, in plain Python (no Gradio here, so it is tested without a
browser).

Every public method of :class:`Studio` takes the page's values and returns plain data (Markdown strings, pandas
frames, views); problems come back as a message (``**Error:** ...``), never as a traceback. The work itself is done by
the package's commands, started through :mod:`.runs`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from . import backend, dataset_files, presets
from .progress import error_line, last_bar, read_text, tail
from .project import (
    DEMO_PROJECT,
    FORM_OPTIONS,
    Project,
    RunForm,
    build_config,
    delete_project,
    list_projects,
    rename_project,
    set_run_aside,
    shown_path,
    write_config,
)
from .runs import RunManager, package_command
from .views import DataView, TrainView, data_view, finished_steps, page_words, prepare_message, stamp, train_view

logger = logging.getLogger(__name__)
POLL_SECONDS = 1.0  # how often a button that waits for its command refreshes the page
# A Ctrl-C that lands while the preparation still imports its libraries can be swallowed by one of them (seen on a
# loaded machine: the preparation went on and finished): *Cancel* then ends it with SIGTERM after this long.
CANCEL_GRACE_SECONDS = 5.0


def error_text(err: BaseException) -> str:
    """The page's message for a problem: the one-line user error in the page's words, or a short note for anything
    unexpected (whose traceback goes to the studio's terminal, not the page)."""
    if isinstance(err, backend.UserError):
        return f"**Error:** {page_words(backend.one_line(err))}"
    logger.exception("unexpected error in the studio")
    problem = f"{type(err).__name__}: {backend.one_line(err)[:300]}"
    return f"**Error:** unexpected problem ({problem}); the studio's terminal shows the details"


@dataclass
class PrepareStep:
    """One refresh of the Data tab while *Prepare* runs."""

    message: str
    fraction: float | None  # the progress bar (None: none)
    log: str
    view: DataView | None  # the report, at the end


class Studio:
    """The page's actions on the projects of one folder."""

    def __init__(self, projects_dir: str | Path, host: str = "127.0.0.1") -> None:
        self.root = Path(projects_dir).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.runs = RunManager()
        self.tensorboards: dict[Path, tuple[subprocess.Popen, str]] = {}

    def project(self, name: str) -> Project:
        return Project.open(self.root, name)

    def shown(self, path: str | Path | None) -> str:
        return shown_path(self.root, path)

    def projects(self) -> list[str]:
        return list_projects(self.root)

    @staticmethod
    def config_of(project: Project) -> dict[str, Any]:
        try:
            return json.loads(project.config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _refuse_while_running(self, project: Project, what: str) -> None:
        state = self.runs.state(project.folder) if project.exists else None
        if state is not None and state.running:
            raise backend.UserError(
                f"a {state.kind} run is going in this project; {what} once it has ended (or stop it)"
            )

    # ------------------------------------------------------------------------------------------ projects

    def defaults(self, name: str) -> RunForm:
        """The form for a project: its saved config if it has one, else the demo's or generic values."""
        project = self.project(name)
        if project.config_path.is_file():
            return self.form_from_config(self.config_of(project))
        if name == DEMO_PROJECT:
            return self.demo_form()
        folder = self.shown(project.data_dir) if project.data_dir.is_dir() else ""
        return RunForm(base_model="facebook/musicgen-small", dataset=folder, batch_size=4)

    def demo_form(self) -> RunForm:
        """The offline demo: the tiny random MusicGen and the synthetic corpus (built on first use), with the demo
        training's settings (a run of a minute on a laptop CPU)."""
        project = self.project(DEMO_PROJECT)
        backend.ensure_demo_assets(project.demo_model_dir, project.data_dir)
        demo = backend.DEMO_CONFIG
        rest = {k: demo[k] for k in ("min_duration_in_seconds", "lora_alpha", "seed")}
        return RunForm(
            base_model=self.shown(project.demo_model_dir),
            dataset=self.shown(project.data_dir),
            steps=40,
            epochs=1,
            learning_rate=demo["learning_rate"],
            rank=demo["lora_r"],
            batch_size=demo["per_device_train_batch_size"],
            clip_seconds=demo["max_duration_in_seconds"],
            sample_prompts="\n".join(demo["sample_prompts"]),
            sample_every_steps=20,
            save_steps=20,
            logging_steps=5,
            sample_seconds=demo["sample_duration_in_seconds"],
            extra_json=json.dumps(rest, indent=1),
        )

    def form_from_config(self, config: dict[str, Any]) -> RunForm:
        """The form that writes ``config`` (the inverse of :func:`.project.build_config`), the rest as JSON."""
        defaults = asdict(RunForm(base_model="", dataset=""))
        values = {name: config.get(key, defaults[name]) for name, key in FORM_OPTIONS.items()}
        values["trigger_word"] = values["trigger_word"] or ""
        values["clap_model"] = self.shown(values["clap_model"]) if values["clap_model"] else ""
        report_to = config.get("report_to") or "none"
        report_to = report_to[0] if isinstance(report_to, list) and report_to else report_to
        used = set(FORM_OPTIONS.values()) | {
            "model_name_or_path", "dataset_name", "max_steps", "bf16", "fp16", "sample_prompts", "save_strategy",
            "output_dir", "data_cache_dir", "report_to",
        }  # fmt: skip
        rest = {
            k: v
            for k, v in config.items()
            if k not in used and not (k == "lora_alpha" and v == 2 * config.get("lora_r", 0))
        }
        steps = config.get("max_steps", -1)
        return RunForm(
            **values,
            base_model=self.shown(config.get("model_name_or_path", "")),
            dataset=self.shown(config.get("dataset_name", "")),
            steps=steps if steps and steps > 0 else 0,
            precision="bf16" if config.get("bf16") else "fp16" if config.get("fp16") else "fp32",
            sample_prompts="\n".join(config.get("sample_prompts", [])),
            tracker=report_to if isinstance(report_to, str) else "none",
            extra_json=json.dumps(rest, indent=1) if rest else "",
        )

    def rename(self, name: str, new: str) -> tuple[str, str]:
        """Rename a project; returns ``(message, the name the page shows now)``."""
        try:
            self._refuse_while_running(self.project(name), "rename it")
            target = rename_project(self.root, name, new)
        except Exception as err:  # noqa: BLE001
            return error_text(err), name
        return f"Renamed '{name}' to '{target.name}'.", target.name

    def delete(self, name: str) -> tuple[str, str]:
        """Delete a project and its files (the page asked first); returns ``(message, the project shown next)``."""
        try:
            project = self.project(name)
            self._refuse_while_running(project, "delete it")
            delete_project(self.root, name)
        except Exception as err:  # noqa: BLE001
            return error_text(err), name
        left = [p for p in self.projects() if p != name]
        return f"Deleted project '{name}' and its files.", DEMO_PROJECT if DEMO_PROJECT in left or not left else left[0]

    # ---------------------------------------------------------------------------------------------- data tab

    def _config(self, project: Project, form: RunForm) -> tuple[Path, list[str]]:
        """Write the form's config into the project once training would accept it (UserError if not: the project's
        config stays as it was)."""
        config, notices = build_config(project, form)
        return write_config(project, config), notices

    def upload(self, name: str, files: list[str] | None) -> tuple[str, str | None]:
        """Copy uploaded audio (or zips of it) into the project's data folder. Returns ``(message, folder)``."""
        try:
            project = self.project(name)
            if not files:
                raise backend.UserError("no files chosen; pick audio files (wav, flac, ogg, mp3, ...) or a zip of them")
            added, skipped = dataset_files.add_uploads(files, project.data_dir)
        except Exception as err:  # noqa: BLE001
            return error_text(err), None
        message = f"Added {len(added)} file(s) to `{self.shown(project.data_dir)}`; press *Prepare* to read them."
        if skipped:
            message += " Left out: " + "; ".join(skipped[:10]) + (" ..." if len(skipped) > 10 else "")
        return message, self.shown(project.data_dir)

    def prepare(self, name: str, form: RunForm) -> Iterator[PrepareStep]:
        """Run ``python -m musicgen_lora.prepare`` on the form's config, yielding the progress while it runs and the
        report at the end (on failure or *Cancel*: the folder's files as they are now, marked not prepared)."""
        try:
            project = self.project(name)
            self._refuse_while_running(project, "prepare")
            config_path, _ = self._config(project, form)
            state = self.runs.start(project.folder, "prepare", package_command("prepare", str(config_path)))
        except Exception as err:  # noqa: BLE001 - every problem becomes the page's message
            yield PrepareStep(error_text(err), None, "", None)
            return
        cancelled_at = None
        while state.returncode is None:  # (not `running`: the exit status is recorded just after the process ends)
            text = read_text(Path(state.log))
            bar = last_bar(text)
            yield PrepareStep(
                prepare_message(bar, state.stop_requested), bar.fraction if bar else None, tail(text), None
            )
            time.sleep(POLL_SECONDS)
            state = self.runs.state(project.folder) or state
            if state.stop_requested and cancelled_at is None:
                cancelled_at = time.monotonic()
            elif cancelled_at is not None and time.monotonic() - cancelled_at > CANCEL_GRACE_SECONDS:
                with contextlib.suppress(backend.UserError):  # it ended in the meantime
                    self.runs.stop(project.folder, signal.SIGTERM)
                cancelled_at = math.inf  # once
        text = read_text(Path(state.log))
        if state.returncode == 0:
            message = "**Prepared.** The report is below; edit captions in the table and press *Save changes*."
            yield PrepareStep(message, 1.0, tail(text), self.data_view(name))
            return
        if state.stopped:
            message = "**Cancelled**: the preparation stopped; nothing it had not finished was kept."
        else:
            error = error_line(text)
            message = f"**Error:** {page_words(error)}" if error else "**Error:** preparation failed (exit status "
            message += "" if error else f"{state.returncode}); see the log"
        note = (
            f"**Not prepared**: the last *Prepare* ({stamp(state.started)}) did not finish; the table lists the files"
        )
        yield PrepareStep(message, None, tail(text), self.data_view(name, stale_note=note + " as they are now."))

    def cancel_prepare(self, name: str) -> str:
        try:
            project = self.project(name)
            state = self.runs.state(project.folder) if project.exists else None
            if state is None or state.kind != "prepare" or not state.running:
                raise backend.UserError("no preparation is going in this project; nothing to cancel")
            self.runs.stop(project.folder)
        except Exception as err:  # noqa: BLE001
            return error_text(err)
        return "**Cancelling** the preparation…"

    def data_view(self, name: str, stale_note: str | None = None) -> DataView:
        """The data report of the project's last preparation and its per-file table (``stale_note``: the last
        preparation failed, so the table shows the folder's files as they are, not prepared)."""
        project = self.project(name)
        if not project.config_path.is_file():
            return DataView(summary="No data report yet: choose a folder and press *Prepare*.")
        args = backend.check_config(project.config_path)
        excluded = dataset_files.excluded_files(args.dataset_name, args.text_column_name)
        if stale_note is not None or not project.report_path.is_file():
            return data_view(args, None, excluded, stale_note or "")
        report = json.loads(project.report_path.read_text(encoding="utf-8"))
        when = stamp(project.report_path.stat().st_mtime)
        return data_view(args, report, excluded, f"Prepared at {when}.")

    def save_table(self, name: str, table: pd.DataFrame | None) -> tuple[str, DataView | None]:
        """Write the table's edits into the folder: changed captions, and files ticked out of (or back into)
        training."""
        try:
            project = self.project(name)
            if table is None or len(table) == 0 or not project.config_path.is_file():
                raise backend.UserError("nothing to save; prepare a folder first")
            args = backend.check_config(project.config_path)
            root = Path(args.dataset_name).resolve()
            excluded = dataset_files.excluded_files(root, args.text_column_name)
            rows = [row for _, row in table.iterrows() if str(row["file"] or "").strip()]  # new rows: no file
            changes = 0
            for row in rows:
                path = str((root / str(row["file"])).resolve())
                use = str(row["use"]).lower() not in ("false", "0", "")
                if use and path in excluded:
                    dataset_files.include_file(root, path)
                    changes += 1
                elif not use and path not in excluded:
                    dataset_files.exclude_file(root, path)
                    changes += 1
            captions = {
                str((root / str(row["file"])).resolve()): str(row["caption"] or "")
                for row in rows
                if str(row["use"]).lower() not in ("false", "0", "")
            }
            changed = dataset_files.save_captions(root, captions, args.text_column_name)
        except Exception as err:  # noqa: BLE001
            return error_text(err), None
        if not changed and not changes:
            return "No change to save.", None
        message = f"Saved {changed} caption(s) and {changes} change(s) of what is trained on in `{self.shown(root)}`."
        note = "**Changed since the last *Prepare***: press *Prepare* to see the report of the folder as it is now."
        return message + " Training uses them.", self.data_view(name, stale_note=note if changes else None)

    def clap_tags(self, name: str) -> dict[str, str]:
        """The CLAP tags of each file from the last preparation's ``captions.jsonl`` (``{file: "genre, mood, ..."}``).

        Raises:
            UserError: the last preparation had no CLAP model.
        """
        project = self.project(name)
        path = project.run_dir / backend.PREPARED_DIR_NAME / backend.CAPTIONS_NAME
        rows = [json.loads(line) for line in read_text(path).splitlines() if line.strip()]
        tags = {
            row["file_name"]: ", ".join(str(row[k]) for k in ("genre", "mood", "instrument") if row.get(k))
            for row in rows
            if any(f"{k}_best" in row for k in ("genre", "mood", "instrument"))
        }
        if not tags:
            raise backend.UserError(
                "the last preparation has no CLAP tags; enter a *CLAP model folder* (a local transformers ClapModel, "
                "e.g. laion/clap-htsat-unfused) and press *Prepare* first"
            )
        return tags

    def audio_of_row(self, name: str, table: pd.DataFrame | None, row: int) -> str | None:
        """The audio file of a table row, for the player."""
        project = self.project(name)
        if table is None or not 0 <= row < len(table) or not project.config_path.is_file():
            return None
        path = Path(self.config_of(project)["dataset_name"]) / str(table.iloc[row]["file"])
        for candidate in (path, path.with_name(path.name + dataset_files.EXCLUDED_SUFFIX)):
            if candidate.is_file():
                return str(candidate)
        return None

    # --------------------------------------------------------------------------------------------- train tab

    def start_training(self, name: str, form: RunForm, start_over: bool = False, aside_name: str = "") -> str:
        """Start ``python -m musicgen_lora.train config.json`` (refused while a run is going, or when the project
        holds a run and ``start_over`` is not ticked; with it, that run is set aside in the history)."""
        try:
            project = self.project(name)
            state = self.runs.state(project.folder) if project.exists else None
            if state is not None and state.running:  # said first: a second tab's Start while the run goes
                return f"**Error:** a {state.kind} run is already going in this project; wait for it or stop it first"
            previous = previous_run(project.run_dir)
            if previous and not start_over:
                steps = finished_steps(project.run_dir)
                if steps is not None:
                    return (
                        f"**Error:** this project's run has finished ({steps} steps); to train a new one, tick *Start "
                        "over* (the finished run is kept in the run history, to listen to on the *Listen* tab)"
                    )
                return (
                    f"**Error:** this project holds an unfinished run ({previous}); press *Resume* to continue it, or "
                    "tick *Start over* to begin a new one (this one is kept in the run history)"
                )
            config_path, notices = self._config(project, form)  # checked before the old run moves
            aside = set_run_aside(project, aside_name) if start_over else None
            self.runs.start(project.folder, "train", package_command("train", str(config_path)))
        except Exception as err:  # noqa: BLE001
            return error_text(err)
        kept = f" The earlier run is kept as *{aside}* in the run history." if aside else ""
        return "Training started." + kept + "".join(f" Note: {n}." for n in notices)

    def resume_training(self, name: str) -> str:
        """Continue the project's run from its newest complete checkpoint, with the config it was started with."""
        try:
            project = self.project(name)
            state = self.runs.state(project.folder) if project.exists else None
            if state is not None and state.running:
                return f"**Error:** a {state.kind} run is going in this project; it cannot be resumed while it runs"
            steps = finished_steps(project.run_dir)
            if steps is not None:
                return (
                    f"**Error:** the run has finished ({steps} steps): there is nothing to resume. To train a new "
                    "one, tick *Start over* and press *Start* (this one is kept in the run history)"
                )
            checkpoint = backend.newest_complete_checkpoint(project.run_dir)
            if checkpoint is None or not project.config_path.is_file():
                every = self.config_of(project).get("save_steps")
                when = f" the first is saved at step {every}" if every else " one is saved every N steps"
                return (
                    f"**Error:** no checkpoint to resume from yet;{when} (*Save a checkpoint every N steps*, under "
                    "*More options*). Press *Start* to train"
                )
            # as a flag, so a config edited in the page since the run started still continues it (see train.rerun)
            argv = package_command("train", str(project.config_path), "--resume_from_checkpoint", "true")
            self.runs.start(project.folder, "train", argv, resume=True, resumed_from=checkpoint.name)
        except Exception as err:  # noqa: BLE001
            return error_text(err)
        return f"Resuming from {checkpoint.name}."

    def stop_training(self, name: str) -> str:
        try:
            project = self.project(name)
            state = self.runs.state(project.folder) if project.exists else None
            if state is None or state.kind != "train" or not state.running:
                raise backend.UserError("no training is going in this project; nothing to stop")
            self.runs.stop(project.folder)
        except Exception as err:  # noqa: BLE001
            return error_text(err)
        return "Stopping: training saves a checkpoint, then ends."

    def train_view(self, name: str) -> TrainView:
        """The Train tab's live state: status line and bar, device, curves, samples so far, the log's end."""
        project = self.project(name)
        state = self.runs.state(project.folder) if project.exists else None
        url = self.tensorboards.get(project.folder, (None, None))[1]
        return train_view(state, project, self.shown(project.run_dir), self.config_of(project), url)

    def command_lines(self, name: str, form: RunForm) -> str:
        """The command the form runs, exactly, and as one self-contained line (Markdown)."""
        try:
            project = self.project(name)
            config, _ = build_config(project, form)
            exact, flags = presets.command_lines(project.config_path, config)
        except Exception as err:  # noqa: BLE001
            return error_text(err)
        return f"*Start* runs:\n```\n{exact}\n```\nThe same run without the config file:\n```\n{flags}\n```"


def form_fields() -> list[str]:
    """The names of :class:`RunForm`'s fields, in order (the page's inputs follow it)."""
    return [f.name for f in fields(RunForm)]


def previous_run(run_dir: Path) -> str | None:
    """What shows that ``run_dir`` holds a previous run (its newest checkpoint or a result file), or None."""
    checkpoints = backend.checkpoint_folders(run_dir)
    if checkpoints:
        return checkpoints[-1].name
    return next((name for name in backend.RUN_MARKERS if (run_dir / name).exists()), None)
