"""Read a training run's progress from its log: the step, the time left, and the logged losses per step.

The training command prints, on its merged stdout/stderr, Trainer's progress bar (``40%|####  | 4/10 [00:02<00:03,
...]``, no description) and one Python dict per logging step (``{'loss': '4.153', 'ce_q1': '4.139', ..., 'epoch':
'1'}``). The studio starts it with ``TQDM_MININTERVAL=0`` so the bar is drawn at every step: a dict then belongs to
the step the bar showed last. These values are rounded to 4 significant digits; once a checkpoint (or the end of the
run) writes ``trainer_state.json``, its exact ``log_history`` replaces them up to its step (:func:`loss_history`).
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Trainer's bar has no description, so its text starts with the percentage; the data preparation's bars
# ("Encoding: 50%|...") have one and do not match.
_BAR = re.compile(r"^\s*(\d+)%\|[^|]*\|\s*(\d+)/(\d+)\s*\[([\d:]+)<([\d:?]+)")
_DICT = re.compile(r"^\s*(\{'.*\})\s*$")
_RESUME = re.compile(r"Resuming from (\S*checkpoint-(\d+))")
START_MARKER = "=== studio: "  # the run manager writes one such line before each start of the command


@dataclass
class Progress:
    """What the log says so far about the latest start of the run."""

    step: int = 0
    total: int = 0
    elapsed_s: float | None = None
    remaining_s: float | None = None
    train: dict[int, dict[str, float]] = field(default_factory=dict)  # step -> logged values (all starts)
    eval: dict[int, dict[str, float]] = field(default_factory=dict)
    summary: dict[str, float] | None = None  # the final {'train_runtime': ...} record
    error: str | None = None  # the command's one-line "error: ..." message
    resumed_from: int | None = None
    starts: int = 0

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 0.0


def _seconds(text: str) -> float | None:
    """tqdm's ``[H:]MM:SS`` as seconds; ``?`` (unknown) as None."""
    if "?" in text:
        return None
    seconds = 0.0
    for part in text.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds


def _as_numbers(record: dict[str, Any]) -> dict[str, float]:
    numbers = {}
    for key, value in record.items():
        try:
            numbers[key] = float(value)
        except (TypeError, ValueError):
            continue  # e.g. a string metric; the plots need numbers only
    return numbers


def parse_log(text: str) -> Progress:
    """The progress of every start recorded in a training log (see the module docstring for the format)."""
    progress = Progress()
    bar_total: int | None = None  # the training bar's total; evaluation bars (other totals) are ignored
    for segment in re.split(r"[\r\n]", text):
        if segment.startswith(START_MARKER):
            progress.starts += 1
            progress.error, progress.summary, bar_total = None, None, None
            continue
        if (bar := _BAR.match(segment)) is not None:
            step, total = int(bar.group(2)), int(bar.group(3))
            if bar_total is None:
                bar_total = total
            if total == bar_total:
                progress.step, progress.total = step, total
                progress.elapsed_s, progress.remaining_s = _seconds(bar.group(4)), _seconds(bar.group(5))
            continue
        if (found := _DICT.match(segment)) is not None:
            try:
                record = ast.literal_eval(found.group(1))  # a dict of literals only: never evaluates code
            except (ValueError, SyntaxError):
                continue
            if not isinstance(record, dict):
                continue
            numbers = _as_numbers(record)
            if "train_runtime" in record:
                progress.summary = numbers
            elif "eval_loss" in record:
                progress.eval[progress.step] = numbers
            elif "loss" in record:
                progress.train[progress.step] = numbers
            continue
        if segment.startswith("error: "):
            progress.error = segment[len("error: ") :].strip()
        elif (resumed := _RESUME.search(segment)) is not None:
            progress.resumed_from = int(resumed.group(2))
    return progress


def read_log(path: Path) -> Progress:
    """:func:`parse_log` of a log file (an empty progress when there is none yet)."""
    try:
        return parse_log(path.read_text(encoding="utf-8", errors="replace"))
    except FileNotFoundError:
        return Progress()


def _state_files(run_dir: Path) -> list[Path]:
    """The run's ``trainer_state.json`` files (the final one and each checkpoint's)."""
    files = [run_dir / "trainer_state.json"] if (run_dir / "trainer_state.json").is_file() else []
    return files + sorted(run_dir.glob("checkpoint-*/trainer_state.json"))


def exact_history(run_dir: Path, since: float = 0.0) -> tuple[int, list[dict[str, Any]]]:
    """The most advanced ``log_history`` written by the run (final state or newest checkpoint), and its step.

    Args:
        since: ignore files last written before this time (``time.time()``): those of a run this one started over.
    """
    best_step, best_history = 0, []
    for path in _state_files(run_dir):
        try:
            if path.stat().st_mtime < since:
                continue
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a checkpoint being written right now
        if state.get("global_step", 0) >= best_step:
            best_step, best_history = state.get("global_step", 0), state.get("log_history", [])
    return best_step, best_history


def loss_history(
    run_dir: Path, progress: Progress, since: float = 0.0
) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """Train and eval records (each with its ``step``), exact from ``trainer_state.json`` up to its step and from
    the log after it, in step order (``since``: see :func:`exact_history`)."""
    exact_step, history = exact_history(run_dir, since)
    train: dict[int, dict[str, float]] = {s: v for s, v in progress.train.items() if s > exact_step}
    evals: dict[int, dict[str, float]] = {s: v for s, v in progress.eval.items() if s > exact_step}
    for record in history:
        step = int(record.get("step", 0))
        if "loss" in record:
            train[step] = _as_numbers(record)
        elif "eval_loss" in record:
            evals[step] = _as_numbers(record)
    return (
        [{**train[s], "step": float(s)} for s in sorted(train)],
        [{**evals[s], "step": float(s)} for s in sorted(evals)],
    )
