"""The examples of a split within its limits: tracks shorter than ``min_duration_in_seconds`` left out, then tracks
(or, with ``chunk_long_tracks``, chunks) quieter than ``silence_threshold_db`` left out, each stage with its report."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import datasets
import numpy as np

from ..audio.io import describe_source
from ..errors import UserError
from ..models.codec import encode_clip
from ..models.spec import chroma_frames_per_code_frame
from .chunking import ChunkSettings, chunk_dataset, frame_levels, level_db, plan_summary
from .context import PrepareContext
from .measurements import cached_measure
from .report import ChunkReport, LengthReport, SilenceReport, skipped_entry

logger = logging.getLogger(__name__)


def levels_kind(frame_rate: float) -> str:
    """The cache kind of a track's level per codec frame (see :func:`~.measurements.cached_measures`)."""
    return f"levels|{frame_rate}"


def levels_measure(frame_rate: float) -> Any:
    """What computes a track's level per codec frame from its decoded audio (``compute(audio, sr)``)."""
    return partial(frame_levels, frame_rate=frame_rate)


def track_levels(source: Any, context: PrepareContext) -> list[float]:
    """A track's level (dBFS) per codec frame, from the cache (measured by its one decode)."""
    rate = context.spec.frame_rate
    return cached_measure(source, context.root, levels_kind(rate), levels_measure(rate))


def long_enough(
    examples: datasets.Dataset, audio: list[Any], split: str, context: PrepareContext
) -> tuple[datasets.Dataset, list[int], LengthReport]:
    """The tracks at least ``min_duration_in_seconds`` long (without their ``seconds`` column), their rows, and the
    report (``audio``: each row's audio source, named in the report).

    Raises:
        UserError: no track is long enough.
    """
    minimum = context.data.min_duration_in_seconds
    seconds = examples["seconds"]
    kept = [i for i, s in enumerate(seconds) if s >= minimum]
    names = [describe_source(source) for source in audio]
    report = LengthReport(
        seconds_found=float(sum(seconds)),
        too_short=len(examples) - len(kept),
        seconds_too_short=float(sum(seconds) - sum(seconds[i] for i in kept)),
        skipped=[
            skipped_entry(names[i], f"too short: {s:.2f} s < min_duration_in_seconds")
            for i, s in enumerate(seconds)
            if s < minimum
        ],
    )
    if len(kept) < len(examples):
        logger.warning(
            "%d of %d %s clips are shorter than min_duration_in_seconds=%g and are left out",
            len(examples) - len(kept),
            len(examples),
            split,
            minimum,
        )
    if not kept:
        raise UserError(
            f"no {split} clip is at least min_duration_in_seconds={minimum:g} s long; lower min_duration_in_seconds "
            "or add longer audio"
        )
    return examples.select(kept).remove_columns(["seconds"]), kept, report


def loud_enough(
    examples: datasets.Dataset, levels: list[list[float]], audio: list[Any], split: str, context: PrepareContext
) -> tuple[datasets.Dataset, SilenceReport]:
    """The whole tracks whose level reaches ``silence_threshold_db`` (``levels[j]``, ``audio[j]``: row j's levels and
    audio source), and the report.

    Raises:
        UserError: every track is quieter.
    """
    threshold = context.data.silence_threshold_db
    track_db = [level_db(track, 0, len(track)) for track in levels]
    loud = [j for j, db in enumerate(track_db) if db >= threshold]
    names = [describe_source(source) for source in audio]
    if len(loud) < len(examples):
        logger.warning(
            "%d of %d %s tracks are quieter than silence_threshold_db=%g dBFS and are left out",
            len(examples) - len(loud),
            len(examples),
            split,
            threshold,
        )
    report = SilenceReport(
        silent_tracks=len(examples) - len(loud),
        skipped=[skipped_entry(names[j], f"silent: {db:.1f} dBFS") for j, db in enumerate(track_db) if db < threshold],
    )
    if not loud:
        raise UserError(
            f"every {split} track is quieter than silence_threshold_db={threshold:g} dBFS; lower the threshold (or "
            "unset it) or check the audio"
        )
    return examples.select(loud), report


def chunk_settings(context: PrepareContext) -> ChunkSettings:
    """How ``chunk_long_tracks`` cuts this run's tracks (the codes of silence encoded for ``tail_policy: pad``)."""
    data, spec, model = context.data, context.spec, context.model
    max_frames = spec.frames(data.max_duration_in_seconds)
    silence = None
    if data.tail_policy == "pad":  # the codes of silence, to pad short tails with
        samples = (max_frames + 2) * spec.samples_per_frame
        silence = encode_clip(model.audio_encoder.eval(), np.zeros((spec.channels, samples), np.float32))
    extractor = context.chroma_extractor
    return ChunkSettings(
        max_frames=max_frames,
        min_frames=max(1, spec.frames(data.min_duration_in_seconds)),
        policy=data.tail_policy,
        frame_rate=spec.frame_rate,
        silence_codes=silence,
        chroma_ratio=chroma_frames_per_code_frame(extractor, spec) if extractor is not None else None,
        silence_threshold_db=data.silence_threshold_db,
    )


def chunks(
    examples: datasets.Dataset, levels: list[list[float]] | None, split: str, context: PrepareContext
) -> tuple[datasets.Dataset, ChunkReport]:
    """Each track cut into chunks of ``max_duration_in_seconds`` with its tail handled by ``tail_policy`` (silent
    chunks left out with ``silence_threshold_db``), and the report.

    Raises:
        UserError: every chunk is quieter than the silence threshold.
    """
    settings = chunk_settings(context)
    planned = plan_summary([len(codes[0]) for codes in examples["codes"]], settings, levels)
    tracks = len(examples)
    chunked = chunk_dataset(examples, settings, levels)
    skipped = []
    if settings.silence_threshold_db is not None:  # a track none of whose chunks is loud enough is left out whole
        kept = set(chunked["source"])
        skipped = [
            skipped_entry(source, "silent: every chunk below silence_threshold_db")
            for source in examples["source"]
            if source not in kept
        ]
        if not len(chunked):
            raise UserError(
                f"every {split} chunk is quieter than silence_threshold_db={settings.silence_threshold_db:g} dBFS; "
                "lower the threshold (or unset it) or check the audio"
            )
    logger.info("%s split: %d tracks cut into %d chunks (tail_policy=%s)", split, tracks, len(chunked), settings.policy)
    return chunked, ChunkReport(skipped=skipped, **planned)
