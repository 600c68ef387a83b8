"""progress.jsonl: one JSON line per logged step and per rendered sample, written by the run itself (what the Studio
and any script read instead of scraping the log)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from musicgen_lora.train.progress_log import PROGRESS_FILE


def _lines(output_dir: str) -> list[dict]:
    return [json.loads(line) for line in (Path(output_dir) / PROGRESS_FILE).read_text().splitlines()]


def test_every_logged_step_and_render_is_a_line(trained_run):
    lines = _lines(trained_run["output_dir"])
    assert [line["event"] for line in lines][0] == "start" and lines[-1]["event"] == "end"
    start, end = lines[0], lines[-1]
    assert (start["step"], start["max_steps"], start["resumed_from"]) == (0, 40, None)
    assert start["device"]["kind"] == "cpu" and start["device"]["memory_total"] > 2**30
    assert (end["step"], end["stopped"]) == (40, False)

    # the logged values are Trainer's own, exactly (trainer_state.json holds the same history)
    logged = [line for line in lines if line["event"] == "log"]
    history = [record for record in trained_run["log_history"] if "loss" in record]
    assert [line["step"] for line in logged] == [record["step"] for record in history] == list(range(5, 41, 5))
    for line, record in zip(logged, history, strict=True):
        for key in ("loss", "learning_rate", "grad_norm", "ce_q1", "ce_q2", "ce_q3", "ce_q4"):
            assert line[key] == pytest.approx(record[key], rel=1e-9), key
        assert line["epoch"] == pytest.approx(record["epoch"]) and line["seconds"] > 0

    # progress while it trains: steps in order, at least the last one, with the memory in use
    steps = [line for line in lines if line["event"] == "step"]
    assert steps[-1]["step"] == 40 and [s["step"] for s in steps] == sorted({s["step"] for s in steps})
    assert all(0 < s["memory_used"] <= start["device"]["memory_total"] for s in steps)
    assert [s["seconds"] for s in steps] == sorted(s["seconds"] for s in steps)

    # the renders, each when it was written, with its files in prompt order
    samples = [line for line in lines if line["event"] == "sample"]
    assert [(s["kind"], s["folder"], s["step"]) for s in samples] == [("base", "base", 0), ("final", "final", 40)]
    prompts = ["lofi hip hop, piano", "techno, 128 bpm"]
    for sample in samples:
        assert sample["prompts"] == prompts
        assert [Path(p).name for p in sample["paths"]] == ["0.wav", "1.wav"]
        assert all(Path(p).is_file() for p in sample["paths"])
