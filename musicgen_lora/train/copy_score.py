"""Copy score: how much of a generated clip's codes lines up with one training example.

**Copy score** (:class:`CodeIndex`), on the EnCodec codes. A *frame* is the K codes of one 20 ms step (all codebooks
together); a *verbatim run* is a stretch of consecutive generated frames equal to consecutive frames of one training
example. For a generated clip of ``T`` frames:

- ``copy_score_exact`` = (longest verbatim run) / ``T``;
- ``copy_score`` = (the most frames of the clip equal to their aligned training frame within one *copy*) / ``T``.
  An alignment is one (training example, training frame - generated frame) pair; a copy is a stretch of the clip,
  on one alignment, that starts and ends with verbatim runs of at least ``shingle_frames`` frames and in which no
  more than ``max_gap_frames`` consecutive frames differ from the aligned training frames. Differing frames (a
  sampled token off the memorised path) break a verbatim run but not the alignment, so a copy with isolated
  differences still scores near 1, while a clip that reuses frames in another order (shuffled bars, a drum hit
  here and there) scores only its longest run.

Both are in [0, 1]; 1 means the whole clip is a copy. Runs shorter than ``shingle_frames`` do not start or end a
copy (they are no evidence of copying), nor do runs of one repeated frame (digital silence encodes to one frame
repeated, which every model produces and every corpus holds); inside a copy, such frames count when they equal the
aligned training frames, before the first and after the last run they do not. The index hashes every
``shingle_frames``-frame window (a *shingle*) of the training codes to 64 bits and sorts them, so a query is a
binary search per generated frame: 10 hours of training codes index in about a second and a clip scores in
milliseconds (:mod:`musicgen_lora.bench.memorisation`). Two different shingles share a hash with probability about
2^-64.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

DEFAULT_SHINGLE_FRAMES = 4  # 80 ms: shorter runs are not evidence of copying; longer ones break at every edit
DEFAULT_MAX_GAP_FRAMES = 8  # up to 160 ms of differing frames between two runs of one copy
DEFAULT_MAX_OCCURRENCES = 64  # alignments kept per shingle (a loop repeated 90 times is still found, on 64)
# A clip at or above this copy_score is reported as a copy. Measured on the tiny model (tests/memorisation): an adapter
# trained to memorise one clip scores 0.94-1.0 on it from its 50th step, the base model and adapters trained normally
# on 4 and 8 clips 0.0. 0.5 means half of the clip lines up with one training clip: far from style.
DEFAULT_COPY_THRESHOLD = 0.5

# splitmix64's finaliser: a bijection of 64-bit integers in which every input bit changes about half the output bits
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def frame_hashes(frames: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each frame of ``frames`` (T, K) integer codes: (T,) uint64."""
    frames = np.asarray(frames)
    hashes = np.zeros(len(frames), dtype=np.uint64)
    for k in range(frames.shape[1]):  # chained, so the order of the codebooks matters
        hashes = _mix(hashes ^ frames[:, k].astype(np.uint16).astype(np.uint64))
    return hashes


def shingle_hashes(hashes: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every window of ``length`` consecutive frame hashes, and whether the window is informative.

    Returns:
        ``(keys, informative)``, both of ``len(hashes) - length + 1`` entries (0 when too short); a window of one
        frame repeated (digital silence, a held stationary sound) is not informative.
    """
    count = len(hashes) - length + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=bool)
    keys = hashes[:count].copy()
    constant = np.ones(count, dtype=bool)
    for j in range(1, length):
        keys = _mix(keys ^ hashes[j : j + count])
        constant &= hashes[j : j + count] == hashes[:count]
    return keys, ~constant


@dataclass(frozen=True)
class CopyMatch:
    """The copy found for one generated clip (see the module docstring for the definitions).

    Frames count code frames (``frame_rate`` per second). ``example`` is the training row, ``source`` its file
    name as in the dataset (None when the dataset has no ``source`` column); both None when nothing matched.
    """

    frames: int
    copied_frames: int = 0
    longest_run_frames: int = 0
    example: int | None = None
    source: str | None = None
    clip_start_frame: int = 0  # where the copy starts in the generated clip
    train_start_frame: int = 0  # where it starts in the training example
    span_frames: int = 0  # from the first to the last copied frame, differing frames included
    example_offset_seconds: float = 0.0  # where the training example starts in its file (chunked data)
    frame_rate: float = 50.0

    @property
    def score(self) -> float:
        """``copy_score``: copied frames on the best alignment / clip frames, in [0, 1]."""
        return self.copied_frames / self.frames if self.frames else 0.0

    @property
    def exact_score(self) -> float:
        """``copy_score_exact``: longest verbatim run / clip frames, in [0, 1]."""
        return self.longest_run_frames / self.frames if self.frames else 0.0

    @property
    def offset_seconds(self) -> float:
        """Where the copied excerpt starts in the training file, in seconds."""
        return self.example_offset_seconds + self.train_start_frame / self.frame_rate

    def record(self) -> dict[str, Any]:
        """The per-clip fields of ``comparison_results.jsonl``."""
        found = self.example is not None
        return {
            "copy_score": round(self.score, 4),
            "copy_score_exact": round(self.exact_score, 4),
            "copied_frames": self.copied_frames,
            "copy_training_index": self.example,
            "copy_training_file": self.source,
            "copy_offset_seconds": round(self.offset_seconds, 3) if found else None,
            "copy_clip_start_seconds": round(self.clip_start_frame / self.frame_rate, 3) if found else None,
            "copy_span_seconds": round(self.span_frames / self.frame_rate, 3) if found else None,
        }


def _examples_of(
    dataset: Any, limit: int | None = None
) -> tuple[list[np.ndarray], list[str] | None, list[float] | None]:
    """(K, T) codes, ``source`` and ``offset_seconds`` of each row of a ``datasets.Dataset`` with a ``codes`` column,
    read straight from its Arrow table (no Python list per code, so 10 hours read in a fraction of a second)."""
    rows = len(dataset) if limit is None else min(limit, len(dataset))
    names = [c for c in ("codes", "source", "offset_seconds") if c in dataset.column_names]
    table = dataset.select_columns(names).with_format("arrow")[:rows]  # honours a select()/shuffle() mapping
    column = table.column("codes").combine_chunks()  # list<list<int>>: rows of K codebooks
    if isinstance(column, pa.ChunkedArray):  # older pyarrow: a chunked array of one chunk
        column = column.chunk(0)
    # absolute offsets into the child arrays (flatten() would apply a slice's offset a second time)
    row_offsets, inner = column.offsets.to_numpy(), column.values  # row i: codebooks row_offsets[i] .. [i + 1]
    code_offsets, values = inner.offsets.to_numpy(), inner.values.to_numpy(zero_copy_only=False)
    examples = []
    for i in range(len(column)):
        first, last = row_offsets[i], row_offsets[i + 1]
        start, stop = code_offsets[first], code_offsets[last]
        examples.append(values[start:stop].reshape(last - first, -1))  # (K, T)
    sources = [str(s) for s in table.column("source").to_pylist()] if "source" in names else None
    offsets = (
        [float(o or 0.0) for o in table.column("offset_seconds").to_pylist()] if "offset_seconds" in names else None
    )
    return examples, sources, offsets


class CodeIndex:
    """An index of training codes that scores how much of a generated clip is a copy (see the module docstring).

    Args:
        examples: each training example's codes, (K, T) integers (as the prepared ``codes`` column holds them).
        sources: each example's file name (the ``source`` column), or None (the row index is reported then).
        offsets_seconds: where each example starts in its file (chunked data's ``offset_seconds``), or None.
        frame_rate: code frames per second (50 for every MusicGen).
        codebooks: compare only the first N codebooks of each frame (None: all K).
        shingle_frames: length of the hashed windows; the shortest run that counts.
        max_gap_frames: the longest stretch of consecutive differing frames tolerated inside one copy.
        max_occurrences: at most this many places are kept per shingle (the first ones), which bounds the work for
            material repeated hundreds of times.

    Raises:
        ValueError: no examples, examples with different numbers of codebooks, or parameters out of range.
    """

    def __init__(
        self,
        examples: Sequence[np.ndarray],
        sources: Sequence[str] | None = None,
        offsets_seconds: Sequence[float] | None = None,
        frame_rate: float = 50.0,
        codebooks: int | None = None,
        shingle_frames: int = DEFAULT_SHINGLE_FRAMES,
        max_gap_frames: int = DEFAULT_MAX_GAP_FRAMES,
        max_occurrences: int = DEFAULT_MAX_OCCURRENCES,
    ) -> None:
        if shingle_frames < 2 or max_gap_frames < 0 or max_occurrences < 1:
            raise ValueError("need shingle_frames >= 2, max_gap_frames >= 0 and max_occurrences >= 1")
        if not len(examples):
            raise ValueError("no training examples to index")
        widths = {np.asarray(e).shape[0] for e in examples}
        if len(widths) != 1:
            raise ValueError(f"every example needs the same number of codebooks, got {sorted(widths)}")
        self.num_codebooks = widths.pop()
        self.codebooks = self.num_codebooks if codebooks is None else min(codebooks, self.num_codebooks)
        self.frame_rate = float(frame_rate)
        self.shingle_frames, self.max_gap_frames = shingle_frames, max_gap_frames
        self.sources = list(sources) if sources is not None else None
        self.offsets_seconds = list(offsets_seconds) if offsets_seconds is not None else None
        lengths = np.array([np.asarray(e).shape[1] for e in examples], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(lengths)])  # example i: frames starts[i] .. starts[i + 1]
        # (N, K) frames of every example, one after another: the excerpts are read from here
        self.frames = np.concatenate([np.asarray(e, dtype=np.int16).T for e in examples], axis=0)
        keys, informative = shingle_hashes(frame_hashes(self.frames[:, : self.codebooks]), shingle_frames)
        position = np.arange(len(keys))
        example = np.searchsorted(self.starts, position, side="right") - 1
        inside = position + shingle_frames <= self.starts[example + 1]  # no shingle spans two examples
        keep = np.flatnonzero(inside & informative)
        order = np.argsort(keys[keep], kind="stable")  # stable: equal keys stay in training order
        keys, positions = keys[keep][order], keep[order]
        group_start = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
        rank = np.arange(len(keys)) - np.repeat(group_start, np.diff(np.append(group_start, len(keys))))
        self.keys, self.positions = keys[rank < max_occurrences], positions[rank < max_occurrences]

    @classmethod
    def from_dataset(cls, dataset: Any, frame_rate: float = 50.0, limit: int | None = None, **kwargs: Any) -> CodeIndex:
        """The index of a prepared split (a ``datasets.Dataset`` with ``codes``; ``source`` and ``offset_seconds``
        are used when present). ``limit``: only the first N rows, as ``max_train_samples`` trains on."""
        examples, sources, offsets = _examples_of(dataset, limit)
        return cls(examples, sources, offsets, frame_rate=frame_rate, **kwargs)

    def __len__(self) -> int:
        return len(self.starts) - 1

    @property
    def nbytes(self) -> int:
        """Memory held by the index (frames, keys, positions)."""
        return int(self.frames.nbytes + self.keys.nbytes + self.positions.nbytes + self.starts.nbytes)

    def source_of(self, example: int) -> str | None:
        """The file name of training example ``example`` (None when the dataset names no sources)."""
        return self.sources[example] if self.sources is not None else None

    def match(self, codes: np.ndarray) -> CopyMatch:
        """Score one generated clip.

        Args:
            codes: (K, T) generated codes, the K codebooks of the training data (as ``generate()`` hands to EnCodec).

        Returns:
            The best alignment's :class:`CopyMatch` (``copied_frames`` 0 and ``example`` None when no run of at
            least ``shingle_frames`` frames occurs in the training data).
        """
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[0] != self.num_codebooks:
            raise ValueError(f"need (K={self.num_codebooks}, T) codes, got shape {codes.shape}")
        total = codes.shape[1]
        n = self.shingle_frames
        keys, informative = shingle_hashes(frame_hashes(codes[: self.codebooks].T), n)
        low = np.searchsorted(self.keys, keys, side="left")
        counts = np.where(informative, np.searchsorted(self.keys, keys, side="right") - low, 0)
        if not counts.sum():
            return CopyMatch(frames=total, frame_rate=self.frame_rate)
        # every (generated shingle, training shingle) pair with the same hash, and its alignment (diagonal)
        generated = np.repeat(np.arange(len(keys)), counts)
        within = np.arange(len(generated)) - np.repeat(np.cumsum(counts) - counts, counts)
        trained = self.positions[np.repeat(low, counts) + within]
        diagonal = trained - generated
        order = np.lexsort((generated, diagonal))
        generated, diagonal = generated[order], diagonal[order]
        # runs: consecutive shingle starts on one diagonal; a run of starts a..b covers frames a..b + n - 1
        breaks = np.concatenate([[True], (diagonal[1:] != diagonal[:-1]) | (generated[1:] != generated[:-1] + 1)])
        first = np.flatnonzero(breaks)
        last = np.append(first[1:], len(generated)) - 1
        run_start, run_end = generated[first], generated[last] + n  # frames [start, end)
        run_diagonal = diagonal[first]
        run_example = np.searchsorted(self.starts, run_start + run_diagonal, side="right") - 1
        lengths = run_end - run_start
        # copies: consecutive runs of one alignment (same diagonal, same example) with no more than max_gap_frames
        # differing frames in a row between them; equal frames in between (too short a run, silence) count as copied
        same = (run_diagonal[1:] == run_diagonal[:-1]) & (run_example[1:] == run_example[:-1])
        equal_between = np.zeros(len(same), dtype=np.int64)
        joined = np.zeros(len(same), dtype=bool)
        for i in np.flatnonzero(same):
            begin, end = run_end[i], run_start[i + 1]
            aligned = self.frames[begin + run_diagonal[i] : end + run_diagonal[i], : self.codebooks]
            equal = np.all(aligned == codes[: self.codebooks, begin:end].T, axis=1)
            equal_between[i] = int(equal.sum())
            joined[i] = _longest_false(equal) <= self.max_gap_frames
        chain_first = np.flatnonzero(np.concatenate([[True], ~joined]))
        chain_last = np.append(chain_first[1:], len(lengths)) - 1
        copied = np.add.reduceat(lengths, chain_first) + np.add.reduceat(
            np.append(np.where(joined, equal_between, 0), 0), chain_first
        )
        best = int(np.argmax(copied))  # the first best: the earliest training example, then the earliest place
        head, tail = chain_first[best], chain_last[best]
        example = int(run_example[head])
        start = int(run_start[head])
        return CopyMatch(
            frames=total,
            copied_frames=int(copied[best]),
            longest_run_frames=int(lengths.max()),
            example=example,
            source=self.source_of(example),
            clip_start_frame=start,
            train_start_frame=int(start + run_diagonal[head] - self.starts[example]),
            span_frames=int(run_end[tail] - start),
            example_offset_seconds=float(self.offsets_seconds[example]) if self.offsets_seconds else 0.0,
            frame_rate=self.frame_rate,
        )

    def excerpt(self, example: int, start_frame: int, frames: int) -> np.ndarray:
        """(K, frames) training codes of ``example`` from ``start_frame`` (cut at the example's end), e.g. to decode
        and listen to the copied passage next to the generated clip."""
        begin = self.starts[example] + max(0, start_frame)
        end = min(begin + max(0, frames), self.starts[example + 1])
        return self.frames[begin:end].T.copy()


def _longest_false(mask: np.ndarray) -> int:
    """Length of the longest stretch of False in a 1-D boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[True], mask, [True]]).astype(np.int8)))
    return int((edges[1::2] - edges[::2]).max()) if len(edges) else 0


def copy_score(codes: np.ndarray, index: CodeIndex) -> float:
    """``copy_score`` of one generated clip's (K, T) codes against ``index`` (see the module docstring)."""
    return index.match(codes).score
