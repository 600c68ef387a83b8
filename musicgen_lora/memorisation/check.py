"""The memorisation check of a run: the training data indexed once, then every generated clip scored.

Used by ``evaluate.py`` (per clip in ``comparison_results.jsonl``, per model in ``metrics.json``, a warning badge and
the copied training excerpt in ``report.html``) and by training's sample renders (:mod:`musicgen_lora.train.samples`).
The
measures are defined in :mod:`musicgen_lora.train.copy_score` and :mod:`.melody`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..train.copy_score import DEFAULT_COPY_THRESHOLD, CodeIndex
from .melody import DEFAULT_MELODY_THRESHOLD, MelodyIndex

logger = logging.getLogger(__name__)

COPY_NOTE = (
    "copy_score: the share of a generated clip's code frames (all codebooks of a 20 ms frame equal) that lie in "
    "verbatim runs of at least 4 frames lined up with one training example, runs at most 8 frames apart; 1 = the "
    "whole clip is a copy, 0 = no run found. copy_score_exact: the longest single verbatim run / clip frames. "
    "melody_similarity: the highest correlation of the clip's chroma with a window of one training example's chroma, "
    "over every offset and transposition (the same tune on another instrument scores about 0.9). copies / "
    "melody_copies: clips at or above copy_threshold / melody_threshold."
)


class CopyChecker:
    """Scores generated clips against one training set (see :mod:`musicgen_lora.train.copy_score` and :mod:`.melody`).

    Args:
        codes: the code index of the training set.
        melody: its chroma index, or None (no melodic similarity).
        copy_threshold, melody_threshold: a clip at or above either is flagged as a copy.
    """

    def __init__(
        self,
        codes: CodeIndex,
        melody: MelodyIndex | None = None,
        copy_threshold: float = DEFAULT_COPY_THRESHOLD,
        melody_threshold: float = DEFAULT_MELODY_THRESHOLD,
    ) -> None:
        self.codes, self.melody = codes, melody
        # the first codebook alone (the coarsest, most of what is heard): evaluate.py's copied_run_frames_q1
        first = np.split(codes.frames[:, 0], codes.starts[1:-1])
        self.first_codebook = CodeIndex([f[None] for f in first], frame_rate=codes.frame_rate)
        self.copy_threshold, self.melody_threshold = copy_threshold, melody_threshold

    @classmethod
    def from_dataset(
        cls,
        dataset: Any,
        frame_rate: float,
        decode: Callable[[np.ndarray], np.ndarray] | None = None,
        sampling_rate: int | None = None,
        limit: int | None = None,
        copy_threshold: float = DEFAULT_COPY_THRESHOLD,
        melody_threshold: float = DEFAULT_MELODY_THRESHOLD,
    ) -> CopyChecker:
        """Index a prepared training split (``codes``, and ``source``/``offset_seconds`` when present).

        Args:
            decode: (K, frames) codes -> (channels, samples) audio at ``sampling_rate`` (the model's EnCodec); the
                melody index is built from the decoded training audio. None: no melodic similarity.
            limit: only the first N rows (as ``max_train_samples`` trained on).
        """
        started = time.perf_counter()
        codes = CodeIndex.from_dataset(dataset, frame_rate=frame_rate, limit=limit)
        melody = None
        if decode is not None and sampling_rate:
            melody = MelodyIndex()
            for i in range(len(codes)):
                example = codes.excerpt(i, 0, int(codes.starts[i + 1] - codes.starts[i]))
                offset = codes.offsets_seconds[i] if codes.offsets_seconds else 0.0
                melody.add(decode(example), sampling_rate, codes.source_of(i), offset)
        hours = len(codes.frames) / frame_rate / 3600
        logger.info(
            "Indexed %d training clips (%.2f h) for the memorisation check in %.1f s%s",
            len(codes),
            hours,
            time.perf_counter() - started,
            "" if melody else " (codes only)",
        )
        return cls(codes, melody, copy_threshold, melody_threshold)

    def score(
        self, codes: np.ndarray, audio: np.ndarray | None = None, sampling_rate: int | None = None
    ) -> dict[str, Any]:
        """The per-clip fields of one generated clip: its (K, T) codes and, for the melody, its audio.

        Returns:
            ``copy_score``, ``copy_score_exact``, ``copy_training_file``/``_index``, ``copy_offset_seconds`` (where
            the copied excerpt starts in the training file), ``copy_clip_start_seconds``, ``copy_span_seconds``,
            ``copied_run_frames`` (longest verbatim run, all codebooks), ``copied_run_frames_q1`` (first codebook),
            the ``melody_*`` fields when there is a melody index, ``copy`` (flagged at either threshold) and
            ``copy_kind`` (``"codes"`` when the copy score flagged it, else ``"melody"``; None).
        """
        match = self.codes.match(codes)
        record = match.record()
        record["copied_run_frames"] = match.longest_run_frames
        record["copied_run_frames_q1"] = self.first_codebook.match(np.asarray(codes)[:1]).longest_run_frames
        record["generated_frames"] = match.frames
        # a clip is flagged only where something lined up: with a threshold of 0, every clip with a matched run
        # (never a clip that matched nothing, which has no training excerpt to show)
        kind = "codes" if match.example is not None and match.score >= self.copy_threshold else None
        if self.melody is not None and audio is not None and sampling_rate:
            melody = self.melody.match(audio, sampling_rate)
            record.update(melody.record())
            found = record.get("melody_training_index") is not None
            if kind is None and found and melody.similarity >= self.melody_threshold:
                kind = "melody"
        record["copy"] = kind is not None
        record["copy_kind"] = kind  # what flagged it: "codes", "melody" or None
        return record

    def excerpt_codes(self, record: dict[str, Any]) -> np.ndarray | None:
        """(K, frames) training codes of what a flagged clip copies (the copied span, or the melody's window), or
        None when the clip is not flagged."""
        if not record.get("copy"):
            return None
        rate = self.codes.frame_rate
        if record["copy_kind"] == "codes":
            example = record["copy_training_index"]
            offset = record["copy_offset_seconds"] - self._example_offset(example)
            return self.codes.excerpt(example, round(offset * rate), round(record["copy_span_seconds"] * rate))
        example = record["melody_training_index"]
        offset = record["melody_offset_seconds"] - self._example_offset(example)
        return self.codes.excerpt(example, round(offset * rate), record["generated_frames"])

    def _example_offset(self, example: int) -> float:
        return self.codes.offsets_seconds[example] if self.codes.offsets_seconds else 0.0

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """The per-model fields of ``metrics.json``'s memorisation block (max, mean and count over the clips)."""
        scores = [r["copy_score"] for r in records]
        block: dict[str, Any] = {
            "training_clips": len(self.codes),
            "copy_score": max(scores, default=None),
            "copy_score_mean": float(np.mean(scores)) if scores else None,
            "copy_score_exact": max((r["copy_score_exact"] for r in records), default=None),
            "copies": sum(1 for r in records if r.get("copy_kind") == "codes"),
            "copy_threshold": self.copy_threshold,
            "longest_copied_run_frames": max((r["copied_run_frames"] for r in records), default=0),
            "longest_copied_run_seconds": max((r["copied_run_frames"] for r in records), default=0)
            / self.codes.frame_rate,
            "longest_copied_run_frames_q1": max((r["copied_run_frames_q1"] for r in records), default=0),
            "mean_copied_run_frames": float(np.mean([r["copied_run_frames"] for r in records])) if records else None,
        }
        if self.melody is not None:
            melody = [r["melody_similarity"] for r in records if "melody_similarity" in r]
            block.update(
                melody_similarity=max(melody, default=None),
                melody_similarity_mean=float(np.mean(melody)) if melody else None,
                melody_copies=sum(
                    1
                    for r in records
                    if r.get("melody_training_index") is not None
                    and r.get("melody_similarity", -1.0) >= self.melody_threshold
                ),
                melody_threshold=self.melody_threshold,
            )
        block["note"] = COPY_NOTE
        return block
