"""What the demo clips play: keys and scales, the looping chord progression, chord voicings, bass notes, and the
lead line (a motif-based melody or an arpeggio over the chord tones).

Everything here is in scale degrees and MIDI note numbers; :mod:`.render` turns the notes into sound. Key names
and their parsing are :mod:`musicgen_lora.audio.analysis`'s, so a corpus' ``key`` column reads back with
``analysis.parse_key``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..audio.analysis import NOTE_NAMES
from .styles import STEPS_PER_BAR, GenreStyle

SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}


KEYS: tuple[str, ...] = tuple(f"{name} {mode}" for mode in ("major", "minor") for name in NOTE_NAMES)


# A lead note: (bar, step, length in steps, scale degree relative to the tonic, velocity).
LeadNote = tuple[int, int, float, int, float]


def midi_to_hz(midi: float) -> float:
    """Equal-tempered frequency of a MIDI note number (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def degree_to_midi(degree: int, tonic_midi: int, scale: Sequence[int]) -> int:
    """MIDI note of a scale degree (0 = the tonic; 7 = the tonic an octave up; negative degrees go down)."""
    octave, index = divmod(degree, 7)
    return tonic_midi + 12 * octave + scale[index]


def into_window(midi: int, low: int) -> int:
    """Move ``midi`` by octaves into ``[low, low + 12)``."""
    return low + (midi - low) % 12


@dataclass(frozen=True)
class Harmony:
    """A looping chord progression (scale degrees of the chord roots) and its harmonic rhythm."""

    progression: tuple[int, ...]
    per_bar: int  # chords per bar: 1, or 2 when a clip is too short to hear the whole cycle one chord a bar

    def slot(self, bar: int, step: float) -> int:
        """Index of the chord sounding at a grid position."""
        return bar * self.per_bar + int(step * self.per_bar) // STEPS_PER_BAR

    def root(self, slot: int) -> int:
        """Scale degree of the root of the chord in ``slot`` (the progression loops)."""
        return self.progression[slot % len(self.progression)]

    def slot_starts_at(self, step: int) -> bool:
        """Whether a chord starts at this step of a bar."""
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


def choose_harmony(
    style: GenreStyle, mode: str, bar_seconds: float, seconds: float, rng: np.random.Generator
) -> Harmony:
    """One of the style's progressions for ``mode``, drawn from ``rng``: one chord a bar, unless the clip is too
    short to hear the whole progression that way (then two a bar)."""
    progressions = style.progressions_major if mode == "major" else style.progressions_minor
    progression = progressions[int(rng.integers(len(progressions)))]
    return Harmony(progression, 1 if len(progression) * bar_seconds <= seconds else 2)


def chord_degrees(root_degree: int, sevenths: bool) -> list[int]:
    """Scale degrees of the triad (or seventh chord) built on ``root_degree``."""
    return [root_degree, root_degree + 2, root_degree + 4] + ([root_degree + 6] if sevenths else [])


def chord_voicing(style: GenreStyle, root_degree: int, tonic_midi: int, scale: Sequence[int]) -> list[int]:
    """MIDI notes of one chord, low to high, inside the style's one-octave voicing window; a power-chord style
    plays the root alone (its timbre adds the fifth and the octave)."""
    if style.power_chords:
        return [into_window(degree_to_midi(root_degree, tonic_midi, scale), style.chord_low)]
    degrees = chord_degrees(root_degree, style.sevenths)
    return sorted(into_window(degree_to_midi(d, tonic_midi, scale), style.chord_low) for d in degrees)


def bass_midi(root_degree: int, offset: int, tonic_midi: int, scale: Sequence[int]) -> int:
    """The bass note ``offset`` scale degrees above the chord root, with the root moved into C2..B2."""
    root_midi = into_window(degree_to_midi(root_degree, tonic_midi, scale), 36)
    interval = degree_to_midi(root_degree + offset, tonic_midi, scale) - degree_to_midi(root_degree, tonic_midi, scale)
    return root_midi + interval


def lead_notes(style: GenreStyle, harmony: Harmony, bars: int, rng: np.random.Generator) -> list[LeadNote]:
    """The lead part of ``bars`` bars: an arpeggio or a melody, as the style says."""
    make = arpeggio if style.lead_mode == "arp" else melody
    return make(style, harmony, bars, rng)


def _snap_to_chord(degree: int, chord: Sequence[int]) -> int:
    """Nearest chord tone to ``degree`` (leaning towards the tonic when the chord contains it)."""
    candidates = [c + 7 * octave for c in chord for octave in range(-2, 3)]
    return min(candidates, key=lambda c: (abs(c - degree) - (1.5 if c % 7 == 0 else 0.0), c))


def melody(style: GenreStyle, harmony: Harmony, bars: int, rng: np.random.Generator) -> list[LeadNote]:
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
        for i, (step, degree) in enumerate(zip(onsets, contour, strict=False)):
            bar = pair + step // STEPS_PER_BAR
            if bar >= bars:
                break
            bar_step = step % STEPS_PER_BAR
            end = onsets[i + 1] if i + 1 < len(onsets) else 2 * STEPS_PER_BAR
            length = min(end - step, 8) * style.lead_legato
            slot = harmony.slot(bar, bar_step)
            chord = chord_degrees(harmony.root(slot), style.sevenths)
            if variation[pair // 2, i]:
                degree += int(shifts[pair // 2, i])
            if slot % len(harmony.progression) == 0 and harmony.slot_starts_at(bar_step):
                degree = 0 if abs(degree) <= abs(degree - 7) else 7
            elif bar_step % 8 == 0:
                degree = _snap_to_chord(degree, chord)
            velocity = 0.85 if bar_step % 4 == 0 else 0.7
            notes.append((bar, bar_step, length, degree, velocity))
    return notes


def arpeggio(style: GenreStyle, harmony: Harmony, bars: int, rng: np.random.Generator) -> list[LeadNote]:
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
            chord = chord_degrees(harmony.root(harmony.slot(bar, step)), False)
            octave, index = divmod(int(pattern[step]), n_tones)
            velocity = 0.9 if step % 4 == 0 else 0.65
            notes.append((bar, step, style.lead_grid * style.lead_legato, chord[index] + 7 * octave, velocity))
    return notes
