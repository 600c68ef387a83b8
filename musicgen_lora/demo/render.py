"""Render one demo clip: a genre's arrangement played on the 16-step grid, mixed and mastered.

:func:`render_clip` runs named steps: check the request, lay out the grid (tempo, swing, humanised timing), choose
the harmony, play the drums, chords, bass and lead into four stems, mix them (guitar-cabinet filter, sidechain
ducking, stem levels, vinyl crackle, reverb send, master filters), then master the result (loudness, soft limiter,
fade-out). What is played comes from :mod:`.composition`, how it sounds from :mod:`.instruments`, the genre's
settings from :mod:`.styles`."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import signal

from ..audio import analysis
from .composition import (
    SCALES,
    Harmony,
    bass_midi,
    choose_harmony,
    chord_voicing,
    degree_to_midi,
    lead_notes,
    midi_to_hz,
)
from .dsp import butterworth, time_axis
from .instruments import TIMBRES, drum_kit
from .styles import STEPS_PER_BAR, GenreStyle, genre_style

# The tempi render_clip accepts (analysis.MIN_BPM/MAX_BPM, narrower, is the range its tempo estimator searches).
MIN_BPM, MAX_BPM = 30, 300


MIN_SAMPLE_RATE = 8000


MAX_SAMPLE_RATE = 192000


# Demo clips are short; 10 minutes is far past MusicGen's 30 s window, and a longer request (a typo: 86400) would
# fill the memory (the mix is rendered whole, in float64).
MAX_SECONDS = 600.0


def check_seconds(seconds: float) -> float:
    """``seconds`` as a positive finite float of at most :data:`MAX_SECONDS`; ValueError otherwise."""
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        raise ValueError(f"seconds must be a number, got {seconds!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"seconds must be a positive number, got {seconds!r}")
    if seconds > MAX_SECONDS:
        raise ValueError(f"seconds must be at most {MAX_SECONDS:g} for a demo clip, got {seconds:g}")
    return seconds


def check_sample_rate(sample_rate: int) -> int:
    """``sample_rate`` as an int between :data:`MIN_SAMPLE_RATE` and :data:`MAX_SAMPLE_RATE`; ValueError otherwise."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise ValueError(f"sample_rate must be an integer, got {sample_rate!r}")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz, got {sample_rate}")
    return int(sample_rate)


def clip_samples(seconds: float, sr: int) -> int:
    """Samples in a clip of ``seconds`` at ``sr`` Hz; ValueError when that is not even one."""
    n = int(round(seconds * sr))
    if n < 1:
        raise ValueError(f"seconds={seconds} is shorter than one sample at {sr} Hz")
    return n


def _check_bpm(bpm: float) -> None:
    if isinstance(bpm, bool) or not isinstance(bpm, (int, float, np.integer, np.floating)):
        raise ValueError(f"bpm must be a number, got {bpm!r}")
    if not MIN_BPM <= bpm <= MAX_BPM:
        raise ValueError(f"bpm must be between {MIN_BPM} and {MAX_BPM}, got {bpm}")


def _check_key(key: str) -> tuple[int, str]:
    parsed = analysis.parse_key(key) if isinstance(key, str) else None
    if parsed is None:
        raise ValueError(f"bad key {key!r}: expected '<root> major' or '<root> minor', e.g. 'A minor' or 'Eb major'")
    return parsed


@dataclass(frozen=True)
class _Grid:
    """Where the steps of the 16-step grid fall in time, with the style's swing and humanised timing."""

    style: GenreStyle
    step_seconds: float
    sr: int

    @property
    def bar_seconds(self) -> float:
        """Seconds of one bar."""
        return self.step_seconds * STEPS_PER_BAR

    def onset(self, bar: int, step: float) -> float:
        """Seconds from the clip start of a grid step, with swing applied to the off-beats."""
        style = self.style
        swung = (step // style.swing_unit) % 2 == 1
        return (bar * STEPS_PER_BAR + step + (style.swing * style.swing_unit if swung else 0.0)) * self.step_seconds

    def played_onset(self, bar: int, step: float, rng: np.random.Generator) -> float:
        """:meth:`onset` moved by the style's human timing jitter (drawn from ``rng``; none for machine styles)."""
        return self.onset(bar, step) + _jitter_seconds(self.style, rng)

    def sample(self, seconds: float) -> int:
        """The sample index of a time in seconds."""
        return int(round(seconds * self.sr))


def _jitter_seconds(style: GenreStyle, rng: np.random.Generator) -> float:
    if style.humanize_ms <= 0:
        return 0.0
    sd = style.humanize_ms / 1000.0
    return float(np.clip(rng.normal(0.0, sd), -2.5 * sd, 2.5 * sd))


def _place(buffer: np.ndarray, sound: np.ndarray, start: int, gain: float) -> None:
    """Add ``gain * sound`` into ``buffer`` from sample ``start`` on (what falls outside is dropped)."""
    start = max(start, 0)
    if start >= len(buffer):
        return
    sound = sound[: len(buffer) - start]
    buffer[start : start + len(sound)] += gain * sound


@dataclass
class _Note:
    start: float  # seconds
    length: float  # seconds the note is held
    midi: int
    velocity: float


@dataclass
class _NotePlayer:
    """Plays notes into stems; each distinct (timbre, pitch, length) is synthesised once per clip."""

    grid: _Grid
    rendered: dict[tuple[str, int, int], np.ndarray] = field(default_factory=dict)

    def play(self, buffer: np.ndarray, timbre: str, note: _Note) -> None:
        """Add ``note`` played on ``timbre`` into ``buffer`` (a stem)."""
        n_on = max(1, self.grid.sample(note.length))
        key = (timbre, note.midi, n_on)
        if key not in self.rendered:
            self.rendered[key] = TIMBRES[timbre](midi_to_hz(note.midi), n_on, self.grid.sr)
        _place(buffer, self.rendered[key], self.grid.sample(note.start), note.velocity)


def render_clip(
    genre: str, bpm: int, key: str, seconds: float, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Synthesise one clip of ``genre`` at ``bpm`` in ``key``.

    Args:
        genre: a key of :data:`~.styles.GENRES`.
        bpm: tempo, :data:`MIN_BPM` to :data:`MAX_BPM`.
        key: e.g. ``"A minor"`` or ``"Eb major"`` (anything :func:`musicgen_lora.audio.analysis.parse_key` reads).
        seconds, sample_rate: the clip's length and rate.
        rng: the source of all randomness (harmony, melody, humanisation, noise): the same state gives the same clip.

    Returns:
        float32 mono audio of ``round(seconds * sample_rate)`` samples, peak <= 0.95.

    Raises:
        ValueError: naming the bad argument.
    """
    style = genre_style(genre)
    _check_bpm(bpm)
    tonic_pc, mode = _check_key(key)
    seconds = check_seconds(seconds)
    sr = check_sample_rate(sample_rate)
    n = clip_samples(seconds, sr)

    grid = _Grid(style, 60.0 / float(bpm) / 4.0, sr)
    bars = int(math.ceil(seconds / grid.bar_seconds))
    harmony = choose_harmony(style, mode, grid.bar_seconds, seconds, rng)
    drums, kick_starts = _drum_stem(grid, tonic_pc, bars, n, rng)
    player = _NotePlayer(grid)
    tonic_midi = 60 + tonic_pc
    scale = SCALES[mode]
    chords = _chord_stem(player, harmony, tonic_midi, scale, bars, n, rng)
    bass = _bass_stem(player, harmony, tonic_midi, scale, bars, n, rng)
    lead = _lead_stem(player, harmony, tonic_midi, scale, bars, n, rng)
    mix = _mix(style, drums, bass, chords, lead, kick_starts, sr, rng)
    return _master(mix, sr)


def _drum_stem(grid: _Grid, tonic_pc: int, bars: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    """The drum stem and the sample index of every kick (for sidechain ducking)."""
    style = grid.style
    kit = drum_kit(style, tonic_pc, grid.sr, rng)
    drums = np.zeros(n, dtype=np.float32)
    rows = (("kick", style.kick), ("snare", style.snare), ("hat", style.hats), ("open_hat", style.open_hats))
    kick_starts = []
    for bar in range(bars):
        if style.crash and bar % 4 == 0:  # a crash opens every 4-bar phrase
            _place(drums, kit["crash"], grid.sample(grid.onset(bar, 0)), 0.35)
        for name, row in rows:
            for step, velocity in enumerate(row):
                if velocity <= 0:
                    continue
                start = grid.sample(grid.played_onset(bar, step, rng))
                gain = velocity
                if style.humanize_ms > 0:  # a human drummer's hits vary in strength too
                    gain *= float(np.clip(1.0 + rng.normal(0.0, 0.06), 0.8, 1.2))
                _place(drums, kit[name], start, gain)
                if name == "kick":
                    kick_starts.append(start)
    return drums, kick_starts


def _chord_stem(
    player: _NotePlayer,
    harmony: Harmony,
    tonic_midi: int,
    scale: tuple[int, ...],
    bars: int,
    n: int,
    rng: np.random.Generator,
) -> np.ndarray:
    grid, style = player.grid, player.grid.style
    chords = np.zeros(n, dtype=np.float32)
    for bar in range(bars):
        for step, length in harmony.split(style.chord_rhythm):
            voicing = chord_voicing(style, harmony.root(harmony.slot(bar, step)), tonic_midi, scale)
            start = grid.played_onset(bar, step, rng)
            velocity = 0.9 if step % 4 == 0 else 0.75
            for i, midi in enumerate(voicing):  # strummed: each string a little later
                note = _Note(start + i * style.strum_ms / 1000.0, length * grid.step_seconds, midi, velocity)
                player.play(chords, style.chord_timbre, note)
    return chords


def _bass_stem(
    player: _NotePlayer,
    harmony: Harmony,
    tonic_midi: int,
    scale: tuple[int, ...],
    bars: int,
    n: int,
    rng: np.random.Generator,
) -> np.ndarray:
    grid, style = player.grid, player.grid.style
    bass = np.zeros(n, dtype=np.float32)
    for bar in range(bars):
        for step, length, offset, anticipate in style.bass_rhythm:
            root_degree = harmony.root(harmony.slot(bar, step) + int(anticipate))
            midi = bass_midi(root_degree, offset, tonic_midi, scale)
            start = grid.played_onset(bar, step, rng)
            velocity = 0.9 if step % 4 == 0 else 0.75
            player.play(bass, style.bass_timbre, _Note(start, length * grid.step_seconds, midi, velocity))
    return bass


def _lead_stem(
    player: _NotePlayer,
    harmony: Harmony,
    tonic_midi: int,
    scale: tuple[int, ...],
    bars: int,
    n: int,
    rng: np.random.Generator,
) -> np.ndarray:
    grid, style = player.grid, player.grid.style
    lead = np.zeros(n, dtype=np.float32)
    # the lead's tonic is the one from G3 to F#4, nearest middle C, moved by the style's octave
    lead_tonic = tonic_midi - 12 if tonic_midi > 66 else tonic_midi
    lead_tonic += 12 * style.lead_octave
    for bar, step, length, degree, velocity in lead_notes(style, harmony, bars, rng):
        start = grid.played_onset(bar, step, rng)
        note = _Note(start, length * grid.step_seconds, degree_to_midi(degree, lead_tonic, scale), velocity)
        player.play(lead, style.instrument, note)
    return lead


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


def _mix(
    style: GenreStyle,
    drums: np.ndarray,
    bass: np.ndarray,
    chords: np.ndarray,
    lead: np.ndarray,
    kick_starts: list[int],
    sr: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """The four stems mixed at the style's levels (relative to the drums), with its effects and master filters."""
    n = len(drums)
    if style.power_chords:  # guitar cabinet
        chords = butterworth(chords, sr, 90.0, 5000.0)
        if style.instrument == "distorted guitar":
            lead = butterworth(lead, sr, 90.0, 5000.0)
    if style.sidechain > 0 and kick_starts:  # the kick ducks bass and chords (the pumping of dance music)
        duck = _sidechain_gain(kick_starts, style.sidechain, n, sr)
        bass *= duck
        chords *= duck

    reference = max(_rms(drums), 1e-9)
    mix = np.zeros(n, dtype=np.float32)
    send = np.zeros(n, dtype=np.float32)
    for stem, level_db, send_level in zip(
        (drums, bass, chords, lead), style.levels_db, style.reverb_send, strict=False
    ):
        rms = _rms(stem)
        if rms < 1e-9:
            continue
        gain = reference * 10.0 ** (level_db / 20.0) / rms
        mix += gain * stem
        send += (gain * send_level) * stem
    if style.crackle:  # sparse clicks and hiss, high-passed by a first difference
        noise = (rng.random(n) < 6.0 / sr) * rng.standard_normal(n) * 0.3 + 0.01 * rng.standard_normal(n)
        mix += (reference * np.diff(noise, prepend=0.0)).astype(np.float32)
    reverb = signal.fftconvolve(send, _room_impulse_response(style.reverb_seconds, sr))[:n]
    return butterworth(mix + reverb, sr, highpass=25.0, lowpass=style.lowpass_hz)  # rumble out; tape/lofi top


def _sidechain_gain(kick_starts: list[int], depth: float, n: int, sr: int) -> np.ndarray:
    """Gain that drops by ``depth`` at every kick and recovers exponentially (100 ms time constant)."""
    marker = np.zeros(n, dtype=np.int64)
    starts = np.clip(kick_starts, 0, n - 1)
    marker[starts] = starts
    since = (np.arange(n) - np.maximum.accumulate(marker)) / sr
    return (1.0 - depth * np.exp(-since / 0.1)).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _room_impulse_response(seconds: float, sr: int) -> np.ndarray:
    """A room's impulse response: exponentially decaying (-60 dB at ``seconds``), darkened noise after a 20 ms
    pre-delay, unit energy. Fixed per (length, rate), like a studio's plate, and shared by every clip (read-only)."""
    t = time_axis(int(seconds * sr), sr)
    ir = np.random.default_rng(int(seconds * 1000)).standard_normal(len(t)) * np.exp(-6.9 * t / seconds)
    ir = butterworth(ir, sr, lowpass=5000.0)
    ir = np.concatenate([np.zeros(int(0.02 * sr)), ir])
    ir /= np.sqrt(np.sum(ir**2))
    ir.flags.writeable = False
    return ir


def _master(mix: np.ndarray, sr: int) -> np.ndarray:
    """Loudness to about -16 dBFS RMS, a tanh soft limiter (peak <= 0.95) and a 10 ms fade-out; float32."""
    rms = _rms(mix)
    if not np.isfinite(rms) or rms <= 0:
        raise RuntimeError("synthesised a silent clip; this is a bug")
    mix *= 0.16 / rms
    mix = 0.95 * np.tanh(mix / 0.95)
    fade = min(len(mix), int(0.01 * sr))
    if fade > 1:
        mix[-fade:] *= np.linspace(1.0, 0.0, fade)
    return mix.astype(np.float32)
