"""The music21 scores behind ``bench/key_tempo_corpora.py`` (its docstring describes the corpora): which pieces, their
metre, their notes placed within their bars, and the key each states.

Key truth is checked twice: the stated tonic must be the final bass note, and the stated mode must be the one whose
third (major or minor above the tonic) sounds at least twice as long as the other. The Essen songs' ``K:`` field
names only the final note (accidentals are written out), so their mode comes from the thirds alone; a tune whose
thirds do not decide is left out.

Split: every piece is assigned ``tune`` (60 %) or ``test`` (40 %) by a hash of its name; estimators are tuned on
``tune`` and reported on both.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
CLASSICAL_FOLDERS = (
    "mozart", "haydn", "beethoven", "schumann_robert", "schumann_clara", "chopin", "joplin", "schubert", "handel",
    "corelli", "cpebach", "beach", "liliuokalani", "johnson_j_r", "weber", "verdi", "leadSheet",
)  # fmt: skip


@dataclass
class Note:
    start: float  # quarter notes (music21 offsets)
    length: float  # quarter notes
    pitch: int  # MIDI
    part: int  # 0 = top
    bar_position: float = 0.0  # quarter notes after the downbeat of the note's bar (a pickup's notes: late in it)


@dataclass
class Piece:
    piece: str
    corpus: str
    genre: str
    notes: list[Note]
    key: str | None
    meter: str
    beat_quarters: float  # the truth's beat in quarter notes (1 or 1.5)
    bar_quarters: float
    parts: int = 1
    extra: dict = field(default_factory=dict)


def split_of(piece: str) -> str:
    """``tune`` for 60 % of the pieces, ``test`` for the rest, by a hash of the name (stable across runs)."""
    return "test" if int(hashlib.sha1(piece.encode()).hexdigest(), 16) % 10 < 4 else "tune"


def metre_of(num: int, den: int) -> tuple[str, float, float] | None:
    """(``"6/8"``, beat in quarter notes, bar in quarter notes) of the time signature num/den, or None for metres
    left out.

    The beat is the note value of the denominator in simple metres (the half note in 2/2, 3/2, 4/2: old and
    alla-breve notation, where the half note is what is counted) and the dotted note in compound ones (the dotted
    quarter in 6/8, 9/8, 12/8; the dotted half in 6/4).
    """
    bar = num * 4.0 / den
    if den in (2, 4) and num in (2, 3, 4):
        return f"{num}/{den}", 4.0 / den, bar
    if num in (6, 9, 12) and den in (4, 8):
        return f"{num}/{den}", 3 * 4.0 / den, bar
    return None


def _metre(score) -> tuple[str, float, float] | None:
    """:func:`metre_of` the score's first time signature (None without one)."""
    from music21 import meter

    ts = score.recurse().getElementsByClass(meter.TimeSignature).first()
    return None if ts is None else metre_of(ts.numerator, ts.denominator)


def _notes(score) -> list[Note]:
    from music21 import stream

    notes = []
    for index, part in enumerate(score.parts if score.parts else [score]):
        part = part.stripTies()
        # each measure's start and its left padding (a pickup bar's missing beats), to place notes within their bar
        measures = [(float(m.offset), float(m.paddingLeft)) for m in part.getElementsByClass(stream.Measure)]
        starts = [start for start, _ in measures]
        for element in part.flatten().notes:
            length = float(element.quarterLength)
            if length <= 0:  # grace notes
                continue
            offset = float(element.offset)
            measure = bisect.bisect_right(starts, offset + 1e-9) - 1
            position = offset - measures[measure][0] + measures[measure][1] if measure >= 0 else offset
            for p in element.pitches:
                notes.append(Note(offset, length, int(p.midi), index, position))
    return sorted(notes, key=lambda n: (n.start, n.part))


def _bass_pitch_class(notes: list[Note], first: bool) -> int:
    edge = notes[0].start if first else max(n.start for n in notes)
    chord = (
        [n.pitch for n in notes if abs(n.start - edge) < 1e-6]
        if first
        else [n.pitch for n in notes if n.start <= edge + 1e-6 and n.start + n.length >= edge - 1e-6]
    )
    return min(chord) % 12


def _mode_from_thirds(notes: list[Note], tonic: int) -> str | None:
    """``"major"`` or ``"minor"`` by which third above the tonic sounds longer (at least twice as long as the other),
    None when neither does (a modal or ambiguous tune)."""
    major = sum(n.length for n in notes if (n.pitch - tonic) % 12 == 4)
    minor = sum(n.length for n in notes if (n.pitch - tonic) % 12 == 3)
    if major >= 2 * minor and major > 0:
        return "major"
    if minor >= 2 * major and minor > 0:
        return "minor"
    return None


def _stated_key(score, notes: list[Note], need_first: bool, tonic_only: bool = False) -> str | None:
    """The key the score states, checked against its bass and its thirds (see the module docstring); None when
    unclear.

    Args:
        tonic_only: the key field names the tonic only (the Essen collection: ``K:E`` with the accidentals written
            out, so a tune in E minor reads ``K:E``); the mode then comes from the thirds alone.
    """
    from music21 import key

    signature = score.recurse().getElementsByClass(key.KeySignature).first()
    if signature is None or not notes:
        return None
    last = _bass_pitch_class(notes, first=False)
    first = _bass_pitch_class(notes, first=True)
    if tonic_only and isinstance(signature, key.Key):
        tonic = signature.tonic.pitchClass
        mode = _mode_from_thirds(notes, tonic)
        ok = mode is not None and last == tonic and (first == tonic or not need_first)
        return f"{NOTE_NAMES[tonic]} {mode}" if ok else None
    if isinstance(signature, key.Key) and signature.mode in ("major", "minor"):
        candidates = [(signature.tonic.pitchClass, signature.mode)]
    elif isinstance(signature, key.Key):
        return None  # a church mode
    else:
        candidates = [
            (signature.asKey("major").tonic.pitchClass, "major"),
            (signature.asKey("minor").tonic.pitchClass, "minor"),
        ]
    for tonic, mode in candidates:
        # the thirds must agree with the stated mode: a tune whose minor third dominates is not "major"
        if last == tonic and (first == tonic or not need_first) and _mode_from_thirds(notes, tonic) == mode:
            return f"{NOTE_NAMES[tonic]} {mode}"
    return None


def _corpus_paths(folder: str) -> list[str]:
    from music21 import common, corpus

    root = Path(str(common.getCorpusFilePath()))
    keep = []
    for path in corpus.getCorePaths():
        relative = Path(str(path)).relative_to(root)
        if relative.parts[0] == folder:
            keep.append(str(relative))
    return sorted(keep)


def chorales(limit: int) -> list[Piece]:
    from music21 import corpus

    pieces = []
    for path in _corpus_paths("bach"):
        if len(pieces) >= limit:
            break
        name = Path(path).stem
        if not name.startswith("bwv") or not path.endswith((".mxl", ".xml")):
            continue
        score = corpus.parse(path)
        metre = _metre(score)
        if len(score.parts) != 4 or metre is None:
            continue
        notes = _notes(score)
        key = _stated_key(score, notes, need_first=False)
        if key:
            pieces.append(Piece(f"bach/{name}", "chorales", "chorale", notes, key, *metre, parts=4))
    return pieces


def classical(limit: int) -> list[Piece]:
    from music21 import corpus

    pieces = []
    # round-robin over the composers, so that a small limit is not all Mozart
    lists = [_corpus_paths(folder) for folder in CLASSICAL_FOLDERS]
    longest = max(map(len, lists))
    paths = [p for row in zip(*[x + [None] * (longest - len(x)) for x in lists], strict=True) for p in row if p]
    seen = set()
    for path in paths:
        stem = str(Path(path).with_suffix(""))
        if len(pieces) >= limit or stem in seen:
            continue
        seen.add(stem)  # the same movement in .krn and .mxl: once
        try:
            score = corpus.parse(path)
        except Exception:  # a few corpus files do not parse in this music21 version
            continue
        if not hasattr(score, "parts"):
            continue
        metre = _metre(score)
        notes = _notes(score)
        if metre is None or len(notes) < 50:
            continue
        key = _stated_key(score, notes, need_first=True)
        if key:
            genre = (
                "string quartet"
                if len(score.parts) == 4 and path.split("/")[0] in ("mozart", "haydn", "beethoven")
                else "classical"
            )
            pieces.append(Piece(stem, "classical", genre, notes, key, *metre, parts=max(1, len(score.parts))))
    return pieces


def folk(limit: int) -> list[Piece]:
    from music21 import corpus

    # 40 % American/Scottish dance tunes, 27 % Irish ones, a third German songs
    sources = [
        ("ryansMammoth", "dance tune", 0.4),
        ("oneills1850", "dance tune", 0.27),
        ("essenFolksong", "folk song", 0.33),
    ]
    pieces = []
    for folder, genre, share in sources:
        quota, count = max(1, round(limit * share)), 0
        paths = _corpus_paths(folder)
        for path in paths[:: max(1, len(paths) // quota)] if folder == "ryansMammoth" else paths:
            if count >= quota:
                break
            parsed = corpus.parse(path)
            scores = parsed.scores if hasattr(parsed, "scores") else [parsed]
            for number, score in enumerate(scores[:25]):
                if count >= quota:
                    break
                metre = _metre(score)
                notes = _notes(score)
                if metre is None or len(notes) < 24:
                    continue
                key = _stated_key(score, notes, need_first=False, tonic_only=folder == "essenFolksong")
                if key:
                    title = score.metadata.title if score.metadata and score.metadata.title else str(number)
                    name = f"{folder}/{Path(path).stem}/{title}"
                    pieces.append(Piece(name, "folk", genre, notes, key, *metre))
                    count += 1
    return pieces
