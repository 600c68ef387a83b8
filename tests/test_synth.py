"""Tests for musicgen_lora.synth: the corpus files and metadata, determinism, the CLI, and that the audio really
carries its ground truth (tempo from an onset-strength autocorrelation, key from a pitch-class profile)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicgen_lora.demo import synth
from musicgen_lora.demo.synth import GENRES, KEYS, main, parse_key, render_clip, synthesize_corpus

REPO_ROOT = Path(__file__).resolve().parents[1]
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


def test_genres_are_distinct_styles():
    assert len(GENRES) >= 4
    styles = list(GENRES.values())
    assert len({s.instrument for s in styles}) == len(styles)
    assert len({s.kick + s.snare + s.hats for s in styles}) == len(styles)
    assert len({s.bpm_range for s in styles}) == len(styles)


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


def test_render_clip_is_a_function_of_its_rng():
    a = render_clip("bossa nova", 130, "D minor", 2.0, 16000, np.random.default_rng(7))
    b = render_clip("bossa nova", 130, "D minor", 2.0, 16000, np.random.default_rng(7))
    c = render_clip("bossa nova", 130, "D minor", 2.0, 16000, np.random.default_rng(8))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("genre", list(GENRES))
def test_render_clip_output_contract(genre):
    audio = render_clip(genre, 110, "G major", 1.7, 22050, np.random.default_rng(0))
    assert audio.dtype == np.float32
    assert audio.shape == (round(1.7 * 22050),)
    assert np.all(np.isfinite(audio))
    assert np.max(np.abs(audio)) <= 0.99
    assert np.sqrt(np.mean(audio**2)) > 0.05


# ----------------------------------------------------------------------------------------------------------
# Musical ground truth
# ----------------------------------------------------------------------------------------------------------

ANALYSIS_SR = 32000
ANALYSIS_SECONDS = 8.0


def onset_strength(audio: np.ndarray, sr: int, hop: int = 128) -> tuple[np.ndarray, float]:
    """Frame RMS in three bands (low / mid / high, from short FFTs), log-compressed; the positive frame-to-frame
    difference summed over bands. Returns the envelope (mean removed) and its frame rate."""
    win = 4 * hop
    frames = (len(audio) - win) // hop
    index = np.arange(win)[None, :] + hop * np.arange(frames)[:, None]
    power = np.abs(np.fft.rfft(audio.astype(np.float64)[index] * np.hanning(win), axis=1)) ** 2
    freqs = np.fft.rfftfreq(win, 1.0 / sr)
    envelope = np.zeros(frames - 1)
    for low, high in ((20, 200), (200, 2000), (2000, sr / 2)):
        rms = np.sqrt(power[:, (freqs >= low) & (freqs < high)].sum(axis=1))
        log_rms = np.log(rms + 1e-3 * rms.max())
        envelope += np.maximum(np.diff(log_rms), 0.0)
    return envelope - envelope.mean(), sr / hop


def autocorrelation_peak_seconds(audio: np.ndarray, sr: int, shortest: float = 0.3, longest: float = 1.0) -> float:
    """Lag (seconds) of the onset envelope's autocorrelation maximum among lags from 60 to 200 bpm."""
    envelope, fps = onset_strength(audio, sr)
    n = len(envelope)
    autocorrelation = np.fft.irfft(np.abs(np.fft.rfft(envelope, 2 * n)) ** 2)[:n]
    first, last = int(shortest * fps), int(longest * fps)
    return (first + int(np.argmax(autocorrelation[first:last]))) / fps


def lag_fits_tempo(lag: float, bpm: float, tolerance: float = 0.03) -> bool:
    """True when ``lag`` is the beat period of ``bpm``, half of it, or twice it (within ``tolerance``)."""
    beat = 60.0 / bpm
    return any(abs(lag - m * beat) <= tolerance * m * beat for m in (0.5, 1.0, 2.0))


@pytest.mark.parametrize(
    ("genre", "bpm"),
    [("techno", 124), ("techno", 133), ("lofi hip hop", 74), ("bossa nova", 128), ("rock", 142), ("synthwave", 97)],
)
def test_tempo_is_recoverable_from_the_audio(genre, bpm):
    audio = render_clip(genre, bpm, "A minor", ANALYSIS_SECONDS, ANALYSIS_SR, np.random.default_rng(bpm))
    lag = autocorrelation_peak_seconds(audio, ANALYSIS_SR)
    assert lag_fits_tempo(lag, bpm), f"autocorrelation peak {lag:.3f} s vs beat {60 / bpm:.3f} s"


def test_tempo_detector_tells_tempi_apart():
    """The check above is not vacuous: the lag found for one clip does not fit a clip 10% slower or faster."""
    lag = autocorrelation_peak_seconds(
        render_clip("synthwave", 100, "E minor", ANALYSIS_SECONDS, ANALYSIS_SR, np.random.default_rng(1)), ANALYSIS_SR
    )
    assert lag_fits_tempo(lag, 100)
    assert not lag_fits_tempo(lag, 110)
    assert not lag_fits_tempo(lag, 90)


def pitch_class_profile(audio: np.ndarray, sr: int, low: float = 60.0, high: float = 2000.0) -> np.ndarray:
    """Spectral energy (squared FFT magnitude) between ``low`` and ``high`` Hz folded onto 12 pitch classes
    (0 = C), each FFT bin assigned to its nearest equal-tempered pitch."""
    energy = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1.0 / sr)
    band = (freqs >= low) & (freqs <= high)
    pitch_class = np.round(12 * np.log2(freqs[band] / 440.0) + 69).astype(int) % 12
    return np.bincount(pitch_class, weights=energy[band], minlength=12)


@pytest.mark.parametrize(
    ("genre", "key"),
    [
        ("lofi hip hop", "A minor"),
        ("lofi hip hop", "Db major"),
        ("techno", "F# minor"),
        ("techno", "Bb major"),
        ("bossa nova", "Eb major"),
        ("bossa nova", "B minor"),
        ("rock", "E minor"),
        ("rock", "D major"),
        ("synthwave", "C major"),
        ("synthwave", "G# minor"),
    ],
)
def test_key_is_recoverable_from_the_audio(genre, key):
    audio = render_clip(genre, 100, key, ANALYSIS_SECONDS, ANALYSIS_SR, np.random.default_rng(len(key)))
    profile = pitch_class_profile(audio, ANALYSIS_SR)
    tonic, mode = parse_key(key)
    in_scale = sorted((tonic + step) % 12 for step in synth.SCALES[mode])
    out_of_scale = sorted(set(range(12)) - set(in_scale))
    top3 = list(np.argsort(profile)[::-1][:3])
    assert tonic in top3, f"tonic {tonic} not in top-3 pitch classes {top3}"
    assert profile[in_scale].sum() > 2.0 * profile[out_of_scale].sum()


# ----------------------------------------------------------------------------------------------------------
# Keys and validation
# ----------------------------------------------------------------------------------------------------------


def test_keys_cover_all_roots_and_modes():
    assert len(KEYS) == 24
    assert {parse_key(k) for k in KEYS} == {(pc, mode) for pc in range(12) for mode in ("major", "minor")}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("A minor", (9, "minor")), ("C major", (0, "major")), ("f# min", (6, "minor")), ("Bb maj", (10, "major"))],
)
def test_parse_key(text, expected):
    assert parse_key(text) == expected


@pytest.mark.parametrize("bad", ["H major", "C dorian", "C", "", "A  minor extra", None])
def test_parse_key_rejects_bad_keys(bad):
    with pytest.raises(ValueError, match="bad key"):
        parse_key(bad)


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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("polka", 100, "C major", 1.0, 16000), "unknown genre"),
        (("rock", 100, "C lydian", 1.0, 16000), "bad key"),
        (("rock", 5, "C major", 1.0, 16000), "bpm"),
        (("rock", 100, "C major", 0.0, 16000), "seconds"),
    ],
)
def test_render_clip_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        render_clip(*args, np.random.default_rng(0))


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


def test_module_runs_as_a_script(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "musicgen_lora.synth"]
    ok = subprocess.run(
        [*command, str(tmp_path / "ok"), "--clips", "1", "--seconds", "0.5", "--sample_rate", "16000"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "ok" / "clip_000.wav").is_file()
    bad = subprocess.run(
        [*command, str(tmp_path / "bad"), "--clips", "0"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines() == ["error: clips must be >= 1, got 0"]
