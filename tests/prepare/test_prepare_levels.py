"""Level and silence: loudness normalisation before encoding, and silent tracks or chunks left out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicgen_lora.audio.analysis import integrated_loudness
from musicgen_lora.audio.io import load_audio
from musicgen_lora.config.parsing import parse_config
from musicgen_lora.errors import UserError
from musicgen_lora.models.codec import encode_clip
from musicgen_lora.prepare.cache_keys import module_fingerprint
from musicgen_lora.prepare.chunking import frame_levels, level_db
from musicgen_lora.prepare.encoding import normalize_loudness

from ..conftest import RATE, base_argv, tone
from .conftest import prepared_split


@pytest.fixture(scope="module")
def fingerprint(model):
    return module_fingerprint(model.audio_encoder)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("levels") / "songs"
    root.mkdir()
    noise = np.random.default_rng(0).standard_normal(2 * RATE).astype(np.float32) * 1e-4  # about -80 dBFS
    tracks = {
        "a_loud": tone(2.0, amplitude=0.5),
        "b_quiet": tone(2.0, 220.0, amplitude=0.01),  # -43 dBFS: quiet, not silent
        "c_near_silent": noise,
        "d_gap": np.concatenate(
            [tone(2.0, 330.0, amplitude=0.5), noise, tone(2.0, 330.0, amplitude=0.5)]
        ),  # loud, silent, loud
    }
    for name, audio in tracks.items():
        sf.write(root / f"{name}.wav", audio, RATE, subtype="FLOAT")
        (root / f"{name}.txt").write_text(name)
    return root


def prepare(tmp_path, model_dir, model, fingerprint, dataset, *extra):
    argv = base_argv(model_dir, dataset, tmp_path / "out", tmp_path / "cache") + ["--max_duration_in_seconds", "2"]
    return prepared_split(parse_config(argv + list(extra)).data, "train", model, fingerprint, False)


def test_levels_in_dbfs():
    levels = frame_levels(tone(1.0, amplitude=1.0)[None], RATE, 50.0)
    assert len(levels) == 50 and level_db(levels, 0, 50) == pytest.approx(-3.01, abs=0.05)
    assert level_db(frame_levels(np.zeros((1, RATE)), RATE, 50.0), 0, 50) == pytest.approx(-200.0)
    two = frame_levels(np.concatenate([tone(1.0, amplitude=1.0), np.zeros(RATE, np.float32)]), RATE, 50.0)
    assert level_db(two, 50, 50) < -100 and level_db(two, 0, 100) == pytest.approx(-6.02, abs=0.05)


def test_normalize_loudness_reaches_the_target_without_clipping():
    quiet = tone(3.0, amplitude=0.02)[None]
    assert integrated_loudness(normalize_loudness(quiet, RATE, -14.0), RATE) == pytest.approx(-14.0, abs=0.05)
    loud = tone(3.0, amplitude=0.9)[None]  # -3.9 LUFS: +2 dB more would clip, so the gain stops at full scale
    raised = normalize_loudness(loud, RATE, -2.0)
    assert np.abs(raised).max() == pytest.approx(1.0, abs=1e-4)
    silent = np.zeros((1, RATE), np.float32)
    assert normalize_loudness(silent, RATE, -14.0) is silent


def test_loudness_normalisation_is_encoded_and_cached_apart(tmp_path, tiny_model_dir, model, fingerprint, folder):
    plain = prepare(tmp_path, tiny_model_dir, model, fingerprint, folder)
    normalised = prepare(tmp_path, tiny_model_dir, model, fingerprint, folder, "--loudness_target_lufs", "-20")
    assert len(list((tmp_path / "cache").glob("codes-*"))) == 2  # another target is another cache entry
    index = normalised["text"].index("b_quiet")
    audio = load_audio(str(folder / "b_quiet.wav"), RATE, 1)
    expected = encode_clip(model.audio_encoder, normalize_loudness(audio, RATE, -20.0))
    np.testing.assert_array_equal(np.array(normalised["codes"][index]), expected)
    assert normalised["codes"][index] != plain["codes"][index]


def test_silent_tracks_and_chunks_are_left_out(tmp_path, tiny_model_dir, model, fingerprint, folder):
    everything = prepare(tmp_path, tiny_model_dir, model, fingerprint, folder)
    assert everything["text"] == ["a_loud", "b_quiet", "c_near_silent", "d_gap"]
    tracks = prepare(tmp_path, tiny_model_dir, model, fingerprint, folder, "--silence_threshold_db", "-60")
    assert tracks["text"] == ["a_loud", "b_quiet", "d_gap"]  # the gap's track is loud overall: kept whole
    chunks = prepare(
        tmp_path,
        tiny_model_dir,
        model,
        fingerprint,
        folder,
        "--silence_threshold_db",
        "-60",
        "--chunk_long_tracks",
        "true",
    )
    assert list(zip(chunks["text"], chunks["offset_seconds"], strict=False)) == [
        ("a_loud", 0.0),
        ("b_quiet", 0.0),
        ("d_gap", 0.0),
        ("d_gap", 4.0),  # the gap's silent 2-4 s chunk is gone
    ]
    stricter = prepare(tmp_path, tiny_model_dir, model, fingerprint, folder, "--silence_threshold_db", "-30")
    assert stricter["text"] == ["a_loud", "d_gap"]


def test_all_silent_is_an_error_and_options_are_validated(tmp_path, tiny_model_dir, model, fingerprint):
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    sf.write(quiet / "x.wav", tone(2.0, amplitude=0.001), RATE)  # -60 dBFS (digital silence is left out earlier)
    (quiet / "x.txt").write_text("x")
    for extra in ([], ["--chunk_long_tracks", "true"]):
        with pytest.raises(UserError, match="quieter than silence_threshold_db=-50 dBFS; lower the threshold"):
            prepare(tmp_path, tiny_model_dir, model, fingerprint, quiet, "--silence_threshold_db", "-50", *extra)
    with pytest.raises(UserError, match="loudness_target_lufs must be between -70 and 0"):
        prepare(tmp_path, tiny_model_dir, model, fingerprint, quiet, "--loudness_target_lufs", "3")
    with pytest.raises(UserError, match="silence_threshold_db must be below 0 dBFS"):
        prepare(tmp_path, tiny_model_dir, model, fingerprint, quiet, "--silence_threshold_db", "10")
