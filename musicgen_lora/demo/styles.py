"""The genre tables of the demo corpus: what makes each genre sound like itself.

One :class:`GenreStyle` per genre (tempo range, drum rows on a 16-step grid, chord and bass rhythms, lead behaviour,
timbres, mix settings and caption words). Pure data: :mod:`.render` plays these tables, :mod:`.composition` reads
their harmony and lead settings."""

from __future__ import annotations

from dataclasses import dataclass

STEPS_PER_BAR = 16  # sixteenth notes in 4/4: the grid every table below is written on


def _pattern(text: str) -> tuple[float, ...]:
    """A 16-step drum row: 'X' accent, 'x' normal, 'o' ghost note, '.' rest."""
    levels = {"X": 1.0, "x": 0.75, "o": 0.4, ".": 0.0}
    if len(text) != STEPS_PER_BAR or set(text) - set(levels):
        raise ValueError(f"bad drum pattern {text!r}: need 16 characters from 'Xxo.'")
    return tuple(levels[c] for c in text)


@dataclass(frozen=True)
class GenreStyle:
    """Everything that makes a genre sound like itself (values are read by :func:`.render.render_clip`)."""

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


def genre_style(genre: str) -> GenreStyle:
    """The style of ``genre``; ValueError naming the known genres otherwise."""
    if genre not in GENRES:
        raise ValueError(f"unknown genre {genre!r}; choose from: {', '.join(GENRES)}")
    return GENRES[genre]
