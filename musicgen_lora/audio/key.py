"""Key of a piece of audio (one of the 24 major and minor keys), with a confidence.

An approximate transcription (:func:`note_salience`: non-negative least squares of a whitened log-frequency spectrum
on harmonic note templates, after Mauch & Dixon 2010), so that a note's 3rd harmonic no longer votes for the fifth
above; its pitch classes, those of its bass and their logs are scored for each of the 24 keys by a logistic
regression fitted on real music (:func:`key_scores`, weights from ``bench/key_weights_fit.py``). Accuracy and cost
on real music: bench/RESULTS.md ("Captions you can trust").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import soxr
from scipy.ndimage import uniform_filter1d
from scipy.optimize import nnls

from .analysis import key_name, to_mono32

# Key profiles of Albrecht & Shanahan (2013): pitch-class distributions of major / minor pieces, tonic first. Here
# they measure tonal clarity only (how well the best of the 24 rotated profiles fits a chroma); the key itself comes
# from KEY_WEIGHTS.
MAJOR_PROFILE = np.array([0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081])


MINOR_PROFILE = np.array([0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052])


# The key model: multinomial logistic regression over the 24 keys. A key's score is the weighted sum of three
# pitch-class features read from its tonic (the chroma of the transcription, its bass chroma and the log of its
# chroma, each standardised), plus a bias for minor; the weights are shared by the 12 tonics of a mode. Fitted by
# ``python bench/key_weights_fit.py`` (maximum likelihood with an L2 penalty chosen by 5-fold cross-validation) on
# the `tune` half of bench/key_tempo_corpora.py's chorales and folk tunes (rendered ``--no-accents``; refitted on the
# renders with metric stress, the weights change little and score the same, 89 %) and on two seeds of the demo
# corpus; the `test` half, the classical and OpenMSX corpora and the demo seed of the tests were never seen. Averaged
# profiles (Albrecht & Shanahan's, or ones learned as mean chromas) weigh the dominant almost like the tonic, so a
# piece that leans on its fifth, or visits its dominant or relative, was named after it: fitted for discrimination,
# the weights learn what tells a key from its neighbours (84 % -> 90 % of keys exactly right on 656 excerpts of real
# music rendered without stress, 89 % with it, 89 % on the test half; bench/RESULTS.md).
KEY_FEATURES = ("chroma", "bass chroma", "log chroma")
LOG_CHROMA_FLOOR = 0.01  # share added before the log: a pitch class never heard counts as one heard 1 % of the time
# (major/minor, feature, pitch class counted from the tonic), then the bias added to the score of every minor key
KEY_WEIGHTS = np.array(
    [
        [
            [1.610, -0.149, 0.083, -0.291, 0.901, -0.606, -0.591, 1.926, -0.547, -0.576, -1.545, -0.217],
            [0.483, -0.315, 0.526, -0.498, -0.830, 0.252, 0.192, -0.022, 0.418, -0.253, 0.573, -0.527],
            [1.392, -0.922, 0.594, -0.849, 0.724, 0.709, -1.457, 0.896, -1.264, 0.377, -1.302, 1.103],
        ],
        [
            [1.141, -0.211, 0.301, 0.341, -1.026, -0.215, -0.536, 1.567, -0.169, -0.243, -0.208, -0.740],
            [0.546, -0.180, -0.415, 0.625, -0.508, 0.544, -0.169, -0.610, 0.825, 0.116, -0.124, -0.649],
            [0.809, -1.061, 0.084, 0.396, -0.348, 0.805, -0.640, -0.320, -0.338, -0.664, 0.303, 0.974],
        ],
    ]
)
MINOR_BIAS = 6.287


KEY_SAMPLE_RATE = 11025  # key evidence lies below 2.1 kHz (C7) plus the templates' harmonics: resample first, cheaply
KEY_LOW_MIDI, KEY_HIGH_MIDI = 24, 96  # the notes transcribed: C1 (33 Hz) to C7 (2.1 kHz)
BASS_MAX_MIDI = 48  # notes below C3 make the bass chroma
_BINS_PER_SEMITONE = 3
HARMONIC_DECAY = 0.8  # amplitude of harmonic h relative to h - 1 in the note templates
WHITENING_FLOOR = 1.0  # the least deviation used in _whiten, relative to the mean deviation
# Tonal clarity: the best correlation of a chroma with the 24 rotated Albrecht & Shanahan profiles. On the 716
# excerpts of the corpora and the demo corpus it is above 0.62 for 99 % of them (lowest 0.53); white and pink noise
# reach 0.27 and 0.28. Mapped linearly from KEY_CLEAR_SCORES[0] (clarity 0) to [1] (clarity 1).
KEY_CLEAR_SCORES = (0.35, 0.6)
# Pitch variety: a key needs several pitch classes. The effective number of pitch classes heard (exp of the chroma's
# entropy) is at least 4.8 on every excerpt of the corpora, 1.3 for a drone and 2.0 for a power chord held; mapped
# linearly from KEY_PITCH_VARIETY[0] (variety 0) to [1] (variety 1).
KEY_PITCH_VARIETY = (2.5, 4.5)
# Below this a caption leaves the key out (chosen on the corpora, bench/RESULTS.md "Confidence thresholds"); every
# noise, drone and held chord falls below it.
KEY_CONFIDENCE_THRESHOLD = 0.5


def _log_frequency_spectrogram(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude on a log-frequency axis, 3 bins per semitone from KEY_LOW_MIDI - 1 to KEY_HIGH_MIDI + 1.

    Returns ``(spectrogram (frames, bins) float32, bin centres in MIDI numbers)``; frames of ~0.37 s, half overlap.
    Each log bin takes the larger of the spectrum interpolated at its centre (low notes, where linear bins are
    coarser than a third of a semitone) and the mean of the linear bins falling in it (high notes).
    """
    n_fft = 1 << int(math.ceil(math.log2(sr * 0.37)))
    hop = n_fft // 2
    centres = np.arange((KEY_LOW_MIDI - 1) * _BINS_PER_SEMITONE, (KEY_HIGH_MIDI + 1) * _BINS_PER_SEMITONE + 1)
    centres = centres / _BINS_PER_SEMITONE
    centre_hz = 440.0 * 2 ** ((centres - 69) / 12)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    position = (69 + 12 * np.log2(np.maximum(freqs, 1e-3) / 440.0) - centres[0]) * _BINS_PER_SEMITONE
    lower = np.floor(position).astype(int)
    upper_share = position - lower
    keep = (lower >= 0) & (lower < len(centres) - 1)
    # (linear bins -> log bins) as a sparse-free dense matrix is 2k x 220: small enough
    pooling = np.zeros((len(freqs), len(centres)), np.float32)
    pooling[keep, lower[keep]] = 1 - upper_share[keep]
    pooling[keep, lower[keep] + 1] = upper_share[keep]
    pooling /= np.maximum(pooling.sum(axis=0, keepdims=True), 1e-9)
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    count = 1 + (len(x) - n_fft) // hop
    window = np.hanning(n_fft).astype(np.float32)
    out = np.empty((count, len(centres)), np.float32)
    for first in range(0, count, 32):  # 32 frames at a time: memory stays a few MB whatever the length
        index = np.arange(first, min(count, first + 32))
        frames = x[(index * hop)[:, None] + np.arange(n_fft)[None, :]].astype(np.float32) * window
        mag = np.abs(np.fft.rfft(frames, axis=1)).astype(np.float32)
        at_centre = np.stack([np.interp(centre_hz, freqs, m) for m in mag])
        out[index] = np.maximum(at_centre, mag @ pooling)
    return out, centres


def _note_templates(centres: np.ndarray) -> np.ndarray:
    """(bins, notes) unit-norm spectra of the harmonic notes KEY_LOW_MIDI..KEY_HIGH_MIDI (geometric decay)."""
    notes = np.arange(KEY_LOW_MIDI, KEY_HIGH_MIDI + 1)
    templates = np.zeros((len(centres), len(notes)))
    for j, note in enumerate(notes):
        for h in range(1, 21):
            partial = note + 12 * math.log2(h)
            if partial > centres[-1]:
                break
            templates[:, j] += HARMONIC_DECAY ** (h - 1) * np.maximum(
                0, 1 - np.abs(centres - partial) * _BINS_PER_SEMITONE
            )
    return templates / np.linalg.norm(templates, axis=0, keepdims=True)


def _whiten(spec: np.ndarray) -> np.ndarray:
    """Standardise each frame against its running mean and deviation over one octave; keep what stands out."""
    width = 12 * _BINS_PER_SEMITONE + 1
    mean = uniform_filter1d(spec, width, axis=1, mode="nearest")
    deviation = np.sqrt(np.maximum(uniform_filter1d(spec**2, width, axis=1, mode="nearest") - mean**2, 0.0))
    # floor: where the spectrum is all but empty, a tiny deviation would turn numerical dust into notes
    floor = WHITENING_FLOOR * max(float(deviation.mean()), 1e-12)
    return np.maximum((spec - mean) / np.maximum(deviation, floor), 0.0)


def note_salience(audio: np.ndarray, sr: int, segment_frames: int = 4) -> np.ndarray:
    """Approximate transcription: the energy of each note KEY_LOW_MIDI..KEY_HIGH_MIDI per ~0.75 s segment.

    Non-negative least squares of the whitened log-frequency spectrum on harmonic note templates (Mauch & Dixon's
    NNLS chroma, 2010): a note's harmonics are explained by the note, so the 3rd harmonic no longer votes for the
    fifth above (the error behind most wrong keys of a plain chroma). Returns (segments, notes).
    """
    x = to_mono32(audio)
    if sr != KEY_SAMPLE_RATE:
        x = soxr.resample(x, sr, KEY_SAMPLE_RATE, quality="HQ")
    spec, centres = _log_frequency_spectrogram(x, KEY_SAMPLE_RATE)
    spec = _whiten(spec)
    templates = _note_templates(centres)
    fundamental = _BINS_PER_SEMITONE + _BINS_PER_SEMITONE * np.arange(templates.shape[1])  # each note's own bin
    segments = np.zeros((math.ceil(len(spec) / segment_frames), templates.shape[1]))
    for i, first in enumerate(range(0, len(spec), segment_frames)):
        target = spec[first : first + segment_frames].mean(axis=0)
        # only notes whose fundamental sounds may explain the spectrum: otherwise pure tones get ghost notes an
        # octave or a twelfth below (their "harmonics"), which pull the key a fifth down
        active = np.flatnonzero(target[fundamental] > 0.05 * target.max()) if target.max() > 0 else []
        if len(active):
            segments[i, active] = nnls(templates[:, active], target)[0]
    return segments


@dataclass
class KeyEstimate:
    key: str  # e.g. "A minor"
    tonic: int  # pitch class, 0 = C
    mode: str  # "major" or "minor"
    score: float  # the winning key's score (see key_scores)
    margin: float  # how much better than the runner-up's
    confidence: float = 0.0  # about the probability that the key is exactly right (see estimate_key)


def pitch_class_chromas(salience: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(chroma, bass chroma)`` of a :func:`note_salience` transcription, (segments, notes) or its sum (notes,):
    each note's salience summed per pitch class (0 = C), over all notes and over those below BASS_MAX_MIDI."""
    salience = salience.sum(axis=0) if salience.ndim == 2 else salience
    notes = np.arange(KEY_LOW_MIDI, KEY_HIGH_MIDI + 1)
    chroma = np.bincount(notes % 12, weights=salience, minlength=12)
    bass = np.bincount(notes % 12, weights=salience * (notes < BASS_MAX_MIDI), minlength=12)
    return chroma, bass


def _standardised(values: np.ndarray) -> np.ndarray:
    deviation = values.std()
    return (values - values.mean()) / deviation if deviation > 0 else np.zeros_like(values)


def key_features(chroma: np.ndarray, bass: np.ndarray) -> np.ndarray:
    """The KEY_FEATURES of a chroma and its bass chroma, (3, 12): each standardised to mean 0 and deviation 1 (a
    silent bass gives zeros), so loudness and length do not matter."""
    share = chroma / chroma.sum() if chroma.sum() > 0 else chroma
    return np.stack([_standardised(chroma), _standardised(bass), _standardised(np.log(share + LOG_CHROMA_FLOOR))])


# TONIC_FIRST[t] reorders pitch classes to count from tonic t: features[:, TONIC_FIRST[t]][:, i] is pitch class t + i
TONIC_FIRST = (np.arange(12)[:, None] + np.arange(12)[None, :]) % 12


def scores_from_features(features: np.ndarray, weights: np.ndarray, minor_bias: float) -> np.ndarray:
    """Scores of the 24 keys, (..., 2, 12) = (major/minor, tonic), of key features (..., 3, 12): ``weights`` (2, 3, 12)
    applied to the features read from each tonic, plus ``minor_bias`` for the minor keys."""
    from_tonic = features[..., TONIC_FIRST]  # (..., feature, tonic, pitch class from the tonic)
    return np.einsum("mfi,...fti->...mt", weights, from_tonic) + np.array([[0.0], [minor_bias]])


def key_scores(chroma: np.ndarray, bass: np.ndarray) -> np.ndarray:
    """Score (log-odds up to a constant) of each of the 24 keys, (2, 12) = (major/minor, tonic), by the fitted model
    KEY_WEIGHTS / MINOR_BIAS."""
    return scores_from_features(key_features(chroma, bass), KEY_WEIGHTS, MINOR_BIAS)


def tonal_clarity(chroma: np.ndarray) -> float:
    """How much ``chroma`` sounds like a key at all: its best correlation with the 24 rotated Albrecht & Shanahan
    profiles mapped from KEY_CLEAR_SCORES to 0..1 (0 for noise), times its pitch variety mapped from
    KEY_PITCH_VARIETY (0 for a drone or a held chord)."""
    if np.ptp(chroma) <= 0:
        return 0.0
    profiles = (MAJOR_PROFILE, MINOR_PROFILE)
    fit = max(float(np.corrcoef(chroma, np.roll(p, t))[0, 1]) for p in profiles for t in range(12))
    low, high = KEY_CLEAR_SCORES
    share = chroma[chroma > 0] / chroma.sum()
    few, enough = KEY_PITCH_VARIETY
    variety = (np.exp(-(share * np.log(share)).sum()) - few) / (enough - few)
    return float(np.clip((fit - low) / (high - low), 0.0, 1.0) * np.clip(variety, 0.0, 1.0))


def estimate_key(audio: np.ndarray, sr: int) -> KeyEstimate | None:
    """The most likely of the 24 major/minor keys, or None for audio without tonal content.

    ``confidence`` is the model's probability of the winning key (the softmax of :func:`key_scores`) times the
    :func:`tonal_clarity` of the chroma: about the probability that the key is exactly right. Below
    KEY_CONFIDENCE_THRESHOLD a caption should leave the key out.
    """
    chroma, bass = pitch_class_chromas(note_salience(audio, sr))
    if not np.any(chroma > 0) or np.allclose(chroma, chroma[0]):
        return None
    scores = key_scores(chroma, bass)
    order = np.argsort(scores, axis=None)[::-1]
    best, second = np.unravel_index(order[0], scores.shape), np.unravel_index(order[1], scores.shape)
    probabilities = np.exp(scores - scores.max())
    probabilities /= probabilities.sum()
    mode, tonic = ("major", "minor")[best[0]], int(best[1])
    return KeyEstimate(key_name(tonic, mode), tonic, mode, float(scores[best]), float(scores[best] - scores[second]),
                       confidence=tonal_clarity(chroma) * float(probabilities[best]))  # fmt: skip
