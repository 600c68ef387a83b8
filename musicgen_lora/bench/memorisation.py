"""How fast the memorisation check is: index hours of training codes, score many generated clips.

    python -m musicgen_lora.bench.memorisation [--hours 10] [--clips 100] [--repeat 3] [--melody] [--out FILE.json]

The training codes are synthetic songs with the structure that makes real codes hard to index: 4 codebooks at 50
frames/s, bars of 2 s that repeat within a song (the coarse codebook mostly the same, the fine ones varying, as
EnCodec codes of a repeated bar do), and stretches of digital silence (one frame repeated). The generated clips
(10-30 s) are a third copies of a training excerpt with 5 % of the frames changed, a third remixes (bars of one song
in another order), a third new songs; the benchmark checks that the scores tell them apart. ``--melody`` also times
the chroma search over the same hours (random chroma at 10 frames/s; the EnCodec decoding that produces the
training audio in ``evaluate.py`` is not included). Times are the best and the median of ``--repeat`` runs.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config.parsing import OptionsParser
from ..errors import exit_on_user_error
from ..memorisation.melody import CHROMA_RATE, MelodyIndex
from ..train.copy_score import CodeIndex

FRAME_RATE = 50
BAR_FRAMES = 100  # 2 s bars (120 bpm, 4/4)


def synthetic_song(rng: np.random.Generator, frames: int, codebooks: int = 4, vocab: int = 2048) -> np.ndarray:
    """(K, frames) codes of one synthetic song: 4 bar patterns repeated with variation, some silence."""
    patterns = rng.integers(0, vocab, (4, codebooks, BAR_FRAMES))
    bars = [patterns[i].copy() for i in rng.integers(0, 4, frames // BAR_FRAMES + 1)]
    song = np.concatenate(bars, axis=1)[:, :frames]
    # a repeated bar encodes a little differently each time: the finer the codebook, the more it varies
    for k in range(1, codebooks):
        vary = rng.random(frames) < 0.1 * k
        song[k, vary] = rng.integers(0, vocab, int(vary.sum()))
    silence = rng.integers(0, max(1, frames - 250))
    song[:, silence : silence + 250] = np.arange(codebooks)[:, None]  # 5 s of digital silence: one frame repeated
    return song.astype(np.int16)


def _clips(rng: np.random.Generator, songs: list[np.ndarray], count: int) -> tuple[list[np.ndarray], list[str]]:
    """``count`` generated clips of 10-30 s: copies (5 % of frames changed), remixes and new songs, in turn."""
    clips, kinds = [], []
    for i in range(count):
        frames = int(rng.integers(10, 31)) * FRAME_RATE
        kind = ("copy", "remix", "new")[i % 3]
        song = songs[int(rng.integers(len(songs)))]
        if kind == "copy":
            start = int(rng.integers(0, song.shape[1] - frames))
            clip = song[:, start : start + frames].copy()
            changed = rng.random(frames) < 0.05
            clip[int(rng.integers(clip.shape[0])), changed] ^= 1
        elif kind == "remix":
            bars = song[:, : song.shape[1] // BAR_FRAMES * BAR_FRAMES].reshape(song.shape[0], -1, BAR_FRAMES)
            order = rng.permutation(bars.shape[1])[: frames // BAR_FRAMES + 1]
            clip = bars[:, order].reshape(song.shape[0], -1)[:, :frames]
        else:
            clip = synthetic_song(rng, frames)
        clips.append(clip)
        kinds.append(kind)
    return clips, kinds


def _timed(repeat: int, action: Any) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - started)
    return times, result


def _stats(times: list[float]) -> dict[str, float]:
    return {"best_s": round(min(times), 3), "median_s": round(statistics.median(times), 3)}


def run_benchmark(
    hours: float = 10.0,
    clips: int = 100,
    repeat: int = 3,
    melody: bool = False,
    seed: int = 0,
    song_seconds: float = 180.0,
) -> dict[str, Any]:
    """Build the code index over ``hours`` of synthetic songs and score ``clips`` clips; see the module docstring.

    Returns:
        Build and query times (best and median of ``repeat``), peak memory of the build, index size, the scores by
        kind of clip, and the load average at the start.
    """
    rng = np.random.default_rng(seed)
    song_frames = int(song_seconds * FRAME_RATE)
    songs = [synthetic_song(rng, song_frames) for _ in range(max(1, round(hours * 3600 / song_seconds)))]
    queries, kinds = _clips(rng, songs, clips)
    load = os.getloadavg()
    tracemalloc.start()
    build_times, index = _timed(repeat, lambda: CodeIndex(songs, frame_rate=FRAME_RATE))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    query_times, matches = _timed(repeat, lambda: [index.match(q) for q in queries])
    scores: dict[str, list[float]] = {}
    for kind, match in zip(kinds, matches, strict=False):
        scores.setdefault(kind, []).append(match.score)
    result: dict[str, Any] = {
        "training_hours": round(sum(s.shape[1] for s in songs) / FRAME_RATE / 3600, 2),
        "training_frames": int(sum(s.shape[1] for s in songs)),
        "clips": clips,
        "clip_seconds_total": round(sum(q.shape[1] for q in queries) / FRAME_RATE, 1),
        "build": _stats(build_times),
        "query_all_clips": _stats(query_times),
        "index_mb": round(index.nbytes / 2**20, 1),
        "build_peak_mb": round(peak / 2**20, 1),
        "copy_score_by_kind": {k: {"min": round(min(v), 3), "max": round(max(v), 3)} for k, v in scores.items()},
        "loadavg_at_start": [round(x, 2) for x in load],
        "repeat": repeat,
    }
    if melody:
        result["melody"] = _melody_benchmark(rng, hours, song_seconds, queries, repeat)
    return result


def _melody_benchmark(
    rng: np.random.Generator, hours: float, song_seconds: float, queries: list[np.ndarray], repeat: int
) -> dict[str, Any]:
    """The chroma search over ``hours`` of random chroma, for clips as long as ``queries``."""
    index = MelodyIndex()
    chroma_frames = int(song_seconds * CHROMA_RATE)
    for _ in range(max(1, round(hours * 3600 / song_seconds))):
        index.add_chroma(rng.random((chroma_frames, 12), dtype=np.float32))
    lengths = sorted({int(q.shape[1] / FRAME_RATE * CHROMA_RATE) for q in queries})
    # one query per distinct length first (each length lays the training chroma out once), then all clips
    prepare_times, _ = _timed(1, lambda: [index.match_chroma(rng.random((n, 12))) for n in lengths])
    clip_lengths = [int(q.shape[1] / FRAME_RATE * CHROMA_RATE) for q in queries]
    by_length = sorted(clip_lengths)  # grouped by length, as an evaluation renders them (one duration)
    query_times, _ = _timed(repeat, lambda: [index.match_chroma(rng.random((n, 12))) for n in by_length])
    same_length = [clip_lengths[0]] * len(clip_lengths)
    same_times, _ = _timed(repeat, lambda: [index.match_chroma(rng.random((n, 12))) for n in same_length])
    return {
        "chroma_frames": int(sum(len(c) for c in index.chroma)),
        "first_query_per_length_s": round(prepare_times[0] / max(1, len(lengths)), 3),
        "query_all_clips_mixed_lengths": _stats(query_times),
        "query_all_clips_one_length": _stats(same_times),
        "distinct_lengths": len(lengths),
        "index_mb": round(index.nbytes / 2**20, 1),
    }


@dataclass
class MemorisationBenchOptions:
    """The options of ``python -m musicgen_lora.bench.memorisation``."""

    hours: float = field(default=10.0, metadata={"help": "hours of training codes to index"})
    clips: int = field(default=100, metadata={"help": "generated clips (10-30 s) to score"})
    repeat: int = field(default=3, metadata={"help": "runs of each timing (best and median reported)"})
    melody: bool = field(default=False, metadata={"help": "also time the chroma search"})
    seed: int = field(default=0, metadata={"help": "random seed of the synthetic codes, chroma and clips"})
    out: str | None = field(default=None, metadata={"help": "also write the result to this JSON file"})


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = OptionsParser(
        MemorisationBenchOptions, "python -m musicgen_lora.bench.memorisation", description=__doc__.split("\n\n")[0]
    )
    with exit_on_user_error(argv):
        (args,) = parser.parse(argv)
    result = run_benchmark(args.hours, args.clips, max(1, args.repeat), args.melody, args.seed)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
