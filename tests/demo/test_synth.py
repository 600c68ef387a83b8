"""Tests for musicgen_lora.demo.synth: the corpus files and metadata, determinism, validation and the command
line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicgen_lora.demo.composition import KEYS
from musicgen_lora.demo.styles import GENRES
from musicgen_lora.demo.synth import main, synthesize_corpus

from ..conftest import run_script

CORPUS_SR = 16000
CORPUS_SECONDS = 2.5
CORPUS_CLIPS = len(GENRES) + 2  # every genre, and the cycle wraps around
ROW_KEYS = {"file_name", "text", "bpm", "key", "genre", "instrument"}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    rows = synthesize_corpus(out, clips=CORPUS_CLIPS, seconds=CORPUS_SECONDS, seed=123, sample_rate=CORPUS_SR)
    return out, rows


# ----------------------------------------------------------------------------------------------------------
# Metadata and files
# ----------------------------------------------------------------------------------------------------------


def test_metadata_rows_describe_the_written_files(corpus):
    out, rows = corpus
    assert len(rows) == CORPUS_CLIPS
    lines = (out / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == rows
    assert len({row["file_name"] for row in rows}) == CORPUS_CLIPS
    for row in rows:
        assert set(row) == ROW_KEYS
        assert not Path(row["file_name"]).is_absolute()
        info = sf.info(str(out / row["file_name"]))
        assert info.samplerate == CORPUS_SR
        assert info.channels == 1
        assert info.subtype == "PCM_16"
        assert abs(info.frames - CORPUS_SECONDS * CORPUS_SR) <= 1


def test_metadata_ground_truth_is_consistent(corpus):
    _, rows = corpus
    genre_names = list(GENRES)
    for i, row in enumerate(rows):
        style = GENRES[row["genre"]]
        assert row["genre"] == genre_names[i % len(genre_names)]
        assert isinstance(row["bpm"], int)
        assert style.bpm_range[0] <= row["bpm"] <= style.bpm_range[1]
        assert row["key"] in KEYS
        assert row["instrument"] == style.instrument
        for part in (row["genre"], f"{row['bpm']} bpm", row["key"], row["instrument"]):
            assert part in row["text"]
    assert {row["genre"] for row in rows} == set(GENRES)


def test_clips_are_audible_and_unclipped(corpus):
    out, rows = corpus
    for row in rows:
        audio, sr = sf.read(str(out / row["file_name"]), dtype="float32")
        assert audio.ndim == 1 and sr == CORPUS_SR
        assert np.sqrt(np.mean(audio**2)) > 0.05, row
        assert np.max(np.abs(audio)) <= 0.99, row
        assert np.mean(np.abs(audio) > 0.98) == 0.0, row
        # no long silent stretch: every quarter second carries some signal
        quarters = audio[: len(audio) // (sr // 4) * (sr // 4)].reshape(-1, sr // 4)
        assert np.sqrt(np.mean(quarters**2, axis=1)).min() > 0.005, row


# ----------------------------------------------------------------------------------------------------------
# Determinism
# ----------------------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes(corpus, tmp_path):
    out, rows = corpus
    again = synthesize_corpus(tmp_path, clips=CORPUS_CLIPS, seconds=CORPUS_SECONDS, seed=123, sample_rate=CORPUS_SR)
    assert again == rows
    assert (tmp_path / "metadata.jsonl").read_bytes() == (out / "metadata.jsonl").read_bytes()
    for row in rows:
        assert (tmp_path / row["file_name"]).read_bytes() == (out / row["file_name"]).read_bytes()


def test_clip_does_not_depend_on_clip_count(corpus, tmp_path):
    out, rows = corpus
    fewer = synthesize_corpus(tmp_path, clips=2, seconds=CORPUS_SECONDS, seed=123, sample_rate=CORPUS_SR)
    assert fewer == rows[:2]
    for row in fewer:
        assert (tmp_path / row["file_name"]).read_bytes() == (out / row["file_name"]).read_bytes()


def test_different_seed_gives_different_corpus(corpus, tmp_path):
    out, rows = corpus
    other = synthesize_corpus(tmp_path, clips=CORPUS_CLIPS, seconds=CORPUS_SECONDS, seed=124, sample_rate=CORPUS_SR)
    assert [(r["bpm"], r["key"]) for r in other] != [(r["bpm"], r["key"]) for r in rows]
    for row in rows:  # every clip differs, not just some
        assert (tmp_path / row["file_name"]).read_bytes() != (out / row["file_name"]).read_bytes()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clips": 0}, "clips"),
        ({"seconds": 0}, "seconds"),
        ({"seconds": -1.5}, "seconds"),
        ({"seconds": float("nan")}, "seconds"),
        ({"seed": -1}, "seed"),
        ({"sample_rate": 100}, "sample_rate"),
        ({"genres": ["polka"]}, "unknown genre"),
        ({"genres": []}, "genre"),
    ],
)
def test_synthesize_corpus_rejects_bad_input(tmp_path, kwargs, message):
    args = {"clips": 2, "seconds": 1.0, "seed": 0, "sample_rate": 16000, **kwargs}
    with pytest.raises(ValueError, match=message):
        synthesize_corpus(tmp_path / "out", **args)
    assert not (tmp_path / "out" / "metadata.jsonl").exists()


def test_genre_subset_is_cycled(tmp_path):
    rows = synthesize_corpus(tmp_path, clips=3, seconds=0.5, seed=1, sample_rate=16000, genres=["rock", "techno"])
    assert [r["genre"] for r in rows] == ["rock", "techno", "rock"]


# ----------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------


def test_main_writes_the_folder(tmp_path, capsys):
    out = tmp_path / "demo"
    rows = main([str(out), "--clips", "3", "--seconds", "1", "--seed", "5", "--sample_rate", "16000"])
    assert len(rows) == 3
    assert sorted(p.name for p in out.iterdir()) == ["clip_000.wav", "clip_001.wav", "clip_002.wav", "metadata.jsonl"]
    assert rows == [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and printed[0].startswith("wrote 3 clips")


def test_main_defaults_match_the_library(tmp_path):
    rows = main([str(tmp_path), "--clips", "1", "--seconds", "0.5"])
    assert sf.info(str(tmp_path / rows[0]["file_name"])).samplerate == 32000
    expected = synthesize_corpus(tmp_path / "lib", clips=1, seconds=0.5, seed=0)
    assert rows == expected


@pytest.mark.parametrize(
    "extra",
    [
        ["--clips", "0"],
        ["--seconds", "-1"],
        ["--seconds", "abc"],
        ["--sample_rate", "100"],
        ["--seed", "-3"],
        ["--genres", "polka"],
        ["--no-such-flag"],
    ],
)
def test_main_reports_bad_arguments_on_one_line(tmp_path, capsys, extra):
    with pytest.raises(SystemExit) as excinfo:
        main([str(tmp_path / "out"), *extra])
    assert excinfo.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")


def test_main_requires_an_output_folder(capsys):
    with pytest.raises(SystemExit) as excinfo:
        main([])
    assert excinfo.value.code == 2
    assert capsys.readouterr().err.startswith("error:")


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(["--help"])
    assert excinfo.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--clips", "--seconds", "--seed", "--sample_rate", "out_dir"):
        assert flag in text


def test_module_runs_as_a_script(tmp_path, capsys, monkeypatch):
    command = "musicgen_lora.synth"  # python -m musicgen_lora.synth, the name the README gives
    argv = [str(tmp_path / "ok"), "--clips", "1", "--seconds", "0.5", "--sample_rate", "16000"]
    assert run_script(monkeypatch, command, *argv) == 0, capsys.readouterr().err
    assert (tmp_path / "ok" / "clip_000.wav").is_file()
    capsys.readouterr()
    assert run_script(monkeypatch, command, str(tmp_path / "bad"), "--clips", "0") == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: clips must be >= 1, got 0"]
