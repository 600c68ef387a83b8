"""python -m musicgen_lora.prepare: the prepared splits, data_report.json, the summary, and reuse by training."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

from musicgen_lora.prepare.cli import main as prepare_main

from ..conftest import RATE, base_argv, run_script, tone


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> Path:
    """5 tracks: three long ones (5.5 s, one with a silent middle), one short (1.5 s), one too short (0.3 s)."""
    folder = tmp_path_factory.mktemp("prepare") / "songs"
    folder.mkdir()
    for index in range(3):
        audio = tone(5.5, 200 + 70 * index)
        if index == 2:
            audio[2 * RATE : 4 * RATE] = 0.0
        sf.write(folder / f"long{index}.wav", audio, RATE)
    sf.write(folder / "short.wav", tone(1.5, 500), RATE)
    sf.write(folder / "tiny.wav", tone(0.3, 600), RATE)
    for name in ("long0", "long1", "short"):
        (folder / f"{name}.txt").write_text(f"tone {name}")
    return folder


@pytest.fixture(scope="module")
def prepared(songs, tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("prepare-run")
    argv = base_argv(tiny_model_dir, songs, root / "out", root / "cache") + [
        "--max_duration_in_seconds",
        "2",
        "--chunk_long_tracks",
        "true",
        "--tail_policy",
        "drop",
        "--silence_threshold_db",
        "-60",
        "--instance_prompt",
        "sks",
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "2",
    ]
    report = prepare_main(argv)
    return {"argv": argv, "report": report, "root": root}


def test_report_counts_what_was_kept_and_left_out(prepared, songs):
    report = prepared["report"]
    written = json.loads((prepared["root"] / "out" / "prepared_data" / "data_report.json").read_text())
    assert written == json.loads(json.dumps(report))
    train = report["splits"]["train"]
    # long0, long1: 2 + 2 + 1.5 s; long2: 2 s and 1.5 s (its silent 2-4 s chunk left out); short: 1.5 s
    assert train["tracks"] == 5 and train["examples"] == 3 + 3 + 2 + 1
    assert train["left_out"] == {
        "too_short_tracks": 1,
        "too_short_seconds": pytest.approx(0.3, abs=0.03),
        "silent_tracks": 0,
        "silent_chunks": 1,
        "dropped_tail_seconds": 0.0,
    }
    assert train["hours_found"] * 3600 == pytest.approx(3 * 5.5 + 1.5 + 0.3, abs=0.1)
    assert train["hours_kept"] * 3600 == pytest.approx(3 * 5.5 + 1.5 - 2.0, abs=0.1)
    assert train["length_histogram"] == {
        "0-0.333333 s": 0,
        "0.333333-0.666667 s": 0,
        "0.666667-1 s": 0,
        "1-1.33333 s": 0,
        "1.33333-1.66667 s": 4,
        "1.66667-2 s": 5,
    }
    assert train["captions"]["tracks_with_own_caption"] == 3 and train["captions"]["coverage"] == pytest.approx(0.6)
    assert train["files"] == {  # the silent chunk of long2 is no file: only counted above
        "found": 5,
        "read": 5,
        "skipped": 1,
        "reasons": {"too short": 1},
        "skipped_files": [{"path": str(songs / "tiny.wav"), "reason": "too short: 0.30 s < min_duration_in_seconds"}],
    }
    assert "tempo_key" not in train  # only with add_metadata
    assert "eval" not in report["splits"] and report["options"]["tail_policy"] == "drop"


def test_prepared_split_is_on_disk_with_sources_and_offsets(prepared, songs):
    train = datasets.load_from_disk(str(prepared["root"] / "out" / "prepared_data" / "train"))
    assert len(train) == 9
    pieces = sorted((Path(s).stem, o) for s, o in zip(train["source"], train["offset_seconds"], strict=False))
    assert pieces == [
        ("long0", 0.0),
        ("long0", 2.0),
        ("long0", 4.0),
        ("long1", 0.0),
        ("long1", 2.0),
        ("long1", 4.0),
        ("long2", 0.0),
        ("long2", 4.0),
        ("short", 0.0),
    ]
    assert set(train["text"]) == {"sks, tone long0", "sks, tone long1", "sks", "sks, tone short"}


def test_training_after_prepare_reuses_the_work(prepared, monkeypatch):
    from finetune_musicgen import main as train_main

    def boom(*args, **kwargs):
        raise AssertionError("encoded or measured again")

    monkeypatch.setattr("musicgen_lora.prepare.encoding.encode_clip", boom)
    monkeypatch.setattr("musicgen_lora.prepare.measurements.decode_audio", boom)
    again = prepare_main(prepared["argv"])  # re-running prepare does nothing new
    assert again["splits"] == json.loads(json.dumps(prepared["report"]["splits"]))
    monkeypatch.setattr("musicgen_lora.prepare.encoding.encode_clip", boom)
    result = train_main(prepared["argv"])  # the same config trains without encoding again
    assert np.isfinite(result["train"]["train_loss"])


def test_summary_is_printed_and_errors_are_one_line(prepared, tmp_path, capsys, monkeypatch):
    from musicgen_lora.prepare.report import summary

    text = summary(prepared["report"])
    assert text.splitlines()[0].startswith("train: 9 examples from 5 tracks")
    assert "left out: 1 too short, 0 silent tracks, 1 silent chunks, 0.0 s of tails" in text
    assert "files: 5 found, 5 read, 1 left out (1 too short; each listed in data_report.json)" in text
    assert run_script(monkeypatch, "musicgen_lora.prepare", str(tmp_path / "nope.json")) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: config file")
