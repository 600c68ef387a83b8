"""Tests for musicgen_lora.demo.composition: keys, harmony, voicings and the lead line follow the rules they state."""

from __future__ import annotations

import numpy as np
import pytest

from musicgen_lora.audio.analysis import parse_key
from musicgen_lora.demo.composition import (
    KEYS,
    SCALES,
    Harmony,
    bass_midi,
    chord_degrees,
    chord_voicing,
    degree_to_midi,
    melody,
)
from musicgen_lora.demo.styles import GENRES


def test_keys_cover_all_roots_and_modes():
    assert len(KEYS) == 24
    assert {parse_key(k) for k in KEYS} == {(pc, mode) for pc in range(12) for mode in ("major", "minor")}


def test_degree_to_midi_walks_the_scale_across_octaves():
    a_minor = [degree_to_midi(d, 57, SCALES["minor"]) for d in range(-1, 9)]
    assert a_minor == [55, 57, 59, 60, 62, 64, 65, 67, 69, 71]  # G3, then A3 B3 C4 D4 E4 F4 G4 A4 B4


def test_harmony_cuts_chord_hits_at_the_half_bar_when_two_chords_share_a_bar():
    one, two = Harmony((0, 3, 4, 0), per_bar=1), Harmony((0, 3, 4, 0), per_bar=2)
    rhythm = ((0, 14.0), (6, 3.0), (7, 2.0))
    assert one.split(rhythm) == list(rhythm)
    # a hit over the middle is cut there and re-struck when 2+ steps remain; (6, 3) and (7, 2) leave 1: not re-struck
    assert two.split(rhythm) == [(0, 8.0), (8, 6.0), (6, 2.0), (7, 1.0)]
    assert [two.root(two.slot(bar, step)) for bar, step in ((0, 0), (0, 8), (1, 0), (1, 15), (2, 0))] == [0, 3, 4, 0, 0]


@pytest.mark.parametrize("genre", list(GENRES))
def test_chord_voicings_stay_in_their_window_and_in_the_key(genre):
    style = GENRES[genre]
    tonic_midi, scale = 62, SCALES["major"]  # D major
    in_key = {(2 + step) % 12 for step in scale}
    for root in range(7):
        voicing = chord_voicing(style, root, tonic_midi, scale)
        assert voicing == sorted(voicing)
        assert all(style.chord_low <= midi < style.chord_low + 12 for midi in voicing)
        assert {midi % 12 for midi in voicing} <= in_key
        expected_size = 1 if style.power_chords else (4 if style.sevenths else 3)
        assert len(set(voicing)) == expected_size


def test_bass_notes_have_their_root_in_the_second_octave():
    scale = SCALES["minor"]
    for root in range(7):
        assert 36 <= bass_midi(root, 0, 69, scale) < 48  # the root itself: C2..B2
        fifth = bass_midi(root, 4, 69, scale)
        assert fifth - bass_midi(root, 0, 69, scale) in (6, 7)  # a fifth above (diminished on the 2nd degree)


@pytest.mark.parametrize("seed", range(5))
def test_melody_starts_each_progression_cycle_on_the_tonic_and_lands_on_chord_tones(seed):
    style = GENRES["lofi hip hop"]
    harmony = Harmony((0, 5, 3, 4), per_bar=1)
    notes = melody(style, harmony, 8, np.random.default_rng(seed))
    assert notes and all(0 <= bar < 8 and 0 <= step < 16 for bar, step, *_ in notes)
    for bar, step, _, degree, _ in notes:
        if bar % 4 == 0 and step == 0:  # the progression starts again
            assert degree in (0, 7)
        elif step % 8 == 0:  # strong beats snap to the sounding chord
            chord = {d % 7 for d in chord_degrees(harmony.root(harmony.slot(bar, step)), style.sevenths)}
            assert degree % 7 in chord
