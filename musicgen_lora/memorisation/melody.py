"""Melody similarity: the tune of a generated clip against the training audio, whatever instrument plays it and in
which key.

**Melody similarity** (:class:`MelodyIndex`), on the audio: the tune, whatever instrument plays it and in which
key. Each clip becomes 10 chroma frames per second (:func:`chroma_features`: the pitch-class energy, mostly of the
middle octaves, each frame scaled to unit length, so that timbre and loudness count little); ``melody_similarity``
is the highest normalised cross-correlation (Pearson's r over all 12 x frames values, each pitch class's mean over
the window removed) between the clip's chroma and any equally long window of a training example's chroma, over
every time offset and all 12 transpositions. It is in [-1, 1] (reported clipped at 0): 0.83-0.92 for the same tune
on another instrument or in another key, 0.25-0.43 for another tune over the same chords (synthetic tunes, as in
``tests/memorisation``). A window that overlaps a training example only in part counts the missing frames
as silence, so a clip that copies a short example only in part scores lower, as the copy score does. A clip whose
chroma hardly changes (silence, noise, a drone) has no tune to compare and scores 0.

The training audio for the melody index is the training codes decoded by the model's own EnCodec (see
:mod:`.check`), not the source files: it is always at hand (Hub and streamed datasets
keep no files), it is exactly what the model was trained on (chunks, loudness normalisation, vocal removal) and it
carries the same codec artefacts as the generated audio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import librosa
import numpy as np
import scipy.fft

from ..audio import analysis

# A clip at or above this melody_similarity is reported as a melodic copy: the same tune on another instrument
# scores 0.83-0.92, another tune over the same chords 0.25-0.43 (tests/memorisation); 0.65 is in between.
DEFAULT_MELODY_THRESHOLD = 0.65
CHROMA_RATE = 10.0  # chroma frames per second: an eighth note at 150 bpm spans 2, and 10 h are 360,000 frames
# A chroma sequence whose changes hold under this share of its energy (a drone, noise, a steady tone) has no tune to
# compare: its similarity is 0 rather than a correlation of round-off.
MIN_CHROMA_CHANGE = 0.01
_BLOCK = 1 << 14  # window starts correlated per FFT in MelodyIndex (bounds memory whatever the training size)


def chroma_features(audio: np.ndarray, sr: int, rate: float = CHROMA_RATE) -> np.ndarray:
    """Chroma frames for melody matching: (frames, 12) float32 at about ``rate`` frames per second.

    librosa's ``chroma_stft``: the power spectrum (a window of about 0.25 s, so semitones resolve from about 80 Hz)
    folded onto the 12 pitch classes by a filter bank whose octave weighting centres on C5 and fades the bass and the
    high harmonics, where instruments differ most; tuning fixed at A440 (MusicGen plays in tune, and estimating it
    per clip costs more than the chroma itself). Each frame is scaled to unit length (loudness does not count);
    frames 40 dB or more under the loudest (silence) are zero. On the synthetic tunes of ``tests/test_memorisation.py``
    it separates a tune re-played on another instrument (r >= 0.80) from another tune over the same chords
    (r <= 0.43) better than the whitened chroma the Fréchet descriptors used before (0.66 vs 0.60).
    """
    x = analysis.to_mono(np.nan_to_num(np.asarray(audio, dtype=np.float64))).astype(np.float32)
    hop = max(1, round(sr / rate))
    n_fft = 1 << round(math.log2(sr / 4))  # 8192 at 32 kHz
    if len(x) < n_fft:
        return np.zeros((0, 12), dtype=np.float32)
    # center=False: frames inside the clip only (a zero-padded edge frame would look like a change of tune)
    chroma = librosa.feature.chroma_stft(y=x, sr=sr, n_fft=n_fft, hop_length=hop, norm=None, tuning=0.0, center=False).T
    norms = np.linalg.norm(chroma, axis=1)
    floor = 1e-4 * norms.max() if len(norms) else 0.0  # power: 40 dB under the loudest frame
    keep = norms > max(floor, 1e-12)
    chroma = np.where(keep[:, None], chroma / np.where(keep, norms, 1.0)[:, None], 0.0)
    return chroma.astype(np.float32)


@dataclass(frozen=True)
class MelodyMatch:
    """The training window whose chroma correlates best with a generated clip's (see the module docstring)."""

    similarity: float = 0.0  # Pearson's r in [-1, 1]; 0 when nothing to compare (silence)
    example: int | None = None
    source: str | None = None
    offset_seconds: float = 0.0  # where the window starts in the training file (negative: before the example)
    transposition: int = 0  # semitones from the generated clip to the training window, in -5..6
    seconds: float = 0.0  # length of the compared window

    def record(self) -> dict[str, Any]:
        """The per-clip fields of ``comparison_results.jsonl``."""
        found = self.example is not None
        return {
            "melody_similarity": round(max(self.similarity, 0.0), 4),
            "melody_training_index": self.example,
            "melody_training_file": self.source,
            "melody_offset_seconds": round(self.offset_seconds, 3) if found else None,
            "melody_transposition": self.transposition if found else None,
        }


class MelodyIndex:
    """Chroma of every training example, searched by normalised cross-correlation (see the module docstring).

    Add examples with :meth:`add` (audio) or :meth:`add_chroma`; :meth:`match` a generated clip's audio.

    Args:
        rate: chroma frames per second.
        transpose: also try the 11 other transpositions (a tune re-played in another key).
    """

    def __init__(self, rate: float = CHROMA_RATE, transpose: bool = True) -> None:
        self.rate, self.transpose = float(rate), transpose
        self.chroma: list[np.ndarray] = []
        self.sources: list[str | None] = []
        self.offsets_seconds: list[float] = []
        self._layout: tuple[int, Any] | None = None  # (window frames, precomputed layout) of the last query length

    def __len__(self) -> int:
        return len(self.chroma)

    def add(self, audio: np.ndarray, sr: int, source: str | None = None, offset_seconds: float = 0.0) -> None:
        """Add one training example's audio ((samples,) or (channels, samples))."""
        self.add_chroma(chroma_features(audio, sr, self.rate), source, offset_seconds)

    def add_chroma(self, chroma: np.ndarray, source: str | None = None, offset_seconds: float = 0.0) -> None:
        """Add one training example's (frames, 12) chroma (as :func:`chroma_features` computes it)."""
        self.chroma.append(np.asarray(chroma, dtype=np.float32).reshape(-1, 12))
        self.sources.append(source)
        self.offsets_seconds.append(float(offset_seconds))
        self._layout = None

    def _prepare(self, window: int) -> Any:
        """Training chroma laid out for windows of ``window`` frames: every example preceded by ``window - 1``
        silent frames (so no window reaches two examples), cut into blocks with their Fourier transforms, and each
        window's spread (the denominator of the correlation)."""
        if self._layout is not None and self._layout[0] == window:
            return self._layout[1]
        gap = np.zeros((window - 1, 12), dtype=np.float32)
        pieces, owner, first = [], [], []
        position = 0
        for index, chroma in enumerate(self.chroma):
            pieces += [gap, chroma]
            first.append(position + window - 1)  # where the example starts in the layout
            owner.append(np.full(window - 1 + len(chroma), index, dtype=np.int32))
            position += window - 1 + len(chroma)
        pieces.append(gap)
        owner.append(np.full(window - 1, len(self.chroma) - 1, dtype=np.int32))
        layout = np.concatenate(pieces)  # (frames, 12)
        starts = len(layout) - window + 1  # window start positions
        # spread of each window: sum of squares minus window * squared mean, per pitch class (from cumulative sums)
        cumulative = np.concatenate([np.zeros((1, 12)), np.cumsum(layout, axis=0, dtype=np.float64)])
        squares = np.concatenate([[0.0], np.cumsum((layout.astype(np.float64) ** 2).sum(axis=1))])
        sums = cumulative[window:] - cumulative[:starts]
        energy = squares[window:] - squares[:starts]
        spread = energy - (sums**2).sum(axis=1) / window
        spread[spread <= MIN_CHROMA_CHANGE * energy] = 0.0  # no tune in this window: never matched
        size = scipy.fft.next_fast_len(_BLOCK + window - 1)
        blocks = []
        for begin in range(0, starts, _BLOCK):
            segment = layout[begin : begin + _BLOCK + window - 1]
            blocks.append((begin, scipy.fft.rfftn(segment, s=(12, size), axes=(1, 0))))
        prepared = {
            "size": size,
            "blocks": blocks,
            "spread": np.sqrt(np.maximum(spread, 0.0)),
            "owner": np.concatenate(owner)[:starts],
            "first": np.array(first),
        }
        self._layout = (window, prepared)
        return prepared

    def match(self, audio: np.ndarray, sr: int) -> MelodyMatch:
        """The best-correlated training window for a generated clip's audio ((samples,) or (channels, samples))."""
        return self.match_chroma(chroma_features(audio, sr, self.rate))

    def match_chroma(self, chroma: np.ndarray) -> MelodyMatch:
        """:meth:`match` for (frames, 12) chroma."""
        query = np.asarray(chroma, dtype=np.float64)
        energy = float((query**2).sum())
        query = query - query.mean(axis=0)  # each pitch class's mean removed: the correlation sees the changes
        norm = float(np.linalg.norm(query))
        if not self.chroma or len(query) < 2 or norm**2 <= MIN_CHROMA_CHANGE * energy or norm < 1e-9:
            return MelodyMatch(seconds=len(query) / self.rate)
        window = len(query)
        prepared = self._prepare(window)
        size = prepared["size"]
        spectrum = np.conj(scipy.fft.rfftn(query.astype(np.float32), s=(12, size), axes=(1, 0)))
        shifts = 12 if self.transpose else 1
        best = (-np.inf, 0, 0)  # (similarity, window start, shift)
        for begin, block in prepared["blocks"]:
            # correlation[l, s] = sum_t sum_c query[t, c] * layout[begin + l + t, (c + s) % 12]
            correlation = scipy.fft.irfftn(spectrum * block, s=(12, size), axes=(1, 0))[:_BLOCK, :shifts]
            count = min(_BLOCK, len(prepared["spread"]) - begin)
            spread = prepared["spread"][begin : begin + count]
            similarity = np.where(
                spread[:, None] > 1e-6, correlation[:count] / (norm * np.maximum(spread, 1e-6)[:, None]), -np.inf
            )
            flat = int(np.argmax(similarity))
            value = float(similarity.flat[flat])
            if value > best[0]:
                best = (value, begin + flat // shifts, flat % shifts)
        value, start, shift = best
        if not math.isfinite(value):
            return MelodyMatch(seconds=window / self.rate)
        example = int(prepared["owner"][start])
        offset = self.offsets_seconds[example] + (start - prepared["first"][example]) / self.rate
        return MelodyMatch(
            similarity=min(value, 1.0),
            example=example,
            source=self.sources[example],
            offset_seconds=offset,
            transposition=shift if shift <= 6 else shift - 12,
            seconds=window / self.rate,
        )

    @property
    def nbytes(self) -> int:
        """Memory held by the chroma and the last query length's transforms."""
        held = sum(c.nbytes for c in self.chroma)
        if self._layout is not None:
            held += sum(block.nbytes for _, block in self._layout[1]["blocks"])
        return held
