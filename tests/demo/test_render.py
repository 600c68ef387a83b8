"""Tests for musicgen_lora.demo.render: the output contract of render_clip, its randomness, its validation, and that
the audio really carries its ground truth (tempo from an onset-strength autocorrelation, key from a pitch-class
profile)."""

from __future__ import annotations

import numpy as np
import pytest

from musicgen_lora.audio.analysis import parse_key
from musicgen_lora.demo.composition import SCALES
from musicgen_lora.demo.render import render_clip
from musicgen_lora.demo.styles import GENRES


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
    in_scale = sorted((tonic + step) % 12 for step in SCALES[mode])
    out_of_scale = sorted(set(range(12)) - set(in_scale))
    top3 = list(np.argsort(profile)[::-1][:3])
    assert tonic in top3, f"tonic {tonic} not in top-3 pitch classes {top3}"
    assert profile[in_scale].sum() > 2.0 * profile[out_of_scale].sum()


# ----------------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------------


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


@pytest.mark.parametrize("bad", ["H major", "C dorian", "C", "", "A  minor extra", None])
def test_render_clip_rejects_bad_keys(bad):
    with pytest.raises(ValueError, match="bad key"):
        render_clip("rock", 100, bad, 0.5, 16000, np.random.default_rng(0))


@pytest.mark.parametrize("key", ["f# min", "Bb maj", "A minor"])
def test_render_clip_reads_keys_as_analysis_does(key):
    """Spellings analysis.parse_key reads are accepted and mean the same key as the canonical name."""
    canonical = {"f# min": "F# minor", "Bb maj": "Bb major", "A minor": "A minor"}[key]
    a = render_clip("techno", 128, key, 0.5, 16000, np.random.default_rng(3))
    b = render_clip("techno", 128, canonical, 0.5, 16000, np.random.default_rng(3))
    assert np.array_equal(a, b)
