"""Key of a piece of audio (one of the 24 major and minor keys), with a confidence.

An approximate transcription (:func:`note_salience`: non-negative least squares of a whitened log-frequency spectrum
on harmonic note templates, after Mauch & Dixon 2010), so that a note's 3rd harmonic no longer votes for the fifth
above; its pitch classes, and those of its bass, are correlated with the 24 rotated key profiles
(:func:`key_scores`). Accuracy and cost on real music: bench/RESULTS.md ("Captions you can trust").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import soxr
from scipy.ndimage import uniform_filter1d
from scipy.optimize import nnls

from .analysis import key_name, to_mono32

# Key profiles of Albrecht & Shanahan (2013): pitch-class distributions of major / minor pieces, tonic first. They
# beat Krumhansl & Kessler's probe-tone ratings on chord-based music (0.88 vs 0.72 MIREX score on the synthetic
# corpus, with fewer dominant and relative-key confusions).
MAJOR_PROFILE = np.array([0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081])


MINOR_PROFILE = np.array([0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052])


# Profiles learned from this module's own transcription: the mean pitch-class distribution (tonic first) of the
# excerpts of the `tune` half of bench/key_tempo_corpora.py (chorales, folk) and of the demo corpus, per mode. Next to
# Albrecht & Shanahan's they weigh the fifth less and the third and (minor) the flat seventh more. Alone they name the
# demo corpus' chord loops right (98 % against 65 %) but German folk songs worse (62 % against 88 %); blended
# (PROFILE_BLEND, chosen over 0.7-1.0 and bass weights 0-0.5): real music 82 % exact, demo corpus 97 %.
CORPUS_MAJOR_PROFILE = np.array([0.236, 0.022, 0.126, 0.011, 0.127, 0.092, 0.016, 0.180, 0.011, 0.091, 0.010, 0.078])


CORPUS_MINOR_PROFILE = np.array([0.229, 0.028, 0.095, 0.148, 0.016, 0.114, 0.008, 0.141, 0.049, 0.026, 0.111, 0.035])


KEY_SAMPLE_RATE = 11025  # key evidence lies below 2.1 kHz (C7) plus the templates' harmonics: resample first, cheaply
KEY_LOW_MIDI, KEY_HIGH_MIDI = 24, 96  # the notes transcribed: C1 (33 Hz) to C7 (2.1 kHz)
BASS_MAX_MIDI = 48  # notes below C3 make the bass chroma
_BINS_PER_SEMITONE = 3
HARMONIC_DECAY = 0.8  # amplitude of harmonic h relative to h - 1 in the note templates
WHITENING_FLOOR = 1.0  # the least deviation used in _whiten, relative to the mean deviation
KEY_BASS_WEIGHT = 0.25  # weight of the bass chroma's correlation next to the full chroma's
PROFILE_BLEND = 0.8  # weight of the corpus profiles' scores; Albrecht & Shanahan's get the rest
KEY_TEMPERATURE = 0.06  # scale of the key scores in ``confidence``'s softmax (least log loss on chorales + folk + demo)
# Tonal clarity: the best key score of music lies above 0.75 (5th percentile of 289 excerpts: 0.76); white and pink
# noise reach 0.33 and 0.41. Scores are mapped linearly from KEY_CLEAR_SCORES[0] (clarity 0) to [1] (clarity 1).
KEY_CLEAR_SCORES = (0.5, 0.75)
# Pitch variety: a key needs several pitch classes. The effective number of pitch classes heard (exp of the chroma's
# entropy) is at least 4.8 on every excerpt of the corpora, 1.3 for a drone and 2.0 for a power chord held; mapped
# linearly from KEY_PITCH_VARIETY[0] (variety 0) to [1] (variety 1).
KEY_PITCH_VARIETY = (2.5, 4.5)
# Below this a caption leaves the key out. On the corpora (bench/RESULTS.md) it removes 3 of 44 wrong keys for 7 of
# 197 right ones, and every noise, drone and held chord: the confidence separates right from wrong only weakly on real
# music (relative and fifth-related keys fit their profiles almost as well), so it mainly keeps music without a key
# out of captions.
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
    correlation: float  # the winning key's score (correlation of the chroma with its profile, plus the bass term)
    margin: float  # how much better than the runner-up
    confidence: float = 0.0  # probability-like share of the winning key among the 24 (see estimate_key)


def key_scores(treble: np.ndarray, bass: np.ndarray) -> np.ndarray:
    """Score of each of the 24 keys, (2, 12) = (major/minor, tonic): the correlation of the chroma with the key's
    profile plus KEY_BASS_WEIGHT times that of the bass chroma, for both profile pairs, blended by PROFILE_BLEND."""
    scores = np.zeros((2, 12))
    pairs = (
        ((MAJOR_PROFILE, MINOR_PROFILE), 1 - PROFILE_BLEND),
        ((CORPUS_MAJOR_PROFILE, CORPUS_MINOR_PROFILE), PROFILE_BLEND),
    )
    for profiles, share in pairs:
        for m, profile in enumerate(profiles):
            rotated = np.stack([np.roll(profile, tonic) for tonic in range(12)])  # (12 keys, 12 pitch classes)
            for chroma, weight in ((treble, 1.0), (bass, KEY_BASS_WEIGHT)):
                if np.ptp(chroma) > 0:
                    scores[m] += share * weight * np.array([np.corrcoef(chroma, r)[0, 1] for r in rotated])
    return scores


def estimate_key(audio: np.ndarray, sr: int) -> KeyEstimate | None:
    """The most likely of the 24 major/minor keys, or None for audio without tonal content.

    ``confidence`` is the winner's softmax share of the 24 key scores (temperature KEY_TEMPERATURE) times the
    tonal clarity (KEY_CLEAR_SCORES) and the pitch variety (KEY_PITCH_VARIETY: 0 for a drone): about the
    probability that the key is exactly right. Below
    KEY_CONFIDENCE_THRESHOLD a caption should leave the key out.
    """
    salience = note_salience(audio, sr).sum(axis=0)  # (notes,)
    notes = np.arange(KEY_LOW_MIDI, KEY_HIGH_MIDI + 1)
    treble = np.bincount(notes % 12, weights=salience, minlength=12)
    bass = np.bincount(notes % 12, weights=salience * (notes < BASS_MAX_MIDI), minlength=12)
    if not np.any(treble > 0) or np.allclose(treble, treble[0]):
        return None
    scores = key_scores(treble, bass)
    order = np.argsort(scores, axis=None)[::-1]
    best, second = np.unravel_index(order[0], scores.shape), np.unravel_index(order[1], scores.shape)
    shares = np.exp((scores - scores.max()) / KEY_TEMPERATURE)
    low, high = KEY_CLEAR_SCORES
    clarity = float(np.clip((scores.max() - low) / (high - low), 0.0, 1.0))
    share = treble[treble > 0] / treble.sum()
    few, enough = KEY_PITCH_VARIETY
    clarity *= float(np.clip((np.exp(-(share * np.log(share)).sum()) - few) / (enough - few), 0.0, 1.0))
    mode, tonic = ("major", "minor")[best[0]], int(best[1])
    return KeyEstimate(key_name(tonic, mode), tonic, mode, float(scores[best]), float(scores[best] - scores[second]),
                       confidence=clarity * float(shares[best] / shares.sum()))  # fmt: skip
