"""The demo's instruments: one function per pitched timbre (piano, electric piano, nylon guitar, saw/square synths,
analog pad, power chord, distorted guitar, four basses), and the drum kit of a genre.

Each timbre maps ``(frequency in Hz, samples the note is held, sample rate)`` to a float32 note that includes its
release, built from band-limited harmonics (additive partials or wavetables) and envelopes; :data:`TIMBRES` names
them as :class:`~.styles.GenreStyle` does. :func:`drum_kit` synthesises a genre's one-shots (kick, snare/clap/rim,
hats or shaker, open hat, crash) from sine sweeps and filtered noise."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from .composition import midi_to_hz
from .dsp import butterworth, time_axis
from .styles import GenreStyle

_TABLE_SIZE = 4096


def _attack(t: np.ndarray, seconds: float) -> np.ndarray:
    """A linear fade-in over ``seconds``, then 1."""
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
    for k, (amp, decay) in enumerate(zip(amps, decays, strict=False), start=1):
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
    t = time_axis(n_on + int(release * sr), sr)
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
    t = time_axis(n_on + int(release * sr), sr)
    index = 0.2 + 1.3 * np.exp(-t * 6.0)
    phase = (2.0 * np.pi * freq) * t
    x = np.sin(phase + index * np.sin(phase)) * np.exp(-t * 0.8)
    tremolo = 1.0 - 0.12 * (1.0 - np.cos(2.0 * np.pi * 4.5 * t)) / 2.0
    return x * tremolo * _attack(t, 0.004) * _release(t, n_on / sr, release)


def _nylon_guitar(freq: float, n_on: int, sr: int) -> np.ndarray:
    release = 0.12
    t = time_axis(n_on + int(release * sr), sr)
    k = np.arange(1, 15)
    amps = np.abs(np.sin(np.pi * k * 0.18)) / k**1.25  # plucked ~1/5 along the string
    decays = (1.4 + 0.9 * k**1.2) * (freq / 196.0) ** 0.4
    x = _additive(freq * t, t, freq, amps, decays, sr, inharmonicity=1e-4)
    return x * _attack(t, 0.0015) * _release(t, n_on / sr, release)


def _saw_synth(freq: float, n_on: int, sr: int, *, env_hz: float = 4000.0, env_s: float = 0.12) -> np.ndarray:
    """Two detuned saws through a decaying low-pass (cross-fade from a bright to a dark wavetable)."""
    release = 0.08
    t = time_axis(n_on + int(release * sr), sr)
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
    t = time_axis(n_on + int(release * sr), sr)
    k = np.arange(1, 26)
    amps = np.where(k % 2 == 1, 1.0 / k, 0.0) / (1.0 + (k / 9.0) ** 2)  # odd harmonics, softened top
    table = _wavetable(amps, freq, sr)
    x = _read_table(table, _vibrato_cycles(freq, t, 0.004, 5.5, 0.25))
    env = np.interp(t, [0.0, 0.01, 0.25], [0.0, 1.0, 0.75]).astype(np.float32) * _release(t, n_on / sr, release)
    return x * env


def _analog_pad(freq: float, n_on: int, sr: int) -> np.ndarray:
    release = 0.5
    t = time_axis(n_on + int(release * sr), sr)
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
    t = time_axis(n_on + int(release * sr), sr)
    decay = 1.0 if n_on / sr > 0.3 else 4.0
    x = _guitar_core((freq, freq * 2 ** (7 / 12), 2 * freq), t, sr, decay)
    return _distort(1.2 * x, 4.0) * _attack(t, 0.002) * _release(t, n_on / sr, release)


def _distorted_guitar(freq: float, n_on: int, sr: int) -> np.ndarray:
    release = 0.08
    t = time_axis(n_on + int(release * sr), sr)
    k = np.arange(1, 11)
    cycles = _vibrato_cycles(freq, t, 0.006, 6.0, 0.2)
    x = _additive(cycles, t, freq, 1.0 / k, 0.4 + 0.1 * k, sr)
    return _distort(1.5 * x, 5.0) * _attack(t, 0.003) * _release(t, n_on / sr, release)


def _sub_bass(freq: float, n_on: int, sr: int) -> np.ndarray:
    release = 0.08
    t = time_axis(n_on + int(release * sr), sr)
    x = _read_table(_wavetable((1.0, 0.3, 0.12, 0.05), freq, sr), freq * t)
    return x * _attack(t, 0.006) * np.exp(-t * 1.2) * _release(t, n_on / sr, release)


def _saw_bass(freq: float, n_on: int, sr: int) -> np.ndarray:
    release = 0.04
    t = time_axis(n_on + int(release * sr), sr)
    k = np.arange(1, 31)
    bright = _wavetable((1.0 / k) / (1.0 + (k * freq / 1500.0) ** 4), freq, sr)
    dark = _wavetable((1.0 / k) / (1.0 + (k * freq / 250.0) ** 4), freq, sr)
    mix = np.exp(-t / 0.07)
    cycles = freq * t
    x = mix * _read_table(bright, cycles) + (1.0 - mix) * _read_table(dark, cycles)
    return x * _attack(t, 0.003) * _release(t, n_on / sr, release)


def _upright_bass(freq: float, n_on: int, sr: int) -> np.ndarray:
    release = 0.07
    t = time_axis(n_on + int(release * sr), sr)
    x = _additive(freq * t, t, freq, (1.0, 0.5, 0.3, 0.15, 0.08), (2.0, 3.0, 4.5, 6.5, 9.0), sr)
    return x * _attack(t, 0.008) * _release(t, n_on / sr, release)


def _picked_bass(freq: float, n_on: int, sr: int) -> np.ndarray:
    release = 0.05
    t = time_axis(n_on + int(release * sr), sr)
    k = np.arange(1, 10)
    x = _additive(freq * t, t, freq, 1.0 / k**1.2, 1.2 + 0.8 * k, sr)
    return _distort(x, 1.5) * _attack(t, 0.002) * _release(t, n_on / sr, release)


TIMBRES: dict[str, Callable[[float, int, int], np.ndarray]] = {
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


def drum_kit(style: GenreStyle, tonic_pc: int, sr: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The one-shots of ``style``'s kit, float32 by name: "kick" (tuned to the key's tonic ``tonic_pc``), "snare"
    (a snare, clap or rim shot, as ``style.snare_kind`` says), "hat" (hi-hat or shaker), "open_hat" and "crash".
    The noise they are made of comes from ``rng``, in this order."""

    def noise(seconds: float) -> np.ndarray:
        return rng.standard_normal(int(seconds * sr))

    kit: dict[str, np.ndarray] = {}

    # Kick: a sine swept down onto the tonic (producers tune kicks), plus a short click.
    t = time_axis(int((style.kick_decay * 5 + 0.05) * sr), sr)
    f_end = midi_to_hz(24 + tonic_pc)  # C1..B1 (33-62 Hz)
    freq = f_end + (f_end * 3.5) * np.exp(-t / 0.04)
    body = np.sin(2.0 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / style.kick_decay)
    click = butterworth(rng.standard_normal(len(t)), sr, highpass=2000.0) * np.exp(-t / 0.003)
    kit["kick"] = np.tanh(1.5 * (body + 0.3 * click))

    if style.snare_kind == "snare":
        t = time_axis(int(0.35 * sr), sr)
        tone = (np.sin(2 * np.pi * 185.0 * t) + 0.5 * np.sin(2 * np.pi * 330.0 * t)) * np.exp(-t / 0.04)
        rattle = butterworth(noise(0.35), sr, 1500.0, 9000.0) * np.exp(-t / 0.09)
        kit["snare"] = 0.5 * tone + 1.6 * rattle
    elif style.snare_kind == "clap":
        t = time_axis(int(0.4 * sr), sr)
        bursts = sum(np.exp(-np.maximum(t - d, 0) / 0.006) * (t >= d) for d in (0.0, 0.011, 0.022))
        env = 0.6 * bursts + np.exp(-np.maximum(t - 0.025, 0) / 0.11) * (t >= 0.025)
        kit["snare"] = butterworth(noise(0.4), sr, 900.0, 4000.0) * env * 2.0
    elif style.snare_kind == "rim":
        t = time_axis(int(0.06 * sr), sr)
        tone = (np.sin(2 * np.pi * 1700.0 * t) + 0.6 * np.sin(2 * np.pi * 820.0 * t)) * np.exp(-t / 0.008)
        kit["snare"] = tone + 0.5 * butterworth(noise(0.06), sr, highpass=2000.0) * np.exp(-t / 0.004)
    else:
        raise ValueError(f"unknown snare kind {style.snare_kind!r}")

    if style.hat_kind == "hat":
        t = time_axis(int(0.08 * sr), sr)
        kit["hat"] = butterworth(noise(0.08), sr, highpass=7000.0) * np.exp(-t / 0.02)
    elif style.hat_kind == "shaker":
        t = time_axis(int(0.12 * sr), sr)
        env = np.interp(t, [0.0, 0.015, 0.12], [0.0, 1.0, 0.0]) ** 2
        kit["hat"] = butterworth(noise(0.12), sr, 4000.0, 10000.0) * env
    else:
        raise ValueError(f"unknown hat kind {style.hat_kind!r}")
    t = time_axis(int(0.5 * sr), sr)
    kit["open_hat"] = butterworth(noise(0.5), sr, highpass=6500.0) * np.exp(-t / 0.15)
    t = time_axis(int(2.0 * sr), sr)
    kit["crash"] = butterworth(noise(2.0), sr, highpass=4500.0) * np.exp(-t / 0.7)
    fade = max(2, int(0.01 * sr))
    for sound in kit.values():  # end every one-shot at zero (no clicks)
        k = min(fade, len(sound))
        sound[-k:] *= np.linspace(1.0, 0.0, k)
    return {name: sound.astype(np.float32) for name, sound in kit.items()}
