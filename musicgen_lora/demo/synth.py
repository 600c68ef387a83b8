"""Procedural demo-music corpus: short, captioned, genre-styled clips with known tempo and key.

Every clip is synthesised from scratch with numpy alone (no samples, no models, no network), so a fine-tuning
corpus with exact ground truth can be made anywhere in a second or two::

    python -m musicgen_lora.synth OUT_DIR --clips 16 --seconds 8 --seed 0 [--sample_rate 32000]

writes ``OUT_DIR/clip_000.wav ...`` (mono, 16-bit PCM) and ``OUT_DIR/metadata.jsonl``, one JSON object per line::

    {"file_name": "clip_000.wav", "text": "lofi hip hop, 84 bpm, A minor, piano, mellow, vinyl crackle",
     "bpm": 84, "key": "A minor", "genre": "lofi hip hop", "instrument": "piano"}

(the layout of a Hugging Face ``audiofolder``). Clip ``i`` uses genre ``genres[i % len(genres)]``; its tempo is
drawn from the genre's range and its key from all 24 major/minor keys. Output is deterministic: the same
arguments give byte-identical files, and clip ``i`` does not depend on how many clips are requested.

Each clip is a small arrangement on a 16-step-per-bar grid: a drum pattern (kick, snare/clap/rim, hats/shaker
synthesised from sine sweeps and filtered noise), a bass line on the chord roots, a four-chord progression in
the key (e.g. i-VI-III-VII in minor, I-V-vi-IV in major) and a lead part (a motif-based melody or an
arpeggio), each voice with a genre-specific timbre built from harmonics and envelopes; then per-genre mixing
(reverb, sidechain pumping, tape-style low-pass and vinyl crackle, guitar-cabinet filter), loudness
normalisation and a soft limiter."""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import UserError, exit_on_user_error

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


_PITCH_CLASSES = {
    "C": 0, "B#": 0, "C#": 1, "Db": 1, "D": 2, "D#": 3, "Eb": 3, "E": 4, "Fb": 4, "E#": 5, "F": 5,
    "F#": 6, "Gb": 6, "G": 7, "G#": 8, "Ab": 8, "A": 9, "A#": 10, "Bb": 10, "B": 11, "Cb": 11,
}  # fmt: skip


_MODE_ALIASES = {"major": "major", "maj": "major", "minor": "minor", "min": "minor"}


SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}


KEYS: tuple[str, ...] = tuple(f"{name} {mode}" for mode in ("major", "minor") for name in NOTE_NAMES)


STEPS_PER_BAR = 16  # sixteenth notes in 4/4


MIN_BPM, MAX_BPM = 30, 300


MIN_SAMPLE_RATE = 8000


MAX_SAMPLE_RATE = 192000


def _pattern(text: str) -> tuple[float, ...]:
    """A 16-step drum row: 'X' accent, 'x' normal, 'o' ghost note, '.' rest."""
    levels = {"X": 1.0, "x": 0.75, "o": 0.4, ".": 0.0}
    if len(text) != STEPS_PER_BAR or set(text) - set(levels):
        raise ValueError(f"bad drum pattern {text!r}: need 16 characters from 'Xxo.'")
    return tuple(levels[c] for c in text)


@dataclass(frozen=True)
class GenreStyle:
    """Everything that makes a genre sound like itself (values are read by :func:`render_clip`)."""

    bpm_range: tuple[int, int]  # inclusive range the corpus draws tempos from
    instrument: str  # lead timbre, also the metadata ``instrument``
    chord_timbre: str
    bass_timbre: str
    kick: tuple[float, ...]  # 16-step velocity rows
    snare: tuple[float, ...]
    hats: tuple[float, ...]
    open_hats: tuple[float, ...]
    snare_kind: str  # "snare" | "clap" | "rim"
    hat_kind: str  # "hat" | "shaker"
    kick_decay: float  # seconds
    swing: float  # fraction of a swing unit the off-beats are delayed by
    swing_unit: int  # 1 = sixteenth swing, 2 = eighth swing
    humanize_ms: float  # timing jitter (standard deviation)
    chord_rhythm: tuple[tuple[int, float], ...]  # (step, length in steps) per bar
    chord_low: int  # lowest MIDI note of the chord voicing window (one octave)
    strum_ms: float
    sevenths: bool
    power_chords: bool  # rock: play root+fifth+octave with a distorted timbre instead of full voicings
    # (step, length, scale-degree offset from the chord root, anticipate: use the next bar's chord)
    bass_rhythm: tuple[tuple[int, float, int, bool], ...]
    lead_mode: str  # "melody" | "arp"
    lead_grid: int  # steps between possible lead onsets
    lead_density: float  # probability of a lead onset on a grid point
    lead_legato: float  # fraction of the gap to the next onset a note sounds
    lead_octave: int
    progressions_major: tuple[tuple[int, ...], ...]  # scale degrees (0 = tonic) of the chord roots
    progressions_minor: tuple[tuple[int, ...], ...]
    levels_db: tuple[float, float, float, float]  # drums, bass, chords, lead (stem RMS, relative)
    reverb_send: tuple[float, float, float, float]  # drums, bass, chords, lead
    reverb_seconds: float
    sidechain: float  # 0..1 depth of kick-triggered ducking on bass and chords
    lowpass_hz: float | None  # master low-pass (tape / lofi)
    crackle: bool
    crash: bool  # crash cymbal at the start of each 4-bar phrase
    descriptors: tuple[str, ...]  # words for captions


_MAJOR_POP = ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 3))  # I-V-vi-IV, I-vi-IV-V, I-IV-V-IV


_MINOR_POP = ((0, 5, 2, 6), (0, 6, 5, 6), (0, 3, 6, 2))  # i-VI-III-VII, i-VII-VI-VII, i-iv-VII-III


_MAJOR_MINIMAL = ((0, 0, 3, 4), (0, 0, 5, 4), (0, 3, 0, 4))  # techno: mostly the tonic


_MINOR_MINIMAL = ((0, 0, 5, 6), (0, 5, 0, 6), (0, 0, 3, 6))


_MAJOR_JAZZ = ((0, 5, 1, 4), (0, 1, 4, 0), (0, 3, 1, 4))  # I-vi-ii-V, I-ii-V-I, I-IV-ii-V (with sevenths)


_MINOR_JAZZ = ((0, 3, 6, 2), (0, 5, 3, 4), (0, 3, 0, 6))  # i-iv-VII-III, i-VI-iv-v, i-iv-i-VII


GENRES: dict[str, GenreStyle] = {
    "lofi hip hop": GenreStyle(
        bpm_range=(70, 90),
        instrument="piano",
        chord_timbre="electric piano",
        bass_timbre="sub bass",
        kick=_pattern("X.........X..o.."),
        snare=_pattern("....X.......X..."),
        hats=_pattern("x.o.x.o.x.o.x.o."),
        open_hats=_pattern("................"),
        snare_kind="snare",
        hat_kind="hat",
        kick_decay=0.28,
        swing=0.3,
        swing_unit=2,
        humanize_ms=3.0,
        chord_rhythm=((0, 14.0),),
        chord_low=53,
        strum_ms=9.0,
        sevenths=True,
        power_chords=False,
        bass_rhythm=((0, 7.0, 0, False), (10, 4.0, 0, False), (14, 2.0, 4, False)),
        lead_mode="melody",
        lead_grid=2,
        lead_density=0.4,
        lead_legato=0.95,
        lead_octave=0,
        progressions_major=_MAJOR_JAZZ,
        progressions_minor=_MINOR_JAZZ,
        levels_db=(0.0, -3.0, -6.0, -6.0),
        reverb_send=(0.05, 0.0, 0.35, 0.3),
        reverb_seconds=1.2,
        sidechain=0.0,
        lowpass_hz=4500.0,
        crackle=True,
        crash=False,
        descriptors=("mellow", "dusty drums", "vinyl crackle", "chill", "jazzy chords", "late night", "study beats"),
    ),
    "techno": GenreStyle(
        bpm_range=(122, 134),
        instrument="saw synth",
        chord_timbre="synth stab",
        bass_timbre="saw bass",
        kick=_pattern("X...X...X...X..."),
        snare=_pattern("....x.......x..."),
        hats=_pattern("o.o.o.o.o.o.o.oo"),
        open_hats=_pattern("..x...x...x...x."),
        snare_kind="clap",
        hat_kind="hat",
        kick_decay=0.38,
        swing=0.0,
        swing_unit=1,
        humanize_ms=0.0,
        chord_rhythm=((3, 1.0), (6, 1.0), (11, 1.0), (14, 1.0)),
        chord_low=55,
        strum_ms=0.0,
        sevenths=False,
        power_chords=False,
        bass_rhythm=tuple((s, 1.5, 0, False) for s in (2, 6, 10, 14)),
        lead_mode="arp",
        lead_grid=1,
        lead_density=0.7,
        lead_legato=0.6,
        lead_octave=0,
        progressions_major=_MAJOR_MINIMAL,
        progressions_minor=_MINOR_MINIMAL,
        levels_db=(0.0, -4.0, -9.0, -7.0),
        reverb_send=(0.04, 0.0, 0.4, 0.3),
        reverb_seconds=1.6,
        sidechain=0.65,
        lowpass_hz=None,
        crackle=False,
        crash=False,
        descriptors=("driving", "hypnotic", "four on the floor", "warehouse", "dark", "rolling bassline"),
    ),
    "bossa nova": GenreStyle(
        bpm_range=(118, 142),
        instrument="nylon guitar",
        chord_timbre="nylon guitar",
        bass_timbre="upright bass",
        kick=_pattern("X.....x.X.....x."),
        snare=_pattern("o..o..o...o..o.."),
        hats=_pattern("XoxoXoxoXoxoXoxo"),
        open_hats=_pattern("o...o...o...o..."),  # a soft ride on the beat
        snare_kind="rim",
        hat_kind="shaker",
        kick_decay=0.22,
        swing=0.08,
        swing_unit=1,
        humanize_ms=4.0,
        chord_rhythm=((0, 2.0), (3, 2.0), (6, 3.0), (10, 2.0), (12, 3.0)),
        chord_low=52,
        strum_ms=14.0,
        sevenths=True,
        power_chords=False,
        bass_rhythm=((0, 5.0, 0, False), (6, 2.0, 4, False), (8, 5.0, 4, False), (14, 2.0, 0, True)),
        lead_mode="melody",
        lead_grid=2,
        lead_density=0.45,
        lead_legato=0.9,
        lead_octave=0,
        progressions_major=_MAJOR_JAZZ,
        progressions_minor=_MINOR_JAZZ,
        levels_db=(-2.0, -3.0, -4.0, -5.0),
        reverb_send=(0.05, 0.0, 0.25, 0.3),
        reverb_seconds=1.0,
        sidechain=0.0,
        lowpass_hz=None,
        crackle=False,
        crash=False,
        descriptors=("relaxed", "brazilian", "warm", "acoustic", "laid-back", "syncopated"),
    ),
    "rock": GenreStyle(
        bpm_range=(100, 150),
        instrument="distorted guitar",
        chord_timbre="power chord",
        bass_timbre="picked bass",
        kick=_pattern("X.......X.x....."),
        snare=_pattern("....X.......X..."),
        hats=_pattern("X.x.x.x.X.x.x.x."),
        open_hats=_pattern("................"),
        snare_kind="snare",
        hat_kind="hat",
        kick_decay=0.25,
        swing=0.0,
        swing_unit=1,
        humanize_ms=3.0,
        chord_rhythm=tuple((s, 1.6) for s in range(0, 16, 2)),
        chord_low=40,
        strum_ms=0.0,
        sevenths=False,
        power_chords=True,
        bass_rhythm=tuple((s, 1.8, 0, False) for s in range(0, 16, 2)),
        lead_mode="melody",
        lead_grid=2,
        lead_density=0.5,
        lead_legato=0.9,
        lead_octave=0,
        progressions_major=_MAJOR_POP,
        progressions_minor=_MINOR_POP,
        levels_db=(0.0, -4.0, -4.0, -6.0),
        reverb_send=(0.08, 0.0, 0.1, 0.2),
        reverb_seconds=1.1,
        sidechain=0.0,
        lowpass_hz=None,
        crackle=False,
        crash=True,
        descriptors=("energetic", "live drums", "garage", "crunchy riffs", "anthemic", "raw"),
    ),
    "synthwave": GenreStyle(
        bpm_range=(84, 112),
        instrument="square synth",
        chord_timbre="analog pad",
        bass_timbre="saw bass",
        kick=_pattern("X.......X......."),
        snare=_pattern("....X.......X..."),
        hats=_pattern("x.o.x.o.x.o.x.o."),
        open_hats=_pattern("................"),
        snare_kind="snare",
        hat_kind="hat",
        kick_decay=0.3,
        swing=0.0,
        swing_unit=1,
        humanize_ms=0.0,
        chord_rhythm=((0, 16.0),),
        chord_low=55,
        strum_ms=0.0,
        sevenths=False,
        power_chords=False,
        bass_rhythm=tuple((s, 1.7, 0 if (s // 2) % 2 == 0 else 7, False) for s in range(0, 16, 2)),
        lead_mode="melody",
        lead_grid=2,
        lead_density=0.35,
        lead_legato=1.0,
        lead_octave=0,
        progressions_major=_MAJOR_POP,
        progressions_minor=_MINOR_POP,
        levels_db=(0.0, -4.0, -5.0, -5.0),
        reverb_send=(0.15, 0.0, 0.35, 0.35),
        reverb_seconds=2.0,
        sidechain=0.3,
        lowpass_hz=None,
        crackle=False,
        crash=True,
        descriptors=("retro", "80s", "neon", "nostalgic", "gated reverb drums", "dreamy"),
    ),
}


def parse_key(key: str) -> tuple[int, str]:
    """``"F# minor"`` -> ``(6, "minor")``; accepts sharps/flats and ``maj``/``min``; ValueError otherwise."""
    parts = key.split() if isinstance(key, str) else []
    if len(parts) == 2:
        root = parts[0][:1].upper() + parts[0][1:].lower()
        mode = _MODE_ALIASES.get(parts[1].lower())
        if root in _PITCH_CLASSES and mode is not None:
            return _PITCH_CLASSES[root], mode
    raise ValueError(f"bad key {key!r}: expected '<root> major' or '<root> minor', e.g. 'A minor' or 'Eb major'")


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _degree_to_midi(degree: int, tonic_midi: int, scale: Sequence[int]) -> int:
    octave, index = divmod(degree, 7)
    return tonic_midi + 12 * octave + scale[index]


def _into_window(midi: int, low: int) -> int:
    """Move ``midi`` by octaves into ``[low, low + 12)``."""
    return low + (midi - low) % 12


_TABLE_SIZE = 4096


def _time(n: int, sr: int) -> np.ndarray:
    return np.arange(n, dtype=np.float32) / np.float32(sr)


def _attack(t: np.ndarray, seconds: float) -> np.ndarray:
    return np.minimum(t / seconds, 1.0)


def _release(t: np.ndarray, on_seconds: float, seconds: float) -> np.ndarray:
    """1 while the note is held, then a linear fade to 0 over ``seconds``."""
    return np.clip(1.0 - (t - on_seconds) / seconds, 0.0, 1.0)


def _additive(
    cycles: np.ndarray,
    t: np.ndarray,
    freq: float,
    amps: Sequence[float],
    decays: Sequence[float],
    sr: int,
    inharmonicity: float = 0.0,
) -> np.ndarray:
    """Sum of harmonics ``k`` (amplitude ``amps[k-1]``, exponential decay ``decays[k-1]`` per second) of a
    fundamental whose phase is ``cycles`` (in cycles, at times ``t``); harmonics at or above 0.45 * sr are
    dropped, and each is computed only while audible (until it has decayed by 60 dB)."""
    out = np.zeros_like(cycles)
    for k, (amp, decay) in enumerate(zip(amps, decays), start=1):
        stretch = k * math.sqrt(1.0 + inharmonicity * k * k)
        if freq * stretch >= 0.45 * sr:
            break
        if amp == 0.0:
            continue
        m = len(cycles) if decay <= 0 else min(len(cycles), int(7.0 / decay * sr) + 1)
        partial = np.sin(cycles[:m] * np.float32(2.0 * np.pi * stretch) + np.float32(0.7 * k))
        partial *= np.exp(t[:m] * np.float32(-decay))
        out[:m] += np.float32(amp) * partial
    return out


def _wavetable(amps: Sequence[float], freq: float, sr: int) -> np.ndarray:
    """One cycle of a band-limited waveform: harmonic ``k`` is ``amps[k-1] * sin(k x + 0.7 k)``, dropped when
    ``k * freq`` would reach 0.45 * sr (built with one inverse FFT)."""
    amps = np.asarray(amps, dtype=float)[: _TABLE_SIZE // 2 - 1]
    k = np.arange(1, len(amps) + 1)
    amps = np.where(k * freq < 0.45 * sr, amps, 0.0)
    spectrum = np.zeros(_TABLE_SIZE // 2 + 1, dtype=complex)
    spectrum[1 : len(amps) + 1] = amps * (_TABLE_SIZE / 2) * (-1j) * np.exp(0.7j * k)
    return np.fft.irfft(spectrum, _TABLE_SIZE).astype(np.float32)


def _read_table(table: np.ndarray, cycles: np.ndarray) -> np.ndarray:
    index = (cycles * _TABLE_SIZE).astype(np.int64) & (_TABLE_SIZE - 1)
    return table[index]


def _vibrato_cycles(freq: float, t: np.ndarray, depth: float, rate: float, delay: float) -> np.ndarray:
    """Phase in cycles of a tone with a vibrato (``depth`` as a frequency fraction) fading in after ``delay``."""
    fade = np.clip((t - delay) / 0.3, 0.0, 1.0)
    return freq * t + fade * freq * depth * (1.0 - np.cos(2.0 * np.pi * rate * t)) / (2.0 * np.pi * rate)


def _piano(freq: float, n_on: int, sr: int) -> np.ndarray:
    release = 0.2
    t = _time(n_on + int(release * sr), sr)
    k = np.arange(1, 13)
    amps = 1.0 / k**1.6
    amps[0] = 1.0
    decays = (0.7 + 0.55 * k) * (freq / 261.6) ** 0.5
    x = _additive(freq * t, t, freq, amps, decays, sr, inharmonicity=3e-4)
    hammer = np.exp(-t * 400.0) * np.sin((2.0 * np.pi * freq * 4.0) * t) * float(4.0 * freq < 0.45 * sr)
    return (x + 0.15 * hammer) * _attack(t, 0.003) * _release(t, n_on / sr, release)


def _electric_piano(freq: float, n_on: int, sr: int) -> np.ndarray:
    """Two-operator FM (ratio 1): bright tine attack mellowing into a near-sine sustain."""
    release = 0.3
    t = _time(n_on + int(release * sr), sr)
    index = 0.2 + 1.3 * np.exp(-t * 6.0)
    phase = (2.0 * np.pi * freq) * t
    x = np.sin(phase + index * np.sin(phase)) * np.exp(-t * 0.8)
    tremolo = 1.0 - 0.12 * (1.0 - np.cos(2.0 * np.pi * 4.5 * t)) / 2.0
    return x * tremolo * _attack(t, 0.004) * _release(t, n_on / sr, release)


def _nylon_guitar(freq: float, n_on: int, sr: int) -> np.ndarray:
    release = 0.12
    t = _time(n_on + int(release * sr), sr)
    k = np.arange(1, 15)
    amps = np.abs(np.sin(np.pi * k * 0.18)) / k**1.25  # plucked ~1/5 along the string
    decays = (1.4 + 0.9 * k**1.2) * (freq / 196.0) ** 0.4
    x = _additive(freq * t, t, freq, amps, decays, sr, inharmonicity=1e-4)
    return x * _attack(t, 0.0015) * _release(t, n_on / sr, release)


def _saw_synth(freq: float, n_on: int, sr: int, *, env_hz: float = 4000.0, env_s: float = 0.12) -> np.ndarray:
    """Two detuned saws through a decaying low-pass (cross-fade from a bright to a dark wavetable)."""
    release = 0.08
    t = _time(n_on + int(release * sr), sr)
    k = np.arange(1, 41)
    bright = _wavetable(1.0 / k, freq, sr)
    dark = _wavetable((1.0 / k) / (1.0 + (k * freq / (2.0 * freq + 300.0)) ** 4), freq, sr)
    mix = np.exp(-t / env_s) * min(1.0, env_hz / 4000.0)
    out = np.zeros_like(t)
    for detune in (0.996, 1.004):
        cycles = freq * detune * t
        out += mix * _read_table(bright, cycles) + (1.0 - mix) * _read_table(dark, cycles)
    env = _attack(t, 0.003) * (0.6 + 0.4 * np.exp(-t / 0.2)) * _release(t, n_on / sr, release)
    return 0.5 * out * env


def _synth_stab(freq: float, n_on: int, sr: int) -> np.ndarray:
    return _saw_synth(freq, n_on, sr, env_hz=3000.0, env_s=0.06)


def _square_synth(freq: float, n_on: int, sr: int) -> np.ndarray:
    release = 0.15
    t = _time(n_on + int(release * sr), sr)
    k = np.arange(1, 26)
    amps = np.where(k % 2 == 1, 1.0 / k, 0.0) / (1.0 + (k / 9.0) ** 2)  # odd harmonics, softened top
    table = _wavetable(amps, freq, sr)
    x = _read_table(table, _vibrato_cycles(freq, t, 0.004, 5.5, 0.25))
    env = np.interp(t, [0.0, 0.01, 0.25], [0.0, 1.0, 0.75]).astype(np.float32) * _release(t, n_on / sr, release)
    return x * env


def _analog_pad(freq: float, n_on: int, sr: int) -> np.ndarray:
    release = 0.5
    t = _time(n_on + int(release * sr), sr)
    k = np.arange(1, 21)
    table = _wavetable((1.0 / k) / (1.0 + (k * freq / 1800.0) ** 2), freq, sr)
    x = sum(_read_table(table, freq * d * t + off) for d, off in ((0.994, 0.0), (1.0, 0.31), (1.006, 0.67)))
    return x / 3.0 * _attack(t, 0.35) * _release(t, n_on / sr, release)


def _distort(x: np.ndarray, drive: float) -> np.ndarray:
    return np.tanh(drive * x) * (1.0 / math.tanh(drive))


def _guitar_core(freqs: Sequence[float], t: np.ndarray, sr: int, decay: float) -> np.ndarray:
    k = np.arange(1, 11)
    x = np.zeros_like(t)
    for f in freqs:
        x += _additive(f * t, t, f, 1.0 / k, decay + 0.15 * k, sr)
    return x / len(freqs)


def _power_chord(freq: float, n_on: int, sr: int) -> np.ndarray:
    """Root + fifth + octave, overdriven; palm-muted (short) hits decay faster."""
    release = 0.05
    t = _time(n_on + int(release * sr), sr)
    decay = 1.0 if n_on / sr > 0.3 else 4.0
    x = _guitar_core((freq, freq * 2 ** (7 / 12), 2 * freq), t, sr, decay)
    return _distort(1.2 * x, 4.0) * _attack(t, 0.002) * _release(t, n_on / sr, release)


def _distorted_guitar(freq: float, n_on: int, sr: int) -> np.ndarray:
    release = 0.08
    t = _time(n_on + int(release * sr), sr)
    k = np.arange(1, 11)
    cycles = _vibrato_cycles(freq, t, 0.006, 6.0, 0.2)
    x = _additive(cycles, t, freq, 1.0 / k, 0.4 + 0.1 * k, sr)
    return _distort(1.5 * x, 5.0) * _attack(t, 0.003) * _release(t, n_on / sr, release)


def _sub_bass(freq: float, n_on: int, sr: int) -> np.ndarray:
    release = 0.08
    t = _time(n_on + int(release * sr), sr)
    x = _read_table(_wavetable((1.0, 0.3, 0.12, 0.05), freq, sr), freq * t)
    return x * _attack(t, 0.006) * np.exp(-t * 1.2) * _release(t, n_on / sr, release)


def _saw_bass(freq: float, n_on: int, sr: int) -> np.ndarray:
    release = 0.04
    t = _time(n_on + int(release * sr), sr)
    k = np.arange(1, 31)
    bright = _wavetable((1.0 / k) / (1.0 + (k * freq / 1500.0) ** 4), freq, sr)
    dark = _wavetable((1.0 / k) / (1.0 + (k * freq / 250.0) ** 4), freq, sr)
    mix = np.exp(-t / 0.07)
    cycles = freq * t
    x = mix * _read_table(bright, cycles) + (1.0 - mix) * _read_table(dark, cycles)
    return x * _attack(t, 0.003) * _release(t, n_on / sr, release)


def _upright_bass(freq: float, n_on: int, sr: int) -> np.ndarray:
    release = 0.07
    t = _time(n_on + int(release * sr), sr)
    x = _additive(freq * t, t, freq, (1.0, 0.5, 0.3, 0.15, 0.08), (2.0, 3.0, 4.5, 6.5, 9.0), sr)
    return x * _attack(t, 0.008) * _release(t, n_on / sr, release)


def _picked_bass(freq: float, n_on: int, sr: int) -> np.ndarray:
    release = 0.05
    t = _time(n_on + int(release * sr), sr)
    k = np.arange(1, 10)
    x = _additive(freq * t, t, freq, 1.0 / k**1.2, 1.2 + 0.8 * k, sr)
    return _distort(x, 1.5) * _attack(t, 0.002) * _release(t, n_on / sr, release)


_TIMBRES: dict[str, Callable[[float, int, int], np.ndarray]] = {
    "piano": _piano,
    "electric piano": _electric_piano,
    "nylon guitar": _nylon_guitar,
    "saw synth": _saw_synth,
    "synth stab": _synth_stab,
    "square synth": _square_synth,
    "analog pad": _analog_pad,
    "power chord": _power_chord,
    "distorted guitar": _distorted_guitar,
    "sub bass": _sub_bass,
    "saw bass": _saw_bass,
    "upright bass": _upright_bass,
    "picked bass": _picked_bass,
}


def _fast_len(n: int) -> int:
    """Smallest 2**a * 3**b >= n (a fast FFT size for numpy's pocketfft)."""
    best = 1 << max(0, (n - 1).bit_length())
    power3 = 1
    while power3 < best:
        candidate = power3 << max(0, (-(-n // power3) - 1).bit_length())
        best = min(best, candidate)
        power3 *= 3
    return best


def _response(freqs: np.ndarray, highpass: float | None, lowpass: float | None, order: int = 2) -> np.ndarray:
    """Magnitude response of Butterworth high-/low-pass filters (both given: a band-pass)."""
    h = np.ones_like(freqs)
    if highpass is not None:
        with np.errstate(divide="ignore"):
            h /= np.sqrt(1.0 + (highpass / np.maximum(freqs, 1e-9)) ** (2 * order))
    if lowpass is not None:
        h /= np.sqrt(1.0 + (freqs / lowpass) ** (2 * order))
    return h


def _filter(
    x: np.ndarray, sr: int, highpass: float | None = None, lowpass: float | None = None, order: int = 2
) -> np.ndarray:
    """Zero-phase Butterworth-magnitude filtering in the frequency domain (zero-padded, so no wrap-around of
    the part we keep). Cut-offs are clamped below Nyquist, so every sample rate works."""
    if lowpass is not None:
        lowpass = min(lowpass, 0.45 * sr)
    if highpass is not None:
        highpass = min(highpass, 0.4 * sr)
    m = _fast_len(len(x) + int(0.05 * sr))
    spectrum = np.fft.rfft(x, m) * _response(np.fft.rfftfreq(m, 1.0 / sr), highpass, lowpass, order)
    return np.fft.irfft(spectrum, m)[: len(x)]


def _drum_kit(style: GenreStyle, tonic_pc: int, sr: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    def noise(seconds: float) -> np.ndarray:
        return rng.standard_normal(int(seconds * sr))

    kit: dict[str, np.ndarray] = {}

    # Kick: a sine swept down onto the tonic (producers tune kicks), plus a short click.
    t = _time(int((style.kick_decay * 5 + 0.05) * sr), sr)
    f_end = _hz(24 + tonic_pc)  # C1..B1 (33-62 Hz)
    freq = f_end + (f_end * 3.5) * np.exp(-t / 0.04)
    body = np.sin(2.0 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / style.kick_decay)
    click = _filter(rng.standard_normal(len(t)), sr, highpass=2000.0) * np.exp(-t / 0.003)
    kit["kick"] = np.tanh(1.5 * (body + 0.3 * click))

    if style.snare_kind == "snare":
        t = _time(int(0.35 * sr), sr)
        tone = (np.sin(2 * np.pi * 185.0 * t) + 0.5 * np.sin(2 * np.pi * 330.0 * t)) * np.exp(-t / 0.04)
        rattle = _filter(noise(0.35), sr, 1500.0, 9000.0) * np.exp(-t / 0.09)
        kit["snare"] = 0.5 * tone + 1.6 * rattle
    elif style.snare_kind == "clap":
        t = _time(int(0.4 * sr), sr)
        bursts = sum(np.exp(-np.maximum(t - d, 0) / 0.006) * (t >= d) for d in (0.0, 0.011, 0.022))
        env = 0.6 * bursts + np.exp(-np.maximum(t - 0.025, 0) / 0.11) * (t >= 0.025)
        kit["snare"] = _filter(noise(0.4), sr, 900.0, 4000.0) * env * 2.0
    elif style.snare_kind == "rim":
        t = _time(int(0.06 * sr), sr)
        tone = (np.sin(2 * np.pi * 1700.0 * t) + 0.6 * np.sin(2 * np.pi * 820.0 * t)) * np.exp(-t / 0.008)
        kit["snare"] = tone + 0.5 * _filter(noise(0.06), sr, highpass=2000.0) * np.exp(-t / 0.004)
    else:
        raise ValueError(f"unknown snare kind {style.snare_kind!r}")

    if style.hat_kind == "hat":
        t = _time(int(0.08 * sr), sr)
        kit["hat"] = _filter(noise(0.08), sr, highpass=7000.0) * np.exp(-t / 0.02)
    elif style.hat_kind == "shaker":
        t = _time(int(0.12 * sr), sr)
        env = np.interp(t, [0.0, 0.015, 0.12], [0.0, 1.0, 0.0]) ** 2
        kit["hat"] = _filter(noise(0.12), sr, 4000.0, 10000.0) * env
    else:
        raise ValueError(f"unknown hat kind {style.hat_kind!r}")
    t = _time(int(0.5 * sr), sr)
    kit["open_hat"] = _filter(noise(0.5), sr, highpass=6500.0) * np.exp(-t / 0.15)
    t = _time(int(2.0 * sr), sr)
    kit["crash"] = _filter(noise(2.0), sr, highpass=4500.0) * np.exp(-t / 0.7)
    fade = max(2, int(0.01 * sr))
    for sound in kit.values():  # end every one-shot at zero (no clicks)
        k = min(fade, len(sound))
        sound[-k:] *= np.linspace(1.0, 0.0, k)
    return {name: sound.astype(np.float32) for name, sound in kit.items()}


@dataclass
class _Note:
    start: float  # seconds
    length: float  # seconds the note is held
    midi: int
    velocity: float


@dataclass(frozen=True)
class _Harmony:
    """A looping chord progression (scale degrees of the chord roots) and its harmonic rhythm."""

    progression: tuple[int, ...]
    per_bar: int  # chords per bar: 1, or 2 when a clip is too short to hear the whole cycle one chord a bar

    def slot(self, bar: int, step: float) -> int:
        """Index of the chord sounding at a grid position."""
        return bar * self.per_bar + int(step * self.per_bar) // STEPS_PER_BAR

    def root(self, slot: int) -> int:
        return self.progression[slot % len(self.progression)]

    def slot_starts_at(self, step: int) -> bool:
        return step % (STEPS_PER_BAR // self.per_bar) == 0

    def split(self, rhythm: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
        """Chord hits (step, length) of one bar, cut at chord changes; a leftover of 2+ steps is re-struck."""
        if self.per_bar == 1:
            return list(rhythm)
        half = STEPS_PER_BAR // 2
        hits = []
        for step, length in rhythm:
            if step < half < step + length:
                hits.append((step, float(half - step)))
                if step + length - half >= 2:
                    hits.append((half, step + length - half))
            else:
                hits.append((step, length))
        return hits


def _chord_degrees(root_degree: int, sevenths: bool) -> list[int]:
    return [root_degree, root_degree + 2, root_degree + 4] + ([root_degree + 6] if sevenths else [])


def _snap_to_chord(degree: int, chord: Sequence[int]) -> int:
    """Nearest chord tone to ``degree`` (leaning towards the tonic when the chord contains it)."""
    candidates = [c + 7 * octave for c in chord for octave in range(-2, 3)]
    return min(candidates, key=lambda c: (abs(c - degree) - (1.5 if c % 7 == 0 else 0.0), c))


def _melody(
    style: GenreStyle, harmony: _Harmony, bars: int, rng: np.random.Generator
) -> list[tuple[int, int, float, int, float]]:
    """Lead notes as (bar, step, length in steps, scale degree relative to the tonic, velocity).

    A two-bar rhythm+contour motif is drawn once and repeated every two bars, re-harmonised: notes on strong
    beats snap to the current chord, and each cycle of the progression starts on the tonic.
    """
    grid = style.lead_grid
    onsets = [0]
    for step in range(grid, 2 * STEPS_PER_BAR, grid):
        weight = 1.5 if step % 8 == 0 else 1.1 if step % 4 == 0 else 0.7
        if rng.random() < min(1.0, style.lead_density * weight):
            onsets.append(step)
    contour = [0]
    for _ in onsets[1:]:
        move = int(rng.choice([-3, -2, -1, 0, 1, 2, 3], p=[0.05, 0.15, 0.25, 0.1, 0.25, 0.15, 0.05]))
        nxt = contour[-1] + move
        if nxt < -2 or nxt > 9:
            nxt = contour[-1] - move
        contour.append(nxt)
    variation = rng.random((bars // 2 + 1, len(onsets))) < 0.2
    shifts = rng.choice([-1, 1], size=variation.shape)

    notes = []
    for pair in range(0, bars, 2):
        for i, (step, degree) in enumerate(zip(onsets, contour)):
            bar = pair + step // STEPS_PER_BAR
            if bar >= bars:
                break
            bar_step = step % STEPS_PER_BAR
            end = onsets[i + 1] if i + 1 < len(onsets) else 2 * STEPS_PER_BAR
            length = min(end - step, 8) * style.lead_legato
            slot = harmony.slot(bar, bar_step)
            chord = _chord_degrees(harmony.root(slot), style.sevenths)
            if variation[pair // 2, i]:
                degree += int(shifts[pair // 2, i])
            if slot % len(harmony.progression) == 0 and harmony.slot_starts_at(bar_step):
                degree = 0 if abs(degree) <= abs(degree - 7) else 7
            elif bar_step % 8 == 0:
                degree = _snap_to_chord(degree, chord)
            velocity = 0.85 if bar_step % 4 == 0 else 0.7
            notes.append((bar, bar_step, length, degree, velocity))
    return notes


def _arpeggio(
    style: GenreStyle, harmony: _Harmony, bars: int, rng: np.random.Generator
) -> list[tuple[int, int, float, int, float]]:
    """A repeating 16-step arpeggio over the chord tones (and their upper octave), with rests."""
    n_tones = 3
    pattern = rng.integers(0, 2 * n_tones, size=STEPS_PER_BAR)
    rests = rng.random(STEPS_PER_BAR) > style.lead_density
    rests[0] = False
    notes = []
    for bar in range(bars):
        for step in range(0, STEPS_PER_BAR, style.lead_grid):
            if rests[step]:
                continue
            chord = _chord_degrees(harmony.root(harmony.slot(bar, step)), False)
            octave, index = divmod(int(pattern[step]), n_tones)
            velocity = 0.9 if step % 4 == 0 else 0.65
            notes.append((bar, step, style.lead_grid * style.lead_legato, chord[index] + 7 * octave, velocity))
    return notes


def _place(buffer: np.ndarray, sound: np.ndarray, start: int, gain: float) -> None:
    start = max(start, 0)
    if start >= len(buffer):
        return
    sound = sound[: len(buffer) - start]
    buffer[start : start + len(sound)] += gain * sound


def _stem_rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


def _check_seconds(seconds: float) -> float:
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        raise ValueError(f"seconds must be a number, got {seconds!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"seconds must be a positive number, got {seconds!r}")
    return seconds


def _check_sample_rate(sample_rate: int) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise ValueError(f"sample_rate must be an integer, got {sample_rate!r}")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz, got {sample_rate}")
    return int(sample_rate)


def _check_genre(genre: str) -> GenreStyle:
    if genre not in GENRES:
        raise ValueError(f"unknown genre {genre!r}; choose from: {', '.join(GENRES)}")
    return GENRES[genre]


def render_clip(
    genre: str, bpm: int, key: str, seconds: float, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Synthesise one clip of ``genre`` at ``bpm`` in ``key``; float32 mono of ``round(seconds * sample_rate)``
    samples, peak <= 0.95. All randomness (melody, humanisation, noise) comes from ``rng``."""
    style = _check_genre(genre)
    if isinstance(bpm, bool) or not isinstance(bpm, (int, float, np.integer, np.floating)):
        raise ValueError(f"bpm must be a number, got {bpm!r}")
    if not MIN_BPM <= bpm <= MAX_BPM:
        raise ValueError(f"bpm must be between {MIN_BPM} and {MAX_BPM}, got {bpm}")
    tonic_pc, mode = parse_key(key)
    seconds = _check_seconds(seconds)
    sr = _check_sample_rate(sample_rate)
    n = int(round(seconds * sr))
    if n < 1:
        raise ValueError(f"seconds={seconds} is shorter than one sample at {sr} Hz")

    step_s = 60.0 / float(bpm) / 4.0
    bar_s = step_s * STEPS_PER_BAR
    bars = int(math.ceil(seconds / bar_s))
    scale = SCALES[mode]
    progressions = style.progressions_major if mode == "major" else style.progressions_minor
    progression = progressions[int(rng.integers(len(progressions)))]
    # One chord a bar, unless the clip is too short to hear the whole progression that way.
    harmony = _Harmony(progression, 1 if len(progression) * bar_s <= seconds else 2)

    def onset(bar: int, step: int) -> float:
        """Seconds from the clip start of a grid step, with swing applied to the off-beats."""
        swung = (step // style.swing_unit) % 2 == 1
        return (bar * STEPS_PER_BAR + step + (style.swing * style.swing_unit if swung else 0.0)) * step_s

    def at(t_seconds: float) -> int:
        return int(round(t_seconds * sr))

    # --- drums
    kit = _drum_kit(style, tonic_pc, sr, rng)
    drums = np.zeros(n, dtype=np.float32)
    rows = (("kick", style.kick), ("snare", style.snare), ("hat", style.hats), ("open_hat", style.open_hats))
    kick_starts = []
    for bar in range(bars):
        if style.crash and bar % 4 == 0:
            _place(drums, kit["crash"], at(onset(bar, 0)), 0.35)
        for name, row in rows:
            for step, velocity in enumerate(row):
                if velocity <= 0:
                    continue
                start = onset(bar, step) + _jitter_seconds(style, rng)
                gain = velocity
                if style.humanize_ms > 0:
                    gain *= float(np.clip(1.0 + rng.normal(0.0, 0.06), 0.8, 1.2))
                _place(drums, kit[name], at(start), gain)
                if name == "kick":
                    kick_starts.append(at(start))

    cache: dict[tuple[str, int, int], np.ndarray] = {}

    def play(buffer: np.ndarray, timbre: str, note: _Note) -> None:
        n_on = max(1, at(note.length))
        cache_key = (timbre, note.midi, n_on)
        if cache_key not in cache:
            cache[cache_key] = _TIMBRES[timbre](_hz(note.midi), n_on, sr)
        _place(buffer, cache[cache_key], at(note.start), note.velocity)

    tonic_midi = 60 + tonic_pc

    # --- chords
    chords = np.zeros(n, dtype=np.float32)
    for bar in range(bars):
        for step, length in harmony.split(style.chord_rhythm):
            root_degree = harmony.root(harmony.slot(bar, step))
            if style.power_chords:
                voicing = [_into_window(_degree_to_midi(root_degree, tonic_midi, scale), style.chord_low)]
            else:
                degrees = _chord_degrees(root_degree, style.sevenths)
                voicing = sorted(_into_window(_degree_to_midi(d, tonic_midi, scale), style.chord_low) for d in degrees)
            start = onset(bar, step) + _jitter_seconds(style, rng)
            velocity = 0.9 if step % 4 == 0 else 0.75
            for i, midi in enumerate(voicing):  # strummed: each string a little later
                note = _Note(start + i * style.strum_ms / 1000.0, length * step_s, midi, velocity)
                play(chords, style.chord_timbre, note)

    # --- bass (roots in C2..B2)
    bass = np.zeros(n, dtype=np.float32)
    for bar in range(bars):
        for step, length, offset, anticipate in style.bass_rhythm:
            root_degree = harmony.root(harmony.slot(bar, step) + int(anticipate))
            root_midi = _into_window(_degree_to_midi(root_degree, tonic_midi, scale), 36)
            interval = _degree_to_midi(root_degree + offset, tonic_midi, scale) - _degree_to_midi(
                root_degree, tonic_midi, scale
            )
            start = onset(bar, step) + _jitter_seconds(style, rng)
            velocity = 0.9 if step % 4 == 0 else 0.75
            play(bass, style.bass_timbre, _Note(start, length * step_s, root_midi + interval, velocity))

    # --- lead
    lead = np.zeros(n, dtype=np.float32)
    lead_tonic = tonic_midi - 12 if tonic_midi > 66 else tonic_midi
    lead_tonic += 12 * style.lead_octave
    make_lead = _arpeggio if style.lead_mode == "arp" else _melody
    for bar, step, length, degree, velocity in make_lead(style, harmony, bars, rng):
        start = onset(bar, step) + _jitter_seconds(style, rng)
        note = _Note(start, length * step_s, _degree_to_midi(degree, lead_tonic, scale), velocity)
        play(lead, style.instrument, note)

    # --- mix
    if style.power_chords:  # guitar cabinet
        chords = _filter(chords, sr, 90.0, 5000.0)
        if style.instrument == "distorted guitar":
            lead = _filter(lead, sr, 90.0, 5000.0)
    if style.sidechain > 0 and kick_starts:
        marker = np.zeros(n, dtype=np.int64)
        starts = np.clip(kick_starts, 0, n - 1)
        marker[starts] = starts
        since = (np.arange(n) - np.maximum.accumulate(marker)) / sr
        duck = (1.0 - style.sidechain * np.exp(-since / 0.1)).astype(np.float32)
        bass *= duck
        chords *= duck

    stems = (drums, bass, chords, lead)
    reference = max(_stem_rms(drums), 1e-9)
    mix = np.zeros(n, dtype=np.float32)
    send = np.zeros(n, dtype=np.float32)
    for stem, level_db, send_level in zip(stems, style.levels_db, style.reverb_send):
        rms = _stem_rms(stem)
        if rms < 1e-9:
            continue
        gain = reference * 10.0 ** (level_db / 20.0) / rms
        mix += gain * stem
        send += (gain * send_level) * stem
    if style.crackle:  # sparse clicks and hiss, high-passed by a first difference
        noise = (rng.random(n) < 6.0 / sr) * rng.standard_normal(n) * 0.3 + 0.01 * rng.standard_normal(n)
        mix += (reference * np.diff(noise, prepend=0.0)).astype(np.float32)
    # Reverb (convolution with a noise impulse response) and the master filters in one FFT pass.
    m = _fast_len(n + int((style.reverb_seconds + 0.02) * sr))
    spectrum = np.fft.rfft(mix, m) + np.fft.rfft(send, m) * _reverb_spectrum(style.reverb_seconds, sr, m)
    lowpass = None if style.lowpass_hz is None else min(style.lowpass_hz, 0.45 * sr)
    spectrum *= _response(np.fft.rfftfreq(m, 1.0 / sr), 25.0, lowpass)
    mix = np.fft.irfft(spectrum, m)[:n]

    # --- loudness and limiting
    rms = _stem_rms(mix)
    if not np.isfinite(rms) or rms <= 0:
        raise RuntimeError("synthesised a silent clip; this is a bug")
    mix *= 0.16 / rms  # about -16 dBFS RMS
    mix = 0.95 * np.tanh(mix / 0.95)
    fade = min(n, int(0.01 * sr))
    if fade > 1:
        mix[-fade:] *= np.linspace(1.0, 0.0, fade)
    return mix.astype(np.float32)


def _jitter_seconds(style: GenreStyle, rng: np.random.Generator) -> float:
    if style.humanize_ms <= 0:
        return 0.0
    sd = style.humanize_ms / 1000.0
    return float(np.clip(rng.normal(0.0, sd), -2.5 * sd, 2.5 * sd))


@functools.lru_cache(maxsize=8)
def _reverb_spectrum(seconds: float, sr: int, size: int) -> np.ndarray:
    """Spectrum (rfft of ``size``) of a room impulse response: exponentially decaying, darkened noise with a
    short pre-delay, unit energy. Fixed per (length, rate), like a studio's plate, and cached across clips."""
    t = _time(int(seconds * sr), sr)
    ir = np.random.default_rng(int(seconds * 1000)).standard_normal(len(t)) * np.exp(-6.9 * t / seconds)
    ir = _filter(ir, sr, lowpass=5000.0)
    ir = np.concatenate([np.zeros(int(0.02 * sr)), ir])
    return np.fft.rfft(ir / np.sqrt(np.sum(ir**2)), size)


def _check_count(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def synthesize_corpus(
    out_dir: str | os.PathLike,
    clips: int,
    seconds: float,
    seed: int,
    sample_rate: int = 32000,
    genres: list[str] | None = None,
) -> list[dict]:
    """Write ``clips`` clips (``clip_000.wav`` ...) and ``metadata.jsonl`` into ``out_dir``; return the rows.

    Clip ``i`` has genre ``genres[i % len(genres)]`` (default: every genre in :data:`GENRES`), a tempo drawn
    from that genre's range and a key drawn from :data:`KEYS`, all from a random stream derived from
    ``(seed, i)`` only. Existing files with the same names are overwritten; other files are left alone.
    """
    clips = _check_count("clips", clips, 1)
    seed = _check_count("seed", seed, 0)
    seconds = _check_seconds(seconds)
    sr = _check_sample_rate(sample_rate)
    if int(round(seconds * sr)) < 1:
        raise ValueError(f"seconds={seconds} is shorter than one sample at {sr} Hz")
    genres = list(GENRES) if genres is None else list(genres)
    if not genres:
        raise ValueError("genres must name at least one genre")
    for genre in genres:
        _check_genre(genre)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    width = max(3, len(str(clips - 1)))
    rows = []
    for i, child in enumerate(np.random.SeedSequence(seed).spawn(clips)):
        rng = np.random.default_rng(child)
        genre = genres[i % len(genres)]
        style = GENRES[genre]
        bpm = int(rng.integers(style.bpm_range[0], style.bpm_range[1] + 1))
        key = KEYS[int(rng.integers(len(KEYS)))]
        words = [style.descriptors[j] for j in sorted(rng.choice(len(style.descriptors), size=2, replace=False))]
        audio = render_clip(genre, bpm, key, seconds, sr, rng)
        file_name = f"clip_{i:0{width}d}.wav"
        sf.write(out / file_name, audio, sr, subtype="PCM_16", format="WAV")
        text = ", ".join([genre, f"{bpm} bpm", key, style.instrument, *words])
        row = {"file_name": file_name, "text": text, "bpm": bpm, "key": key, "genre": genre}
        rows.append({**row, "instrument": style.instrument})
    with open(out / "metadata.jsonl", "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return rows


class _ArgumentParser(argparse.ArgumentParser):
    """Reports usage errors as a one-line UserError instead of usage text."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message}; run with --help for the options")


def _build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="python -m musicgen_lora.synth",
        description="Write a procedural demo-music corpus (WAV clips + metadata.jsonl with captions and "
        "ground-truth bpm/key/genre/instrument) for smoke-testing fine-tuning.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("out_dir", help="folder to write clip_000.wav ... and metadata.jsonl into (created if missing)")
    parser.add_argument("--clips", type=int, default=16, help="number of clips; genres are cycled so each appears")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of every clip in seconds")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same arguments give identical files")
    parser.add_argument("--sample_rate", type=int, default=32000, help="sample rate of the WAV files in Hz")
    parser.add_argument(
        "--genres",
        default=",".join(GENRES),
        help="comma-separated genres to cycle through (clip i gets genre i mod their count)",
    )
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    """Command-line entry point; returns the metadata rows. Errors exit with one ``error: ...`` line."""
    with exit_on_user_error(argv):
        args = _build_parser().parse_args(argv)
        genres = [g.strip() for g in args.genres.split(",") if g.strip()]
        started = time.perf_counter()
        try:
            rows = synthesize_corpus(args.out_dir, args.clips, args.seconds, args.seed, args.sample_rate, genres)
        except (ValueError, OSError) as err:
            raise UserError(str(err)) from None
    counts = {g: sum(r["genre"] == g for r in rows) for g in dict.fromkeys(r["genre"] for r in rows)}
    summary = ", ".join(f"{g} x{c}" for g, c in counts.items())
    print(
        f"wrote {len(rows)} clips of {args.seconds:g} s at {args.sample_rate} Hz ({summary}) "
        f"to {args.out_dir} in {time.perf_counter() - started:.2f} s"
    )
    return rows
