"""How bench/key_tempo_corpora.py plays its scores: the metric stress of abc2midi, bars that start after a pickup,
and drums that keep the metre (the caption accuracy figures of bench/RESULTS.md rest on these renders)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from ..conftest import load_bench_script

pytestmark = pytest.mark.slow  # renders the benchmark's corpora

# abc2midi 20230208 (Debian abcmidi), default settings, a bar of sixteenth notes in each metre: A = velocity 105,
# b = 95, . = 80 (read from the MIDI file it wrote)
ABC2MIDI_STRESS = {
    "2/4": "A.......",
    "3/4": "A...........",
    "4/4": "A.......b.......",
    "2/2": "A...............",
    "3/2": "A.......................",
    "4/2": "A...............b...............",
    "6/8": "A.....b.....",
    "9/8": "A.....b.....b.....",
    "12/8": "A.....b.....b.....b.....",
    "6/4": "A...........b...........",
}


@pytest.fixture(scope="module")
def corpora():
    return load_bench_script("key_tempo_corpora")


@pytest.fixture(scope="module")
def scores():
    return load_bench_script("score_corpora")


def _piece(scores, metre: str, notes):
    return scores.Piece("test/piece", "folk", "dance tune", notes, None, *scores.metre_of(*map(int, metre.split("/"))))


@pytest.mark.parametrize("metre", sorted(ABC2MIDI_STRESS))
def test_metric_stress_is_abc2midis(corpora, scores, metre):
    piece = _piece(scores, metre, [])
    symbol = {corpora.DOWNBEAT_STRESS: "A", corpora.STRONG_BEAT_STRESS: "b", 0: "."}
    played = "".join(symbol[corpora._stress(piece, i * 0.25)] for i in range(int(piece.bar_quarters * 4)))
    assert played == ABC2MIDI_STRESS[metre]
    # the next bar starts stressed again
    assert corpora._stress(piece, piece.bar_quarters) == corpora.DOWNBEAT_STRESS


def _on_downbeat(when: float) -> bool:
    """Whether a time (s) of the jig below at 100 bpm falls on a downbeat: 0.2 s (after the pickup) + 1.2 s k."""
    return abs((when - 0.2) / 1.2 - round((when - 0.2) / 1.2)) < 0.03


def _jig_with_pickup(scores):
    """A 6/8 tune of running eighths with a one-eighth pickup: the first note is the bar's last eighth."""
    notes = [scores.Note(0.0, 0.5, 62, 0, bar_position=2.5)]
    notes += [scores.Note(0.5 + 0.5 * i, 0.5, 67 + i % 5, 0, bar_position=(0.5 * i) % 3.0) for i in range(47)]
    return _piece(scores, "6/8", notes)


def test_stress_and_drums_follow_the_bar_after_a_pickup(corpora, scores):
    piece = _jig_with_pickup(scores)
    bpm = 100.0  # dotted quarters: an eighth lasts 0.2 s
    events = corpora.piece_events(piece, bpm, "folk band", 6.0, random.Random(0))
    melody = [(when, velocity) for when, on, channel, _, velocity in events if on and channel == 0]
    kicks = [when for when, on, channel, key, _ in events if on and channel == 9 and key == 36]
    hats = [when for when, on, channel, key, _ in events if on and channel == 9 and key == 42]
    # melody notes every 0.2 s from 0; downbeats at 0.2 + 1.2 k (after the pickup)
    downbeats = [when for when, _ in melody if _on_downbeat(when)]
    assert len(downbeats) >= 4 and abs(downbeats[0] - 0.2) < 0.02
    assert np.allclose(kicks[: len(downbeats)], downbeats, atol=0.025)  # the kick is on the bar's first beat
    assert np.allclose(np.diff(hats), 0.2, atol=0.02)  # the hi-hat plays the eighths of the compound beat
    stressed = np.mean([v for when, v in melody if when in downbeats])
    middle = np.mean([v for when, v in melody if any(abs(when - d - 0.6) < 0.02 for d in downbeats)])
    others = np.mean([v for when, v in melody[1:] if all(abs(when - d) > 0.02 and abs(when - d - 0.6) > 0.02
                                                          for d in downbeats)])  # fmt: skip
    assert stressed - others > 15 and middle - others > 8 and stressed > middle


def test_no_accents_plays_every_note_alike(corpora, scores):
    piece = _jig_with_pickup(scores)
    events = corpora.piece_events(piece, 100.0, "fiddle", 6.0, random.Random(0), accents=False)
    melody = [(when, velocity) for when, on, channel, _, velocity in events if on and channel == 0]
    on_downbeat = [v for when, v in melody if _on_downbeat(when)]
    elsewhere = [v for when, v in melody if not _on_downbeat(when)]
    assert abs(np.mean(on_downbeat) - np.mean(elsewhere)) < 6  # jitter only (sd 6), against +25 with accents


def test_bar_positions_of_a_score_with_a_pickup(scores):
    converter = pytest.importorskip("music21", reason="pip install music21 (the real pieces' scores)").converter
    score = converter.parse("X:1\nT:t\nM:6/8\nL:1/8\nK:G\nD|GAB cde|dBG AFD|G3 G2:|\n", format="abc")
    notes = scores._notes(score)
    assert [n.bar_position for n in notes[:8]] == [2.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 0.0]
    assert notes[-1].bar_position == 1.5  # G3 G2: the second G on the bar's second dotted beat


def test_tempo_range_and_scale_draw_the_same_pieces_at_other_tempi(corpora):
    genre = corpora.TEMPO_RANGES["chorale"]
    drawn = [corpora.draw_bpm(random.Random(seed), genre) for seed in range(200)]
    assert all(genre[0] <= bpm <= genre[1] for bpm in drawn)
    uniform = [corpora.draw_bpm(random.Random(seed), genre, (50.0, 200.0)) for seed in range(2000)]
    assert 50 <= min(uniform) < 52 and 198 < max(uniform) <= 200
    # uniform, not log-uniform: as many tempi above the middle of the range as below it
    assert 0.45 < np.mean(np.array(uniform) > 125) < 0.55
    scaled = [corpora.draw_bpm(random.Random(seed), genre, scale=1.5) for seed in range(200)]
    np.testing.assert_allclose(scaled, 1.5 * np.array(drawn), atol=0.11)
    # one number is drawn either way, so the piece's later random choices (timing, velocity) stay the same
    a, b = random.Random(7), random.Random(7)
    corpora.draw_bpm(a, genre)
    corpora.draw_bpm(b, genre, (50.0, 200.0))
    assert a.random() == b.random()


def test_tempo_range_option_is_checked(corpora, capsys):
    for bad in ("200", "0,100", "120,60", "fast,slow"):
        with pytest.raises(SystemExit) as raised:
            corpora.main(["unused", "--tempo-range", bad])
        assert raised.value.code == 2
        assert "LOW,HIGH" in capsys.readouterr().err.splitlines()[-1]


def test_an_openmsx_file_is_retimed(corpora):
    mido = pytest.importorskip("mido", reason="pip install mido (the OpenMSX pieces are MIDI files)")
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(100), time=0)])
    track += [mido.Message("note_on", note=60, velocity=90, time=480 * (i > 0)) for i in range(9)]
    midi.tracks.append(track)
    retimed = corpora._retimed(midi, 150.0)
    messages = list(retimed)  # times in seconds, at the new tempo
    onsets = np.cumsum([m.time for m in messages])[[m.type == "note_on" for m in messages]]
    np.testing.assert_allclose(np.diff(onsets), 60 / 150, atol=1e-4)
    untimed = mido.MidiFile(ticks_per_beat=480)  # no tempo event: MIDI's 120 until one is added
    untimed.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60, time=480 * (i > 0)) for i in range(3)]))
    assert sum(m.time for m in corpora._retimed(untimed, 60.0)) == pytest.approx(2.0)
