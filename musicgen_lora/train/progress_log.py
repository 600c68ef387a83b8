"""A training run's progress as JSON lines, ``OUTPUT_DIR/progress.jsonl``: what a web page, a script or a notebook
reads to follow a run, instead of scraping its log.

One line per event, each with ``event``, ``time`` (Unix seconds), ``step`` and ``max_steps``:

- ``start``: training (or a resumed start of it) began; ``resumed_from`` (the checkpoint's step, or null) and
  ``device`` (``{"kind": "cuda" | "cpu" | "mps", "name", "memory_total"}``, bytes).
- ``step``: an optimizer step ended (at most one line a second, and always the last step); ``epoch``, ``seconds``
  since this start, ``memory_used`` (bytes: the whole GPU's, or this process's resident memory on a CPU) and
  ``memory_peak`` (this process's peak on a GPU, else null).
- ``log``: Trainer logged training values: ``epoch``, ``seconds``, ``loss``, ``ce_q1``... (each codebook's
  cross-entropy), ``learning_rate``, ``grad_norm``.
- ``eval``: evaluation values (``eval_loss``, ``eval_ce_q1``...).
- ``sample``: a render of the sample prompts was written: ``kind`` (``base``, ``step``, ``final``), ``folder`` and
  ``paths`` (the WAV files, in prompt order) and ``prompts``.
- ``end``: training ended; ``stopped`` is true when it ended before ``max_steps`` (Ctrl-C, SIGTERM).

A fresh start writes a new file; a resumed one appends, so the file tells the whole run (lines of a start after the
step its successor resumed from are superseded by the successor's). Only the main process writes.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

PROGRESS_FILE = "progress.jsonl"
STEP_EVERY_SECONDS = 1.0  # at most one `step` line a second: a long run's file stays small
LOGGED_KEYS = ("loss", "learning_rate", "grad_norm")  # with every key starting with ce_q


def _resident_bytes() -> int:
    """This process's resident memory (Linux: now; elsewhere: its peak)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def _machine_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def device_info(device: torch.device) -> dict[str, Any]:
    """What the run trains on: ``{"kind", "name", "memory_total"}`` (bytes; None where unknown)."""
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        return {"kind": "cuda", "name": properties.name, "memory_total": int(properties.total_memory)}
    if device.type == "mps":
        return {"kind": "mps", "name": "Apple GPU (MPS)", "memory_total": int(torch.mps.recommended_max_memory())}
    cores = os.cpu_count() or 1
    name = platform.processor() or platform.machine() or "CPU"
    return {"kind": "cpu", "name": f"{name}, {cores} cores", "memory_total": _machine_bytes()}


def memory_now(device: torch.device) -> dict[str, int | None]:
    """``{"memory_used", "memory_peak"}`` in bytes (see the module docstring)."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return {"memory_used": int(total - free), "memory_peak": int(torch.cuda.max_memory_allocated(device))}
    if device.type == "mps":
        return {"memory_used": int(torch.mps.driver_allocated_memory()), "memory_peak": None}
    return {"memory_used": _resident_bytes(), "memory_peak": None}


class ProgressLog(TrainerCallback):
    """Write ``OUTPUT_DIR/progress.jsonl`` (see the module docstring). Add it after the samples' callback, so that a
    render is on disk when the step that made it ends."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.started = 0.0
        self.start_step = 0
        self.last_step_line = 0.0
        self.renders: dict[str, float] = {}  # samples/<folder>/prompts.txt -> modification time already reported

    def _write(self, state: TrainerState, event: str, step: int | None = None, **values: Any) -> None:
        if self.path is None:
            return
        step = state.global_step if step is None else step
        line = {"event": event, "time": round(time.time(), 3), "step": step, "max_steps": state.max_steps}
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps({**line, **values}) + "\n")

    def _seconds(self) -> float:
        return round(time.time() - self.started, 3)

    def _renders(self, output_dir: str) -> dict[str, float]:
        found = {}
        for prompts in Path(output_dir, "samples").glob("*/prompts.txt"):
            try:
                found[prompts.parent.name] = prompts.stat().st_mtime
            except OSError:
                continue  # being replaced right now: seen at the next step
        return found

    def _report_renders(self, args: TrainingArguments, state: TrainerState) -> None:
        for folder, mtime in sorted(self._renders(args.output_dir).items(), key=lambda item: item[1]):
            if self.renders.get(folder) == mtime:
                continue
            self.renders[folder] = mtime
            lines = (Path(args.output_dir) / "samples" / folder / "prompts.txt").read_text(encoding="utf-8")
            names, prompts = zip(*(line.split("\t", 1) for line in lines.splitlines() if "\t" in line), strict=True)
            kind = folder if folder in ("base", "final") else "step"
            step = self.start_step if kind == "base" else state.global_step  # base: rendered before the first step
            paths = [str(Path(args.output_dir) / "samples" / folder / name) for name in names]
            self._write(state, "sample", step, kind=kind, folder=folder, paths=paths, prompts=list(prompts))

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        if not state.is_world_process_zero:
            return
        self.path = Path(args.output_dir) / PROGRESS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if state.global_step == 0:  # a fresh start: a new file (a run started over was moved aside with its own)
            self.path.write_text("", encoding="utf-8")
        self.started = time.time()
        self.start_step = state.global_step
        self.renders = self._renders(args.output_dir)  # renders of an earlier start were reported by it
        resumed = state.global_step or None
        self._write(state, "start", resumed_from=resumed, device=device_info(args.device))

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        if self.path is None:
            return
        now = time.time()
        if now - self.last_step_line >= STEP_EVERY_SECONDS or state.global_step >= state.max_steps:
            self.last_step_line = now
            self._write(state, "step", epoch=state.epoch, seconds=self._seconds(), **memory_now(args.device))
        self._report_renders(args, state)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kwargs):
        if self.path is None or not logs:
            return
        if "loss" in logs:
            values = {k: v for k, v in logs.items() if k in LOGGED_KEYS or k.startswith("ce_q")}
            self._write(state, "log", epoch=state.epoch, seconds=self._seconds(), **values)
        elif "eval_loss" in logs:
            self._write(state, "eval", epoch=state.epoch, **{k: v for k, v in logs.items() if k.startswith("eval_")})

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        if self.path is None:
            return
        self._report_renders(args, state)  # samples/final/, rendered by the samples' callback just before
        self._write(state, "end", stopped=state.global_step < state.max_steps, seconds=self._seconds())
