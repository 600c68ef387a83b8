"""Real music with known tempo and key, rendered with real instrument samples: the corpora that measure captions.

Usage::

    python bench/key_tempo_corpora.py OUT_DIR [--corpora chorales,classical,folk,openmsx] [--per-corpus N]
        [--split tune|test] [--no-accents] [--tempo-range LOW,HIGH] [--tempo-scale F]
        [--seconds 30] [--sr 22050] [--soundfont /usr/share/sounds/sf2/FluidR3_GM.sf2]

writes ``OUT_DIR/<corpus>/<id>.wav`` and ``OUT_DIR/manifest.jsonl`` (one row per excerpt: ``id``, ``file``,
``corpus``, ``genre``, ``instrumentation``, ``piece``, ``bpm``, ``key``, ``meter``, ``split``). Nothing is written
into the repository. Same arguments, same audio (every random choice is seeded by the piece's name).

Needs ``pip install music21 mido pyfluidsynth`` and ``apt-get install -y fluidsynth fluid-soundfont-gm`` (FluidSynth
plays the MIDI with the Fluid R3 General MIDI sample set: recorded pianos, strings, organs, guitars, drums...).
Optionally ``apt-get download openttd-openmsx`` for the pop corpus (read from the .deb, no installation needed, see
``--openmsx-deb``).

The corpora (what each is, how its truth is known, and its limits):

* ``chorales`` -- J. S. Bach's four-part chorales from music21's bundled corpus (real compositions, 18th century).
  Key: the key music21 reads from the score (key signature + mode), kept only when the final bass note is that
  key's tonic (chorales ending on the dominant or in a church mode are left out). Tempo: chosen per piece,
  log-uniform in 60-110 quarter notes per minute (the range chorales are sung at), so the truth is exact.
  Instrumentations (one per piece, cycled): church organ, string ensemble, piano, choir, brass section, and a
  "pop band" (electric piano on the upper voices, electric bass on the bass voice an octave down, a drum kit
  playing a backbeat on the metre). Limit: one style of harmony, and chorales modulate briefly (to the dominant or
  the relative) within their first 30 s; the stated global key is still the truth.
* ``classical`` -- opening excerpts of movements from music21's corpus (Mozart, Haydn and Beethoven string
  quartets, Schumann, Chopin, Joplin, Schubert, Handel, Corelli, C. P. E. Bach, Beach, songs and hymns). Key: the
  key signature read with the mode whose tonic is the bass note of both the first and the final sonority of the
  movement (pieces where they disagree are left out); only the first ``--seconds`` are rendered, where the stated
  key is established (sonata expositions modulate later). Tempo: chosen per piece, log-uniform 66-160.
  Instrumentations: string quartet, piano, woodwinds, guitars. Limit: parts are rendered as written (no dynamics
  or articulation), so the excerpts sound mechanical; 40 movements at most.
* ``folk`` -- Irish, Scottish and American fiddle tunes (Ryan's Mammoth Collection 1883, O'Neill's Music of
  Ireland 1850) and German folk songs (Essen collection), all from music21's corpus: real tunes, monophonic.
  Key: the ABC ``K:`` field, kept only for major and minor (``K:Ador``, ``K:Gmix``... are left out) and only when
  the tune ends on its tonic; for the Essen songs the tonic from ``K:`` and the mode from the thirds (see below).
  Tempo: dance tunes log-uniform 84-140 on the notated beat, songs 66-126.
  Instrumentations: solo fiddle, solo flute, accordion, and a "folk band" (melody + drum kit on the metre, no
  harmony added, so the key evidence stays the tune's own). Limit: a single melodic line is the hardest case for
  key finding (no chords), and fiddle tunes lean on their fifth.
* ``openmsx`` -- the OpenMSX music set of OpenTTD (Debian package ``openttd-openmsx``, GPL-2): pop, jazz, blues,
  ragtime and rock-style pieces by several composers, arranged by them in General MIDI with drums, bass and chords.
  Tempo: the file's own tempo (pieces whose tempo changes are left out), in quarter notes. Key: only where the
  composer wrote a key signature event into the file (the "redfarn" pieces) and the opening bass note agrees with it
  (otherwise the piece counts for tempo only). Limit: 30 pieces, 11 with a key; the excerpt starts at the first note.

Performance: the scores are played as abc2midi (the ABC reference player) plays them by default: the bar's first
note louder (velocity +25), the other strong beats (each dotted beat of a compound metre, the middle of a 4-beat bar)
+15, a player's timing (+-8 ms); pickups and drums keep the notated bar (the kick on the downbeat, the hi-hat on the
eighths of a compound beat). ``--no-accents`` plays every note at one velocity, as these corpora did before: a jig of
running eighths then carries no grouping in threes (bench/RESULTS.md reports both).

Tempi: by default each piece's tempo is drawn log-uniformly from its genre's range (below; the ranges the captions'
constants were first chosen on). ``--tempo-range 50,200`` draws every piece's tempo (OpenMSX included: its MIDI
tempo is rewritten) uniformly from one range instead, and ``--tempo-scale 1.5`` multiplies whatever was drawn: the
same pieces, in the same instrumentations, played faster or slower (bench/RESULTS.md "Captions at every tempo").

Tempo convention (the truth's "beat"): the denominator's note in simple metres (the quarter in 2/4, 3/4, 4/4; the
half note in 2/2, 3/2, 4/2), the dotted note in compound metres (the dotted quarter in 6/8, 9/8, 12/8; the dotted
half in 6/4); other metres are left out of the music21 corpora.

The scores, their metre, notes and stated key (checked twice), and the ``tune``/``test`` split:
``bench/score_corpora.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling score_corpora.py, however this file is loaded
from score_corpora import NOTE_NAMES, Piece, chorales, classical, folk, split_of  # noqa: E402

DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
CORPORA = ("chorales", "classical", "folk", "openmsx")

# General MIDI programs (0-based) of each instrumentation: one per part, the last repeated for extra parts
INSTRUMENTATIONS = {
    "organ": [19],
    "strings": [48],
    "piano": [0],
    "choir": [52],
    "brass": [61],
    "pop band": [4, 4, 4, 33],  # electric piano on the upper parts, electric bass on the lowest part
    "string quartet": [40, 40, 41, 42],
    "woodwinds": [73, 68, 71, 70],
    "guitars": [24, 25, 24, 32],
    "fiddle": [40],
    "flute": [73],
    "accordion": [21],
    "folk band": [40],
}
DRUMMED = {"pop band", "folk band"}
CHORALE_BANDS = ["organ", "strings", "piano", "choir", "brass", "pop band"]
CLASSICAL_BANDS = ["string quartet", "piano", "woodwinds", "guitars"]
FOLK_BANDS = ["fiddle", "flute", "accordion", "folk band"]


def _rng(piece: str) -> random.Random:
    return random.Random(int(hashlib.sha1(("seed:" + piece).encode()).hexdigest(), 16))


# ---------------------------------------------------------------------------------------------------- MIDI


# Metric stress of the played notes: the velocities abc2midi (the ABC reference player, Debian abcmidi 20230208)
# gives by default, read from its output for each metre: 105 on a bar's first note, 95 on its other strong beats (each
# dotted beat of a compound metre, the middle of a 4-beat bar), 80 on the rest -- an external convention, not one
# tuned to the estimators. ``--no-accents`` renders every note alike (the corpora before this stress was added).
DOWNBEAT_STRESS, STRONG_BEAT_STRESS = 25, 15


def _dotted(beat_quarters: float) -> bool:
    """Whether a beat is a dotted note (a compound metre's: 1.5 or 3 quarter notes; simple metres count 1 or 2)."""
    return round(beat_quarters * 2) % 3 == 0


def _stress(piece: Piece, bar_position: float) -> int:
    """Velocity added to a note at ``bar_position`` (quarter notes after its bar's downbeat), see DOWNBEAT_STRESS."""
    position = bar_position % piece.bar_quarters
    if min(position, piece.bar_quarters - position) < 1e-6:
        return DOWNBEAT_STRESS
    beats = round(piece.bar_quarters / piece.beat_quarters)
    on_beat = abs(position / piece.beat_quarters - round(position / piece.beat_quarters)) < 1e-6
    if on_beat and (_dotted(piece.beat_quarters) or (beats == 4 and abs(position - piece.bar_quarters / 2) < 1e-6)):
        return STRONG_BEAT_STRESS
    return 0


def _drum_notes(
    bar_quarters: float, beat_quarters: float, total_quarters: float, first_downbeat: float = 0.0
) -> list[tuple[float, float, int, int]]:
    """(start, length, drum key, velocity) in quarter notes: kick on the bar's first beat (and the middle of a
    4-beat bar), snare on the off-beats of the metre, closed hi-hat on every half beat (every third of a dotted
    beat, the eighth notes of a compound metre). Bars start at ``first_downbeat`` (after a pickup)."""
    beats = round(bar_quarters / beat_quarters)
    ticks = (0.0, 1 / 3, 2 / 3) if _dotted(beat_quarters) else (0.0, 0.5)
    hits = []
    t = first_downbeat - bar_quarters if first_downbeat > 0 else 0.0
    while t < total_quarters:
        for b in range(beats):
            start = t + b * beat_quarters
            if b == 0 or (beats == 4 and b == 2):
                hits.append((start, 0.25, 36, 100))
            elif beats != 3 or b == 1:
                hits.append((start, 0.25, 38, 90))
            for tick in ticks:
                hits.append((start + tick * beat_quarters, 0.2, 42, 70 if tick else 80))
        t += bar_quarters
    return [hit for hit in hits if hit[0] >= 0.0]


def piece_events(
    piece: Piece, bpm: float, band: str, seconds: float, rng: random.Random, accents: bool = True
) -> list[tuple]:
    """The piece (repeated to fill ``seconds``) at ``bpm`` beats per minute: sorted (seconds, on?, channel, key,
    velocity) events, parts on channels 0-3 and drums on channel 9. ``accents``: the metric stress of
    DOWNBEAT_STRESS on the notes."""
    quarter_seconds = 60.0 / bpm / piece.beat_quarters
    total_quarters = seconds / quarter_seconds + 1.0
    length = max(n.start + n.length for n in piece.notes) - piece.notes[0].start
    length = math.ceil(length / piece.bar_quarters) * piece.bar_quarters
    events = []
    copy = 0
    while copy * length < total_quarters:
        for n in piece.notes:
            start = (n.start - piece.notes[0].start) + copy * length
            if start >= total_quarters:
                continue
            pitch = n.pitch - 12 if band == "pop band" and n.part == piece.parts - 1 else n.pitch  # bass guitar octave
            on = max(0.0, start * quarter_seconds + rng.uniform(-0.008, 0.008))  # a player's timing, not a sequencer's
            off = on + max(0.05, n.length * quarter_seconds * 0.95)
            stress = _stress(piece, n.bar_position) if accents else 8  # 8: about the stress's mean, same loudness
            velocity = int(np.clip(rng.gauss(80 if n.part == 0 else 68, 6) + stress, 40, 120))
            events += [
                (on, 1, min(n.part, 3), int(np.clip(pitch, 0, 127)), velocity),
                (off, 0, min(n.part, 3), int(np.clip(pitch, 0, 127)), 0),
            ]
        copy += 1
    if band in DRUMMED:
        first = piece.notes[0]
        first_downbeat = (piece.bar_quarters - first.bar_position % piece.bar_quarters) % piece.bar_quarters
        drums = _drum_notes(piece.bar_quarters, piece.beat_quarters, total_quarters, first_downbeat)
        for start, dur, drum, velocity in drums:
            on = max(0.0, start * quarter_seconds + rng.uniform(-0.005, 0.005))
            events += [(on, 1, 9, drum, velocity), (on + dur * quarter_seconds, 0, 9, drum, 0)]
    return sorted(events, key=lambda e: (e[0], e[1]))


class Synth:
    """FluidSynth in this process (pyfluidsynth): the sound font is loaded once, events are rendered offline."""

    def __init__(self, soundfont: str, sr: int):
        import fluidsynth  # pyfluidsynth: needs libfluidsynth (apt-get install fluidsynth)

        self.sr = sr
        self.synth = fluidsynth.Synth(samplerate=float(sr), gain=0.6)
        self.font = self.synth.sfload(soundfont)
        if self.font < 0:
            raise SystemExit(
                f"cannot load the sound font {soundfont}; apt-get install -y fluid-soundfont-gm or pass --soundfont"
            )

    def render(self, events: list[tuple], programs: list[int], seconds: float) -> np.ndarray:
        """Mono float32 audio of ``events``, ``seconds`` long, peak-normalised to 0.7."""
        synth = self.synth
        synth.system_reset()  # silence and forget the previous excerpt
        for channel in range(4):
            synth.program_select(channel, self.font, 0, programs[min(channel, len(programs) - 1)])
        synth.program_select(9, self.font, 128, 0)  # the standard drum kit
        chunks, now = [], 0
        total = int(seconds * self.sr)
        for when, on, channel, pitch, velocity in events:
            sample = min(int(round(when * self.sr)), total)
            if sample > now:
                chunks.append(synth.get_samples(sample - now))
                now = sample
            if now >= total:
                break
            synth.noteon(channel, pitch, velocity) if on else synth.noteoff(channel, pitch)
        if now < total:
            chunks.append(synth.get_samples(total - now))
        stereo = np.concatenate(chunks).astype(np.float32).reshape(-1, 2)
        audio = stereo.mean(axis=1)
        return audio / max(float(np.abs(audio).max()), 1e-6) * 0.7


def render(midi_path: Path, soundfont: str, sr: int, seconds: float, start: float = 0.0) -> np.ndarray:
    """FluidSynth's rendering of a MIDI file, mono float32, ``seconds`` long from ``start`` (peak-normalised)."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "out.wav"
        subprocess.run(["fluidsynth", "-ni", "-g", "0.6", "-r", str(sr), "-F", str(wav), soundfont, str(midi_path)],
                       check=True, capture_output=True)  # fmt: skip
        audio, _ = sf.read(wav, dtype="float32")
    audio = audio.mean(axis=1) if audio.ndim == 2 else audio
    audio = audio[int(start * sr) : int((start + seconds) * sr)]
    return audio / max(float(np.abs(audio).max()), 1e-6) * 0.7


# ------------------------------------------------------------------------------------------------- openmsx


def _openmsx_midis(deb: str | None) -> dict[str, bytes]:
    """The OpenMSX MIDI files, read from the installed package or from a downloaded .deb."""
    installed = Path("/usr/share/games/openttd/baseset/openmsx")
    if installed.is_dir():
        return {p.name: p.read_bytes() for p in sorted(installed.glob("*.mid"))}
    if not deb:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", deb, tmp], check=True)
        return {p.name: p.read_bytes() for p in sorted(Path(tmp).rglob("openmsx/*.mid"))}


def _retimed(midi, bpm: float):
    """The MIDI file played at ``bpm`` quarter notes per minute: every tempo event set to it (one added if none)."""
    import mido

    tempo = mido.bpm2tempo(bpm)
    found = False
    for track in midi.tracks:
        for index, message in enumerate(track):
            if message.type == "set_tempo":
                track[index] = message.copy(tempo=tempo)
                found = True
    if not found:
        midi.tracks[0].insert(0, mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    return midi


def openmsx(
    deb: str | None, out: Path, soundfont: str, sr: int, seconds: float, split: str | None = None,
    tempo_range: tuple[float, float] | None = None, tempo_scale: float = 1.0,
) -> list[dict]:  # fmt: skip
    """The OpenMSX pieces at their files' tempo, or (``tempo_range``, ``tempo_scale``) at one drawn as
    :func:`draw_bpm` draws it, the MIDI tempo rewritten."""
    import mido

    rows = []
    (out / "openmsx").mkdir(parents=True, exist_ok=True)
    for name, data in _openmsx_midis(deb).items():
        midi = mido.MidiFile(file=io.BytesIO(data))
        tempos, keys, first_note, bass = set(), [], None, None
        for message in mido.merge_tracks(midi.tracks):
            if message.type == "set_tempo":
                tempos.add(message.tempo)
            elif message.type == "key_signature":
                keys.append(message.key)
        if len(tempos) > 1:
            continue  # a changing tempo has no single truth
        bpm = mido.tempo2bpm(tempos.pop()) if tempos else 120.0
        piece = f"openmsx/{Path(name).stem}"
        if tempo_range is not None or tempo_scale != 1.0:
            bpm = draw_bpm(_rng(piece), (bpm, bpm), tempo_range, tempo_scale)
            buffer = io.BytesIO()
            _retimed(midi, bpm).save(file=buffer)
            data = buffer.getvalue()
            midi = mido.MidiFile(file=io.BytesIO(data))
        # first note time and the lowest non-drum pitch in the first second after it
        now, onsets = 0.0, []
        for message in midi:
            now += message.time
            if message.type == "note_on" and message.velocity > 0 and message.channel != 9:
                onsets.append((now, message.note))
        if not onsets:
            continue
        first_note = onsets[0][0]
        bass = min(p for t, p in onsets if t < first_note + 60.0 / bpm * 4) % 12
        key = None
        if keys and len(set(keys[:2])) == 1:  # the opening key (say_what changes key later)
            text = keys[0]
            tonic = NOTE_NAMES.index(
                {"Db": "C#", "D#": "Eb", "Gb": "F#", "G#": "Ab", "A#": "Bb"}.get(text.rstrip("m"), text.rstrip("m"))
            )
            mode = "minor" if text.endswith("m") else "major"
            key = f"{NOTE_NAMES[tonic]} {mode}" if bass == tonic else None
        if split not in (None, split_of(piece)):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_bytes(data)
            audio = render(path, soundfont, sr, seconds, start=first_note)
        if len(audio) < 0.8 * seconds * sr:
            continue
        file = f"openmsx/{Path(name).stem}.wav"
        sf.write(out / file, audio, sr, subtype="PCM_16")
        rows.append({"id": piece, "file": file, "corpus": "openmsx", "genre": "pop/jazz (game music)",
                     "instrumentation": "composer's GM arrangement", "piece": piece, "bpm": round(bpm, 2), "key": key,
                     "meter": None, "split": split_of(piece), "seconds": len(audio) / sr})  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------------------------- main

TEMPO_RANGES = {"chorale": (60, 110), "classical": (66, 160), "string quartet": (66, 160), "dance tune": (84, 140),
                "folk song": (66, 126)}  # fmt: skip


def draw_bpm(
    rng: random.Random, genre_range: tuple[float, float], tempo_range: tuple[float, float] | None = None,
    scale: float = 1.0,
) -> float:  # fmt: skip
    """A piece's tempo: log-uniform in its genre's range, or uniform in ``tempo_range``; times ``scale``. Either way
    one number is drawn from ``rng``, so the rest of the piece's random choices (timing, velocities) stay the same."""
    if tempo_range is None:
        low, high = genre_range
        bpm = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        bpm = rng.uniform(*tempo_range)
    return round(bpm * scale, 1)


def build(out: Path, corpora=CORPORA, per_corpus: int = 500, seconds: float = 30.0, sr: int = 22050,
          soundfont: str = DEFAULT_SOUNDFONT, openmsx_deb: str | None = None, log=print,
          split: str | None = None, accents: bool = True, tempo_range: tuple[float, float] | None = None,
          tempo_scale: float = 1.0) -> list[dict]:  # fmt: skip
    """Render the corpora into ``out`` and write ``out/manifest.jsonl``; returns its rows. ``split`` (``"tune"`` or
    ``"test"``): render only that split's pieces (``per_corpus`` still counts the pieces read before the split).
    ``accents``: play the scores with the metric stress of DOWNBEAT_STRESS (OpenMSX keeps its composers' own).
    ``tempo_range``, ``tempo_scale``: how each piece's tempo is drawn (:func:`draw_bpm`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    synth = Synth(soundfont, sr)
    makers = {
        "chorales": (chorales, CHORALE_BANDS),
        "classical": (classical, CLASSICAL_BANDS),
        "folk": (folk, FOLK_BANDS),
    }
    for name in corpora:
        if name == "openmsx":
            rows += openmsx(openmsx_deb, out, soundfont, sr, seconds, split, tempo_range, tempo_scale)
            log(f"openmsx: {sum(r['corpus'] == 'openmsx' for r in rows)} excerpts")
            continue
        maker, bands = makers[name]
        pieces = maker(per_corpus if name != "classical" else min(per_corpus, 40))
        (out / name).mkdir(parents=True, exist_ok=True)
        for index, piece in enumerate(pieces):
            if split not in (None, split_of(piece.piece)):
                continue  # skipped after counting, so a piece keeps its number and instrumentation in either build
            rng = _rng(piece.piece)
            bpm = draw_bpm(rng, TEMPO_RANGES[piece.genre], tempo_range, tempo_scale)
            band = bands[index % len(bands)]
            ident = f"{name}/{index:03d}"
            audio = synth.render(piece_events(piece, bpm, band, seconds, rng, accents), INSTRUMENTATIONS[band], seconds)
            file = f"{ident}.wav"
            sf.write(out / file, audio, sr, subtype="PCM_16")
            rows.append({"id": ident, "file": file, "corpus": name, "genre": piece.genre, "instrumentation": band,
                         "piece": piece.piece, "bpm": bpm, "key": piece.key, "meter": piece.meter,
                         "split": split_of(piece.piece), "seconds": len(audio) / sr})  # fmt: skip
        log(f"{name}: {sum(r['corpus'] == name for r in rows)} excerpts")
    with open(out / "manifest.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return rows


def _tempo_range(text: str) -> tuple[float, float]:
    """``"50,200"`` -> (50.0, 200.0); argparse shows the message of a bad one."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not LOW,HIGH in bpm (e.g. 50,200)") from None
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 < LOW <= HIGH in bpm (LOW,HIGH, e.g. 50,200)")
    return low, high


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write the excerpts and manifest.jsonl into")
    parser.add_argument("--corpora", default=",".join(CORPORA), help="comma-separated subset of " + ", ".join(CORPORA))
    parser.add_argument("--per-corpus", type=int, default=500, help="pieces per corpus at most (classical: 40)")
    parser.add_argument("--split", choices=("tune", "test"), default=None, help="render only this split's pieces")
    parser.add_argument("--seconds", type=float, default=30.0, help="excerpt length")
    parser.add_argument("--sr", type=int, default=22050, help="sample rate of the written audio")
    parser.add_argument("--soundfont", default=DEFAULT_SOUNDFONT, help="General MIDI .sf2 file")
    parser.add_argument("--no-accents", action="store_true", help="play every note alike (no metric stress)")
    parser.add_argument(
        "--tempo-range",
        type=_tempo_range,
        default=None,
        help="LOW,HIGH: draw every tempo uniformly from this range (default: per genre, log-uniform)",
    )
    parser.add_argument("--tempo-scale", type=float, default=1.0, help="multiply every drawn tempo by this")
    parser.add_argument("--openmsx-deb", default=None, help="openttd-openmsx .deb (when the package is not installed)")
    args = parser.parse_args(argv)
    rows = build(
        args.out,
        args.corpora.split(","),
        args.per_corpus,
        args.seconds,
        args.sr,
        args.soundfont,
        args.openmsx_deb,
        split=args.split,
        accents=not args.no_accents,
        tempo_range=args.tempo_range,
        tempo_scale=args.tempo_scale,
    )
    return {"excerpts": len(rows), "out": str(args.out)}


if __name__ == "__main__":
    print(json.dumps(main()))
