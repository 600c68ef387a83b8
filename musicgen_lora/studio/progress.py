"""How far a run has got: training from its ``progress.jsonl`` (written by the run itself, see
:mod:`musicgen_lora.train.progress_log`), preparation from the progress bars in its log, and the log's end as a
terminal would show it.

The training file is structured: losses are Trainer's exact values, samples are announced with their paths when
written, and the device and its memory come with them. Only a preparation (which has no such file) is read from its
log: the last progress bar drawn (``Encoding: 50%|#####     | 8/16 [00:02<00:02, 3.1it/s]``) says what it does, how
far it is and the time left.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import backend

START_MARKER = "=== studio: "  # the run manager writes one such line before each start of a command
LOG_TAIL_CHARS = 4000
# tqdm's bar: "[desc: ]NN%|bar| n/total [elapsed<remaining, rate]"
_BAR = re.compile(
    r"^\s*(?:(?P<desc>[^|]*?):\s*)?(?P<pct>\d+)%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)\s*"
    r"\[(?P<el>[\d:]+)<(?P<left>[\d:?]+)"
)


def read_text(path: Path) -> str:
    """A log as written, ``\\r`` kept (``Path.read_text`` turns each into a line break, so every redraw of a
    progress bar became a line of its own)."""
    try:
        with path.open(encoding="utf-8", errors="replace", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def tail(text: str, chars: int = LOG_TAIL_CHARS) -> str:
    """The end of a log as it looks in a terminal: each progress bar at its last redraw, empty lines left out."""
    lines = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in text[-4 * chars :].split("\n")]
    return "\n".join(line for line in lines if line.strip())[-chars:]


def latest_start(text: str) -> str:
    """The part of a log written by the latest start of its command."""
    return text[text.rfind(START_MARKER) :] if START_MARKER in text else text


def error_line(text: str) -> str | None:
    """The command's one-line ``error: ...`` message in the latest start's log, if any."""
    errors = [line for line in re.split(r"[\r\n]", latest_start(text)) if line.startswith("error: ")]
    return errors[-1][len("error: ") :].strip() if errors else None


def seconds_of(text: str) -> float | None:
    """tqdm's ``[H:]MM:SS`` as seconds; ``?`` (unknown) as None."""
    if "?" in text:
        return None
    seconds = 0.0
    for part in text.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds


@dataclass
class Bar:
    """A progress bar as last drawn in a log."""

    what: str  # its description ("Encoding", "Map"; "" when it has none)
    done: int
    total: int
    elapsed_s: float | None
    remaining_s: float | None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


def last_bar(text: str) -> Bar | None:
    """The last progress bar drawn in the latest start's log."""
    for segment in reversed(re.split(r"[\r\n]", latest_start(text))):
        found = _BAR.match(segment)
        if found is not None:
            return Bar(
                (found["desc"] or "").strip(),
                int(found["n"]),
                int(found["total"]),
                seconds_of(found["el"]),
                seconds_of(found["left"]),
            )
    return None


# -------------------------------------------------------------------------------------------- progress.jsonl


@dataclass
class RunProgress:
    """What a run's ``progress.jsonl`` says, over all its starts (a resumed start supersedes what the one before it
    logged after its checkpoint)."""

    step: int = 0
    max_steps: int = 0
    start: dict[str, Any] | None = None  # the latest `start` line
    end: dict[str, Any] | None = None  # the latest start's `end` line (None while it trains)
    last_step: dict[str, Any] | None = None  # the latest start's latest `step` line
    train: list[dict[str, Any]] = field(default_factory=list)  # `log` lines, by step
    evals: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)  # `sample` lines, latest per folder, in order
    seconds_per_step: float | None = None

    @property
    def fraction(self) -> float:
        return self.step / self.max_steps if self.max_steps else 0.0

    @property
    def remaining_s(self) -> float | None:
        if self.seconds_per_step is None:
            return None
        return max(0.0, (self.max_steps - self.step) * self.seconds_per_step)

    @property
    def elapsed_s(self) -> float | None:
        return self.last_step["seconds"] if self.last_step else None


def _lines(path: Path, since: float) -> list[dict[str, Any]]:
    lines = []
    for text in read_text(path).splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            continue  # a line being written right now
        if isinstance(line, dict) and line.get("time", 0) >= since:
            lines.append(line)
    return lines


def read_progress(run_dir: Path, since: float = 0.0) -> RunProgress:
    """The run's progress (empty before its first start line).

    Args:
        since: ignore lines written before this time (``time.time()``): a run this one replaced.
    """
    progress = RunProgress()
    steps: list[dict[str, Any]] = []  # the latest start's step lines
    train: dict[int, dict[str, Any]] = {}
    evals: dict[int, dict[str, Any]] = {}
    samples: dict[str, dict[str, Any]] = {}
    for line in _lines(run_dir / backend.PROGRESS_FILE, since):
        event, step = line.get("event"), int(line.get("step", 0))
        if event == "start":
            progress.start, progress.end, steps = line, None, []
            train = {s: v for s, v in train.items() if s <= step}
            evals = {s: v for s, v in evals.items() if s <= step}
            samples = {k: v for k, v in samples.items() if v["step"] <= step or v["kind"] == "base"}
        elif event == "step":
            steps.append(line)
        elif event == "log":
            train[step] = line
        elif event == "eval":
            evals[step] = line
        elif event == "sample":
            samples.pop(line["folder"], None)  # rendered again (base, at a resume): shown in its new place
            samples[line["folder"]] = line
        elif event == "end":
            progress.end = line
        progress.step, progress.max_steps = step if event != "sample" else progress.step, line.get("max_steps", 0)
    progress.train = [train[s] for s in sorted(train)]
    progress.evals = [evals[s] for s in sorted(evals)]
    progress.samples = list(samples.values())
    if steps:
        progress.last_step = steps[-1]
        first_step = progress.start["step"] if progress.start else 0
        first, last = steps[0], steps[-1]
        if last["step"] > first["step"]:  # the pace between steps (the first one also loaded data and rendered)
            progress.seconds_per_step = (last["seconds"] - first["seconds"]) / (last["step"] - first["step"])
        elif last["step"] > first_step:
            progress.seconds_per_step = last["seconds"] / (last["step"] - first_step)
    return progress


def has_progress(run_dir: Path) -> bool:
    return (run_dir / backend.PROGRESS_FILE).is_file()
