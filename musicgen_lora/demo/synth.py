"""Procedural demo-music corpus: short, captioned, genre-styled clips with known tempo and key.

Every clip is synthesised from scratch with numpy and scipy (no samples, no models, no network), so a fine-tuning
corpus with exact ground truth can be made anywhere in a second or two::

    python -m musicgen_lora.synth OUT_DIR --clips 16 --seconds 8 --seed 0 [--sample_rate 32000]

writes ``OUT_DIR/clip_000.wav ...`` (mono, 16-bit PCM) and ``OUT_DIR/metadata.jsonl``, one JSON object per line::

    {"file_name": "clip_000.wav", "text": "lofi hip hop, 84 bpm, A minor, piano, mellow, vinyl crackle",
     "bpm": 84, "key": "A minor", "genre": "lofi hip hop", "instrument": "piano"}

(the layout of a Hugging Face ``audiofolder``). Clip ``i`` uses genre ``genres[i % len(genres)]``; its tempo is
drawn from the genre's range and its key from all 24 major/minor keys. Output is deterministic: the same
arguments give byte-identical files, and clip ``i`` does not depend on how many clips are requested.

This module writes the corpus and is its command line; each clip is a small arrangement on a 16-step-per-bar grid
(drums, bass, a four-chord progression, a melody or arpeggio lead) in a genre's timbres and mix, made by
:func:`.render.render_clip` from the tables of :mod:`.styles`, the notes of :mod:`.composition` and the voices of
:mod:`.instruments`."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import CommandLineParser, UserError, exit_on_user_error
from .composition import KEYS
from .render import check_sample_rate, check_seconds, clip_samples, render_clip
from .styles import GENRES, genre_style


def _check_count(name: str, value: int, minimum: int) -> int:
    """``value`` as an int >= ``minimum``; ValueError naming ``name`` otherwise."""
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

    Clip ``i`` has genre ``genres[i % len(genres)]`` (default: every genre in :data:`.styles.GENRES`), a tempo drawn
    from that genre's range and a key drawn from :data:`.composition.KEYS`, all from a random stream derived from
    ``(seed, i)`` only. Existing files with the same names are overwritten; other files are left alone.
    """
    clips = _check_count("clips", clips, 1)
    seed = _check_count("seed", seed, 0)
    seconds = check_seconds(seconds)
    sr = check_sample_rate(sample_rate)
    clip_samples(seconds, sr)  # at least one sample, checked before any file is written
    genres = list(GENRES) if genres is None else list(genres)
    if not genres:
        raise ValueError("genres must name at least one genre")
    for genre in genres:
        genre_style(genre)  # every name checked before any file is written

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


def _build_parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(
        prog="python -m musicgen_lora.synth",
        description="Write a procedural demo-music corpus (WAV clips + metadata.jsonl with captions and "
        "ground-truth bpm/key/genre/instrument) for smoke-testing fine-tuning.",
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
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the clips and metadata.jsonl of an earlier corpus in out_dir"
    )
    return parser


def _check_out_dir(out: Path, overwrite: bool) -> None:
    """Raises UserError when ``out`` is a file, or holds files a corpus writes (metadata.jsonl, clip_NNN.wav) that
    ``overwrite`` does not allow to replace."""
    if out.exists() and not out.is_dir():
        raise UserError(f"out_dir '{out}' is a file, not a folder; choose a folder (it is created if missing)")
    earlier = sorted(p.name for p in out.glob("clip_*.wav")) + ["metadata.jsonl"] * (out / "metadata.jsonl").exists()
    if earlier and not overwrite:
        raise UserError(
            f"out_dir '{out}' already holds {', '.join(earlier[:3])}, which a corpus writes; choose a new or empty "
            "folder, or add --overwrite to replace them"
        )


def main(argv: list[str] | None = None) -> list[dict]:
    """Command-line entry point; returns the metadata rows. Errors exit with one ``error: ...`` line."""
    with exit_on_user_error(argv):
        args = _build_parser().parse_args(argv)
        genres = [g.strip() for g in args.genres.split(",") if g.strip()]
        started = time.perf_counter()
        _check_out_dir(Path(args.out_dir), args.overwrite)
        try:
            rows = synthesize_corpus(args.out_dir, args.clips, args.seconds, args.seed, args.sample_rate, genres)
        except ValueError as err:
            raise UserError(str(err)) from None
        except OSError as err:
            raise UserError(
                f"cannot write to '{args.out_dir}' ({err.strerror}); choose a folder you can write to"
            ) from None
    counts = {g: sum(r["genre"] == g for r in rows) for g in dict.fromkeys(r["genre"] for r in rows)}
    summary = ", ".join(f"{g} x{c}" for g, c in counts.items())
    print(
        f"wrote {len(rows)} clips of {args.seconds:g} s at {args.sample_rate} Hz ({summary}) "
        f"to {args.out_dir} in {time.perf_counter() - started:.2f} s"
    )
    return rows
