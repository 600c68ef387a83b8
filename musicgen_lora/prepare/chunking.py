"""Cut long tracks into chunks of at most ``max_duration_in_seconds``, with an explicit policy for the tail.

Chunking is opt-in (``chunk_long_tracks: true``). Without it, a long track stays one example and every training
step takes a random window of it (see :mod:`musicgen_lora.train.collator`). With it, each track becomes consecutive
chunks
that each appear once per epoch; the last, shorter piece of a track (its *tail*) follows ``tail_policy``:

* ``merge`` (default): the tail joins the previous chunk when that stays within the maximum; since every previous
  chunk is already full length, in practice the last chunk is moved back so that it ends at the track's end and is
  full length, overlapping the chunk before it. Every chunk is full length and no audio is lost (some is seen twice).
* ``drop``: a tail shorter than ``min_duration_in_seconds`` is dropped; a longer one is kept as a shorter chunk.
* ``pad``: a tail of at least ``min_duration_in_seconds`` is padded to full length with the EnCodec codes of digital
  silence (the model sees the track end in silence); a shorter one is dropped (a chunk of almost only silence
  teaches nothing).

A track no longer than the maximum is one chunk; a track shorter than the minimum gives no chunk. Chunking works on
the cached codes (50 frames per second), so changing the policy never re-encodes. Each chunk keeps the track it came
from (``source``) and where it starts in it (``offset_seconds``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import datasets
import numpy as np

from ..config.arguments import TAIL_POLICIES


@dataclass(frozen=True)
class Chunk:
    """``length`` frames of the track from frame ``start``, followed by ``pad`` frames of silence."""

    start: int
    length: int
    pad: int = 0


def plan_chunks(frames: int, max_frames: int, min_frames: int, policy: str) -> list[Chunk]:
    """Chunks of a track of ``frames`` frames: consecutive full-length chunks, then the tail as ``policy`` says.

    Raises:
        ValueError: unknown policy or non-positive max_frames (config validation prevents both).
    """
    if policy not in TAIL_POLICIES:
        raise ValueError(f"unknown tail policy {policy!r}")
    if max_frames < 1:
        raise ValueError("max_frames must be >= 1")
    min_frames = min(max(min_frames, 1), max_frames)
    if frames < min_frames:
        return []
    if frames <= max_frames:
        return [Chunk(0, frames)]
    full = frames // max_frames
    chunks = [Chunk(i * max_frames, max_frames) for i in range(full)]
    tail = frames - full * max_frames
    if tail == 0:
        return chunks
    if policy == "merge":
        if chunks[-1].length + tail <= max_frames:  # never true for full chunks; kept for clarity of the rule
            last = chunks.pop()
            chunks.append(Chunk(last.start, last.length + tail))
        else:  # overlap backwards: a full-length last chunk ending at the track's end
            chunks.append(Chunk(frames - max_frames, max_frames))
    elif tail >= min_frames:
        chunks.append(Chunk(full * max_frames, tail, max_frames - tail if policy == "pad" else 0))
    return chunks


@dataclass(frozen=True)
class ChunkSettings:
    """How tracks are cut: chunks of at most ``max_frames`` codec frames (``frame_rate`` per second), tails by
    ``policy`` (see :func:`plan_chunks`; ``pad`` pads with ``silence_codes``, (K, >= max_frames) codes of silence),
    melody chroma cut along at ``chroma_ratio`` chroma frames per code frame, and chunks quieter than
    ``silence_threshold_db`` (by their :func:`level_db`) left out."""

    max_frames: int
    min_frames: int
    policy: str
    frame_rate: float
    silence_codes: np.ndarray | None = None
    chroma_ratio: float | None = None
    silence_threshold_db: float | None = None

    def loud_chunks(self, frames: int, levels: list[float] | None) -> tuple[list[Chunk], int]:
        """The chunks of a track of ``frames`` frames that are loud enough, and how many were too quiet."""
        chunks = plan_chunks(frames, self.max_frames, self.min_frames, self.policy)
        if levels is None or self.silence_threshold_db is None:
            return chunks, 0
        loud = [c for c in chunks if level_db(levels, c.start, c.length) >= self.silence_threshold_db]
        return loud, len(chunks) - len(loud)


def chunk_dataset(
    dataset: datasets.Dataset, settings: ChunkSettings, levels: list[list[float]] | None = None
) -> datasets.Dataset:
    """Replace each track (row with ``codes``, ``text``, ``source``, maybe ``chroma``) by its chunks.

    Args:
        levels: each track's :func:`frame_levels`, for ``settings.silence_threshold_db``.

    Returns:
        A dataset with the same columns (each chunk keeps its track's ``source`` and caption) plus
        ``offset_seconds`` (float).
    """
    if settings.policy == "pad" and settings.silence_codes is None:
        raise ValueError("the pad policy needs silence_codes")

    def split_rows(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out: dict[str, list] = {name: [] for name in [*batch, "offset_seconds"]}
        for row, index in enumerate(indices):
            codes = batch["codes"][row]
            chunks, _ = settings.loud_chunks(len(codes[0]), levels[index] if levels is not None else None)
            for chunk in chunks:
                piece = [list(c[chunk.start : chunk.start + chunk.length]) for c in codes]
                if chunk.pad:
                    piece = [p + settings.silence_codes[k, : chunk.pad].tolist() for k, p in enumerate(piece)]
                for name in batch:
                    if name == "codes":
                        out[name].append(piece)
                    elif name == "chroma":
                        window = chroma_window(batch["chroma"][row], chunk.start, chunk.length, settings.chroma_ratio)
                        out[name].append(window)
                    else:
                        out[name].append(batch[name][row])
                out["offset_seconds"].append(chunk.start / settings.frame_rate)
        return out

    features = dataset.features.copy()
    features["offset_seconds"] = datasets.Value("float32")
    return dataset.map(
        split_rows,
        batched=True,
        with_indices=True,
        remove_columns=dataset.column_names,
        features=features,
        desc="Cutting tracks into chunks",
    )


def plan_summary(
    track_frames: list[int], settings: ChunkSettings, levels: list[list[float]] | None = None
) -> dict[str, int]:
    """What :func:`chunk_dataset` does to tracks of these lengths, in counts and frames (for the data report)."""
    summary = {"chunks": 0, "silent_chunks": 0, "dropped_tail_frames": 0, "padded_frames": 0, "overlap_frames": 0}
    for index, frames in enumerate(track_frames):
        chunks = plan_chunks(frames, settings.max_frames, settings.min_frames, settings.policy)
        covered = len({f for c in chunks for f in range(c.start, c.start + c.length)}) if chunks else 0
        summary["dropped_tail_frames"] += frames - covered
        summary["overlap_frames"] += sum(c.length for c in chunks) - covered
        loud, silent = settings.loud_chunks(frames, levels[index] if levels is not None else None)
        summary["silent_chunks"] += silent
        summary["chunks"] += len(loud)
        summary["padded_frames"] += sum(c.pad for c in loud)
    return summary


def split_tracks(count: int, percentage: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic (by ``seed``) split of ``count`` tracks: (train indices, eval indices), both sorted.

    ``percentage`` of the tracks (rounded, at least one) go to evaluation; at least one track stays for training.
    """
    order = np.random.default_rng(seed).permutation(count)
    n_eval = min(count - 1, max(1, round(count * percentage / 100)))
    return sorted(int(i) for i in order[n_eval:]), sorted(int(i) for i in order[:n_eval])


def frame_levels(audio: np.ndarray, sr: int, frame_rate: float) -> list[float]:
    """Mean square of the (mono) audio in each codec frame (``frame_rate`` per second), for finding silence."""
    mono = np.asarray(audio, dtype=np.float64)
    mono = mono.mean(axis=0) if mono.ndim == 2 else mono
    hop = sr / frame_rate
    count = max(1, math.ceil(len(mono) / hop))
    edges = np.minimum(np.round(np.arange(count + 1) * hop).astype(int), len(mono))
    squares = np.concatenate([[0.0], np.cumsum(mono**2)])
    sizes = np.maximum(edges[1:] - edges[:-1], 1)
    return [float(f"{v:.6g}") for v in (squares[edges[1:]] - squares[edges[:-1]]) / sizes]


def level_db(levels: list[float], start: int, length: int) -> float:
    """RMS level in dBFS (a full-scale sine: -3 dB) of frames [start, start + length) of a track's frame levels."""
    window = levels[start : start + length] or levels[-1:]
    return 10.0 * math.log10(max(float(np.mean(window)), 1e-20))


def chroma_window(chroma: list, start: int, frames: int, ratio: float) -> list:
    """The chroma frames that span code frames [start, start + frames) (at least one)."""
    first = min(int(start * ratio), len(chroma) - 1)
    return chroma[first : first + max(1, math.ceil(frames * ratio))]


def fixed_windows(
    dataset: datasets.Dataset, max_frames: int, min_frames: int, chroma_ratio: float | None = None
) -> datasets.Dataset:
    """Split clips into consecutive windows of ``max_frames`` (evaluation must not depend on random crops)."""

    def split_rows(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {name: [] for name in batch}
        for index, (codes, text) in enumerate(zip(batch["codes"], batch["text"], strict=False)):
            frames = len(codes[0])
            for start in range(0, frames, max_frames):
                if min(max_frames, frames - start) >= min_frames:
                    out["codes"].append([row[start : start + max_frames] for row in codes])
                    out["text"].append(text)
                    if "chroma" in batch:
                        out["chroma"].append(chroma_window(batch["chroma"][index], start, max_frames, chroma_ratio))
                    for name in batch.keys() - {"codes", "text", "chroma"}:  # e.g. a chunk's source and offset
                        out[name].append(batch[name][index])
        return out

    return dataset.map(split_rows, batched=True, remove_columns=dataset.column_names, desc="Cutting evaluation windows")
