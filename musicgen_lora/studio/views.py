"""What the page shows, built from a project's files: the data report and its table, the training status, curves,
samples gallery and device, and the evaluation table. Plain data (Markdown, pandas frames), no Gradio.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import soundfile as sf

from . import backend
from .progress import Bar, RunProgress, error_line, last_bar, latest_start, read_progress, read_text, tail
from .project import FIELD_LABELS
from .runs import UNKNOWN_EXIT, RunState

TRACK_COLUMNS = ["use", "file", "split", "seconds", "status", "caption", "bpm", "key", "training caption"]
TRACK_TYPES = ["bool", "str", "str", "number", "str", "str", "number", "str", "str"]
EDITABLE_COLUMNS = ("use", "caption")
_OPTION = re.compile(r"'?\b([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\b'?")
_WANDB_RUN = re.compile(r"https://wandb\.ai/\S+/runs/[\w-]+")


def page_words(text: str, markdown: bool = True) -> str:
    """A message of a command in the page's words: an option that is a field is named by its label (*Trigger
    word*), any other by its name and where to set it; command-line advice is left out (``markdown`` False: plain
    text, for a table's cell)."""
    text = re.sub(r"\s*\(see --help\)", "", text)
    text = re.sub(r" in the config file or with --\w+", "", text)
    text = re.sub(r" in '[^']*\.json'", "", text)  # the config the page wrote: the page is where it is set
    text = re.sub(r"\s*\(or set push_to_hub false\)", "", text)

    def named(found: re.Match) -> str:
        option = found.group(1)
        if option in FIELD_LABELS:
            return f"*{FIELD_LABELS[option]}*" if markdown else FIELD_LABELS[option]
        if option in backend.option_names():
            return f"`{option}` (*More options* → JSON)" if markdown else f"{option} (More options → JSON)"
        return found.group(0)

    return _OPTION.sub(named, text)


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


def size(count: float | None) -> str:
    return "?" if count is None else f"{count / 2**30:.1f} GB"


def counts_frame(label: str, unit: str, counts: dict[str, int] | None = None) -> pd.DataFrame:
    """A bar plot's data: one row per bin (``label``: text) with its count (``unit``); typed even when empty, so the
    plot treats the bins as categories."""
    counts = counts or {}
    return pd.DataFrame(
        {label: pd.Series(list(counts), dtype=object), unit: pd.Series(list(counts.values()), dtype=int)}
    )


# ---------------------------------------------------------------------------------------------------- data


@dataclass
class DataView:
    """The Data tab's report."""

    summary: str = ""
    lengths: pd.DataFrame = field(default_factory=lambda: counts_frame("length", "clips"))
    tempi: pd.DataFrame = field(default_factory=lambda: counts_frame("tempo", "tracks"))
    keys: pd.DataFrame = field(default_factory=lambda: counts_frame("key", "tracks"))
    tracks: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=TRACK_COLUMNS))


def report_summary(report: dict[str, Any]) -> str:
    """The data report's numbers as Markdown: files found, read and left out (with reasons), hours, captions."""
    lines = []
    for name, split in report["splits"].items():
        files = split.get("files", {})
        reasons = ", ".join(f"{n} {kind}" for kind, n in files.get("reasons", {}).items())
        left = split.get("left_out", {})
        captions = split.get("captions", {})
        lines.append(
            f"**{name}**: {files.get('found', split['tracks'])} files found, {files.get('read', split['tracks'])} "
            f"read, {files.get('skipped', 0)} left out{f' ({reasons})' if reasons else ''}; {split['tracks']} "
            f"tracks, {split['examples']} examples; {split['hours_found']:.3f} h found, {split['hours_kept']:.3f} h "
            f"kept; {left.get('too_short_tracks', 0)} too short, {left.get('silent_tracks', 0)} silent; captions: "
            f"{captions.get('tracks_with_own_caption', 0)} own, {captions.get('tracks_with_added_tempo_key', 0)} "
            "with tempo/key added."
        )
    return "\n\n".join(lines)


def _edit_captions(table: pd.DataFrame, change) -> tuple[pd.DataFrame, int]:
    table = table.copy()
    changed = 0
    for index, caption in table["caption"].items():
        new = change(str(caption or ""))
        if new != str(caption or ""):
            table.at[index, "caption"] = new
            changed += 1
    return table, changed


def replace_in_captions(table: pd.DataFrame, find: str, replace: str) -> tuple[pd.DataFrame, int]:
    """The table with ``find`` replaced in every caption; and how many captions changed."""
    return _edit_captions(table, lambda caption: caption.replace(find, replace))


def write_trigger_word(table: pd.DataFrame, word: str) -> tuple[pd.DataFrame, int]:
    """The table with ``word`` at the start of every caption that does not start with it."""
    return _edit_captions(
        table, lambda caption: caption if caption.startswith(word) else ", ".join(filter(None, [word, caption]))
    )


def fill_from_tags(table: pd.DataFrame, tags: dict[str, str]) -> tuple[pd.DataFrame, int]:
    """The table with each empty caption filled from its file's tags (``{file: "genre, mood, ..."}``)."""
    table = table.copy()
    filled = 0
    for index, row in table.iterrows():
        found = tags.get(str(row["file"]))
        if found and not str(row["caption"] or "").strip():
            table.at[index, "caption"] = found
            filled += 1
    return table, filled


def prepare_message(bar: Bar | None, cancelling: bool) -> str:
    """What *Prepare* says while it runs: the step it is at, how far, and the time left."""
    if cancelling:
        return "**Cancelling** the preparation…"
    if bar is None:
        return "**Preparing**: loading the codec and listing the files…"
    left = f", about {clock(bar.remaining_s)} left" if bar.remaining_s is not None else ""
    return f"**Preparing**: {bar.what or 'working'} {bar.done}/{bar.total}{left}"


def seconds_of_file(path: str) -> float | None:
    try:
        return round(sf.info(path).duration, 2)
    except (RuntimeError, OSError, sf.LibsndfileError):
        return None


# A left-out reason in the table: at most about three lines of its status column (a decoder's message can run to
# 300 characters, ten lines); the preparation log and data_report.json keep it whole.
REASON_CHARS = 90


def short_reason(reason: str, path: str, root: Path) -> str:
    """A left-out reason without the absolute paths it may carry (the row names the file), cut at a word after
    :data:`REASON_CHARS` characters."""
    reason = page_words(reason.replace(path, Path(path).name).replace(str(root) + "/", ""), markdown=False)
    if len(reason) <= REASON_CHARS:
        return reason
    return reason[:REASON_CHARS].rsplit(" ", 1)[0].rstrip(" ,;:(") + " …"


def track_rows(
    args: Any, skipped: dict[str, str] | None, excluded: dict[str, str | None], measured_ok: bool
) -> pd.DataFrame:
    """The per-file table: every file preparation reads (``skipped``: the report's left-out files with their
    reasons; None when the folder is not prepared as it is now), and the files excluded from the page."""
    root = Path(args.dataset_name).resolve()
    rows = []

    def name_of(path: str) -> str:
        return str(Path(path).relative_to(root)) if root in Path(path).parents else path

    for track in backend.list_tracks(args):
        path = str(Path(track["path"]).resolve())
        reason = None if skipped is None else skipped.get(path)
        status = "not prepared yet" if skipped is None else "kept" if reason is None else "left out: "
        if reason is not None:
            status += short_reason(reason, path, root)
        if not track["used"]:
            status = (
                "not used (max_train_samples)"
                if track["split"] == args.train_split_name
                else "not used (max_eval_samples)"
            )
        kept = status == "kept"
        measured = {}
        if kept and args.add_metadata and measured_ok:
            try:
                measured = backend.measured_fields(args, path) or {}
            except Exception as err:  # noqa: BLE001 - an unreadable file shows as such, the table still loads
                status, kept = f"left out: unreadable: {backend.one_line(err)[:80]}", False
        caption = track["caption"] or ""
        rows.append(
            [
                True,
                name_of(path),
                track["split"],
                seconds_of_file(path),
                status,
                caption,
                measured.get("bpm"),
                measured.get("key") or "",
                backend.final_caption(args, track["caption"], measured) if kept else "",
            ]
        )
    for path, caption in sorted(excluded.items()):
        rows.append([False, name_of(path), "", seconds_of_file(path + ".excluded") or seconds_of_file(path),
                     "excluded (not trained on)", caption or "", None, "", ""])  # fmt: skip
    return pd.DataFrame(rows, columns=TRACK_COLUMNS)


def data_view(args: Any, report: dict[str, Any] | None, excluded: dict[str, str | None], note: str = "") -> DataView:
    """The Data tab: the report of the folder's last preparation (``report`` None: not prepared as it is now) and
    the per-file table. Tempo and key are counted over the kept files only."""
    if report is None:
        view = DataView(summary=note or "**Not prepared yet**: press *Prepare* to read the folder as it is now.")
        view.tracks = track_rows(args, None, excluded, measured_ok=False)
        return view
    skipped, lengths = {}, {}
    for split in report["splits"].values():
        for label, count in split.get("length_histogram", {}).items():
            lengths[label] = lengths.get(label, 0) + count
        for entry in split.get("files", {}).get("skipped_files", []):
            skipped[str(Path(entry["path"]).resolve())] = entry["reason"]
    tracks = track_rows(args, skipped, excluded, measured_ok=True)
    kept = tracks[tracks["status"] == "kept"]
    estimates = [
        {"bpm": None if pd.isna(bpm) else bpm, "key": key or None}
        for bpm, key in zip(kept["bpm"], kept["key"], strict=True)
    ]
    found = backend.tempo_key_report(estimates) if args.add_metadata else {"bpm_histogram": {}, "keys": {}}
    return DataView(
        summary=(note + "\n\n" if note else "") + report_summary(report),
        lengths=counts_frame("length", "clips", lengths),
        tempi=counts_frame("tempo", "tracks", found["bpm_histogram"]),
        keys=counts_frame("key", "tracks", found["keys"]),
        tracks=tracks,
    )


# -------------------------------------------------------------------------------------------------- train


@dataclass
class TrainView:
    """The Train tab's live state."""

    status: str
    phase: str  # none, starting, training, stopping, finishing, finished, stopped, failed
    fraction: float | None  # the progress bar (None: no bar)
    device: str
    losses: pd.DataFrame  # long format: step, value, curve
    codebooks: pd.DataFrame  # long format: step, value, curve
    gallery: list[tuple[str, list[tuple[str, str]]]]  # per prompt: [(render label, wav)]
    log: str
    tracker: str = ""  # Markdown: where the run's tracker shows it

    @property
    def running(self) -> bool:
        return self.phase in ("starting", "training", "stopping", "finishing")


def empty_curves() -> pd.DataFrame:
    return pd.DataFrame(
        {"step": pd.Series(dtype=float), "value": pd.Series(dtype=float), "curve": pd.Series(dtype=str)}
    )


def loss_frames(progress: RunProgress) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long-format frames for the plots: the train (and eval) loss, and each codebook's cross-entropy."""
    losses = [{"step": r["step"], "value": r["loss"], "curve": "train loss"} for r in progress.train if "loss" in r]
    losses += [{"step": r["step"], "value": r["eval_loss"], "curve": "eval loss"} for r in progress.evals]
    codebooks = [
        {"step": r["step"], "value": value, "curve": key.replace("ce_", "")}
        for r in progress.train
        for key, value in r.items()
        if key.startswith("ce_q")
    ]
    empty = empty_curves()
    return (pd.DataFrame(losses) if losses else empty), (pd.DataFrame(codebooks) if codebooks else empty)


def render_label(folder: str) -> str:
    return folder.replace("step-", "step ") if folder.startswith("step-") else folder


def gallery(progress: RunProgress, run_dir: Path) -> list[tuple[str, list[tuple[str, str]]]]:
    """The samples as a grid: one row per prompt, one column per render (base, each step, final), in order."""
    renders = [(s["folder"], s["prompts"], s["paths"]) for s in progress.samples]
    if not renders:  # a run without progress.jsonl (an older version's): the sample folders themselves
        renders = _sample_folders(run_dir)
    rows: dict[str, list[tuple[str, str]]] = {}
    for folder, prompts, paths in sorted(renders, key=lambda r: _render_order(r[0])):
        for prompt, path in zip(prompts, paths, strict=False):
            if Path(path).is_file():
                rows.setdefault(prompt, []).append((render_label(folder), path))
    return list(rows.items())


def _render_order(folder: str) -> tuple[int, int]:
    if folder == "base":
        return 0, 0
    if folder.startswith("step-") and folder[5:].isdigit():
        return 1, int(folder[5:])
    return 2, 0


def _sample_folders(run_dir: Path) -> list[tuple[str, list[str], list[str]]]:
    renders = []
    for prompts in (run_dir / "samples").glob("*/prompts.txt"):
        pairs = [line.split("\t", 1) for line in prompts.read_text(encoding="utf-8").splitlines() if "\t" in line]
        renders.append((prompts.parent.name, [p for _, p in pairs], [str(prompts.parent / n) for n, _ in pairs]))
    return renders


def device_line(progress: RunProgress | None, running: bool) -> str:
    """CPU or which GPU, with its memory: the run's own figures while it trains, else this machine's."""
    device = (progress.start or {}).get("device") if progress and running else None
    if device is None:
        found = backend.machine_device()
        kind = "GPU" if found["kind"] != "cpu" else "CPU"
        return f"**Device**: {kind} · {found['name']} · {size(found['memory_total'])} memory"
    kind = "GPU" if device["kind"] != "cpu" else "CPU"
    step = progress.last_step or {}
    used, peak = step.get("memory_used"), step.get("memory_peak")
    if used is None:
        return f"**Device**: {kind} · {device['name']} · {size(device['memory_total'])} memory"
    what = "in use on the GPU" if device["kind"] == "cuda" else "used by training"
    line = f"**Device**: {kind} · {device['name']} · {size(used)} {what} of {size(device['memory_total'])}"
    return line + (f" (training's peak {size(peak)})" if peak else "")


def tracker_link(config: dict[str, Any], log: str, tensorboard_url: str | None) -> str:
    """Where the run's tracker shows it (Markdown; '' when no tracker is on)."""
    report_to = config.get("report_to") or []
    report_to = [report_to] if isinstance(report_to, str) else report_to
    parts = []
    if "wandb" in report_to:
        urls = _WANDB_RUN.findall(log)
        parts.append(f"W&B: [{urls[-1]}]({urls[-1]})" if urls else "W&B: the run's link appears once it has started")
    if "tensorboard" in report_to:
        parts.append(
            f"TensorBoard: [{tensorboard_url}]({tensorboard_url})"
            if tensorboard_url
            else "TensorBoard: press *Open TensorBoard*"
        )
    return " · ".join(parts)


def status_line(state: RunState, progress: RunProgress, run_dir: Path, shown_run: str) -> tuple[str, str, float | None]:
    """``(Markdown, phase, fraction)``: where the run is, in one line."""
    this_start = progress if progress.start and progress.start["time"] >= state.started - 1 else None
    if state.returncode is None:  # going, or just ended and its exit status not recorded yet
        if state.stop_requested:
            return f"**Stopping** at step {progress.step}: saving a checkpoint…", "stopping", None
        if this_start is None:
            text = read_text(Path(state.log))
            bar = last_bar(text)
            what = f"Resuming from {state.resumed_from}" if state.resumed_from else "Starting"
            doing = f": {bar.what or 'working'} {bar.done}/{bar.total}" if bar else ": loading the model and the data…"
            return f"**{what}**{doing}", "starting", bar.fraction if bar else None
        if progress.last_step is None:
            first = f"step {progress.step}/{progress.max_steps}: the base model's samples, then the first step"
            return f"**Training**: {first}…", "training", progress.fraction
        if this_start.end is not None or progress.step >= progress.max_steps > 0:
            return (
                "**Finishing**: rendering the final samples, writing the adapter and the model card…",
                "finishing",
                1.0,
            )
        return (
            f"**Training**: step {progress.step}/{progress.max_steps} ({100 * progress.fraction:.0f} %), "
            f"{clock(progress.elapsed_s)} elapsed, about {clock(progress.remaining_s)} left",
            "training",
            progress.fraction,
        )
    finished = _finished_since(run_dir, state.started)
    if state.returncode == 0 or (state.returncode == UNKNOWN_EXIT and finished):
        loss = progress.train[-1]["loss"] if progress.train else None
        result = f"; last logged loss {loss:.3f}" if loss is not None else ""
        took = f" in {clock(state.ended - state.started)}" if state.ended else ""
        return (
            f"**Finished**: {progress.step} steps{took}{result}. The adapter is in `{shown_run}`; listen on the "
            "*Listen* tab.",
            "finished",
            1.0,
        )
    checkpoint = backend.newest_complete_checkpoint(run_dir)
    if state.stopped:
        saved = f"{checkpoint.name} is saved" if checkpoint else "no checkpoint was saved"
        return f"**Stopped** at step {progress.step}; {saved}. Press *Resume* to continue.", "stopped", None
    if state.returncode == UNKNOWN_EXIT:
        reason = "it ended while no studio was watching, without an exit status; see the log below"
    else:
        reason = page_words(error_line(read_text(Path(state.log))) or "see the log below")
        reason = f"(exit status {state.returncode}): {reason}"
    resume = f" *Resume* continues from {checkpoint.name}." if checkpoint and not finished else ""
    return f"**Training failed** {reason}.{resume}", "failed", None


def _finished_since(run_dir: Path, since: float) -> bool:
    marker = run_dir / backend.FINISHED_MARKER
    return marker.is_file() and marker.stat().st_mtime >= since - 1


def train_view(
    state: RunState | None, project: Any, shown_run: str, config: dict[str, Any], tb_url: str | None
) -> TrainView:
    """The Train tab's state for a project's run (``state``: its latest run, None if it never had one)."""
    run_dir = project.run_dir
    if state is None or state.kind != "train":
        progress = read_progress(run_dir)
        losses, codebooks = loss_frames(progress)
        return TrainView(
            "No training run yet: set the options and press *Start*."
            if not progress.start
            else f"**Finished** earlier: {progress.step} steps.",
            "none",
            None,
            device_line(None, False),
            losses,
            codebooks,
            gallery(progress, run_dir),
            "",
            tracker_link(config, "", tb_url),
        )
    progress = read_progress(run_dir, since=state.fresh_since - 1)
    status, phase, fraction = status_line(state, progress, run_dir, shown_run)
    log = read_text(Path(state.log))
    losses, codebooks = loss_frames(progress)
    return TrainView(
        status,
        phase,
        fraction,
        device_line(progress, phase in ("training", "finishing", "stopping")),
        losses,
        codebooks,
        gallery(progress, run_dir),
        tail(log),
        tracker_link(config, latest_start(log), tb_url),
    )


def finished_steps(run_dir: Path) -> int | None:
    """The steps of the finished run in ``run_dir`` (None: it has not finished)."""
    if not (run_dir / backend.FINISHED_MARKER).is_file():
        return None
    progress = read_progress(run_dir)
    return progress.step or 0


def stamp(seconds: float) -> str:
    return time.strftime("%H:%M", time.localtime(seconds))
