"""The preparation of a run's data, in one place: every split goes sources -> screening -> vocals -> captions ->
encoding -> duration and silence limits -> chunking, then the splits, report and fingerprint are written
together; training reuses them (:func:`load_or_prepare`) while nothing that shapes them changed."""

from __future__ import annotations

import json
import logging
import shutil
from functools import partial
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from transformers import PreTrainedModel, ProcessorMixin

from ..audio.io import describe_source
from ..config.arguments import DataArguments, ParsedConfig
from ..errors import UserError
from ..files import (
    atomic_write_json,
    atomic_write_text,
    cache_root,
    check_apart_from_data,
    ensure_writable_folder,
    save_dataset_atomically,
)
from ..hub.dataset import push_captioned_split
from ..logs import progress, progress_bars
from ..models.codec import encode_clip
from ..models.loading import check_melody_options, is_melody_model, load_model_and_processor
from ..models.spec import AudioSpec, chroma_frames_per_code_frame
from .cache_keys import codec_fingerprint
from .captions import caption_tracks, review_row
from .chunking import chunk_dataset, fixed_windows, frame_levels, level_db, plan_summary, split_tracks
from .encoding import encode_dataset, encode_stream, share_rows
from .measurements import cached_measure
from .processes import from_main_process, run_in_step
from .report import CAPTIONS_NAME, REPORT_NAME, REPORTED_OPTIONS, split_report
from .reuse import (
    FINGERPRINT_NAME,
    PREPARED_DIR_NAME,
    already_prepared,
    load_prepared,
    prepared_fingerprint,
    split_plan,
    usable_reason,
)
from .screening import screen_split, skipped_entry
from .sources import load_split, source_names
from .vocals import remove_vocals

logger = logging.getLogger(__name__)


def prepare_data(
    parsed: ParsedConfig, model: PreTrainedModel | None = None, processor: ProcessorMixin | None = None
) -> dict[str, Any]:
    """Prepare every split of a run; returns the data report (also written as OUTPUT_DIR/prepared_data/...).

    The splits, ``data_report.json`` and, last, ``fingerprint.json`` (see :func:`prepared_fingerprint`) are written
    to ``OUTPUT_DIR/prepared_data``; training reuses them while the fingerprint matches.
    """
    # disable_tqdm covers every bar of the preparation: loading the model, encoding, cutting chunks, saving the splits
    with progress_bars(not parsed.training.disable_tqdm):
        return _prepare_all_splits(parsed, model, processor)


def _prepare_all_splits(
    parsed: ParsedConfig, model: PreTrainedModel | None, processor: ProcessorMixin | None
) -> dict[str, Any]:
    """:func:`prepare_data` without the progress-bar switch."""
    data_args, training = parsed.data, parsed.training
    out = Path(training.output_dir) / PREPARED_DIR_NAME
    check_apart_from_data(training.output_dir, data_args.dataset_name)
    ensure_writable_folder(training.output_dir, "output_dir")
    ensure_writable_folder(cache_root(data_args.data_cache_dir), "data_cache_dir")
    if model is None or processor is None:
        report = already_prepared(parsed, out)
        if report is not None:
            return report
        model, processor = load_model_and_processor(parsed.model)
        check_melody_options(model, parsed)  # training checks them itself, once
    chroma_extractor = processor.feature_extractor if is_melody_model(model) else None
    codec = codec_fingerprint(parsed.model, cache_root(data_args.data_cache_dir), model)
    spec = AudioSpec.of(model)
    fingerprint = prepared_fingerprint(parsed, codec, spec, chroma_extractor)  # before: files may change
    report: dict[str, Any] = {"dataset_name": data_args.dataset_name, "output": str(out), "splits": {}}
    splits = split_plan(data_args)
    prepared, review_rows = {}, []
    # every split is prepared before the folder is touched, so bad data never spoils an earlier run's
    for name, (split, is_eval) in splits.items():
        stats: dict[str, Any] = {}
        dataset = prepare_split(
            data_args, split, model, codec, is_eval, chroma_extractor, training.seed, stats, parsed.model.cache_dir
        )
        prepared[name] = dataset
        review_rows += [{**row, "split": name} for row in stats.pop("review_rows", [])]
        report["splits"][name] = split_report(dataset, stats, spec.frame_rate, data_args.max_duration_in_seconds)
    (out / FINGERPRINT_NAME).unlink(missing_ok=True)  # the folder is incomplete until the new one is written
    for name, dataset in prepared.items():
        save_dataset_atomically(dataset, out / name, replace=True)
    if "eval" not in splits:
        shutil.rmtree(out / "eval", ignore_errors=True)  # from an earlier preparation with evaluation
    report["options"] = {key: getattr(data_args, key) for key in REPORTED_OPTIONS}
    # every track's final caption and what was measured, to review, correct and copy back as metadata.jsonl
    atomic_write_text(out / CAPTIONS_NAME, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in review_rows))
    report["captions_file"] = str(out / CAPTIONS_NAME)
    atomic_write_json(out / REPORT_NAME, report, indent=2)
    atomic_write_json(out / FINGERPRINT_NAME, fingerprint, indent=2)
    return report


def load_or_prepare(
    parsed: ParsedConfig, model: PreTrainedModel, processor: ProcessorMixin
) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """The run's train (and eval) split from ``OUTPUT_DIR/prepared_data`` when it was prepared with the same data
    options, codec and source files; otherwise prepared now (written there, as ``prepare`` does) and then loaded.

    With several processes (torchrun, accelerate launch) every process calls this. When the data must be prepared,
    each process first prepares its share of the tracks into the shared ``data_cache_dir`` (:func:`prepare_share`,
    encoding on its own device), then each machine's main process assembles ``prepared_data`` from the cache and the
    others load it. An error in any process stops every process with that error's line.

    Returns:
        ``(train, eval or None)``.

    Raises:
        UserError: bad input, in whichever process met it.
    """
    training = parsed.training
    folder = Path(training.output_dir) / PREPARED_DIR_NAME
    chroma_extractor = processor.feature_extractor if is_melody_model(model) else None
    codec = codec_fingerprint(parsed.model, cache_root(parsed.data.data_cache_dir), model)
    current = prepared_fingerprint(parsed, codec, AudioSpec.of(model), chroma_extractor)
    reason = from_main_process(usable_reason(folder, current, list(split_plan(parsed.data))))  # one decision for all
    if reason is None:
        logger.info("Using the prepared data in %s (same data options, codec and source files)", folder)
    else:
        if training.process_index == 0:
            log = logger.info if reason.startswith("no complete") else logger.warning
            log("Preparing the data into %s (%s), as python -m musicgen_lora.prepare does", folder, reason)
        if training.world_size > 1 and not parsed.data.streaming:  # a stream is read once, by the main process
            share = partial(prepare_share, parsed, model, processor, training.process_index, training.world_size)
            run_in_step(share, what="encoding its share of the data")
        run_in_step(partial(prepare_data, parsed, model, processor), active=training.local_process_index == 0)
    splits = load_prepared(folder, list(split_plan(parsed.data)))
    return splits["train"], splits.get("eval")


def prepare_share(
    parsed: ParsedConfig, model: PreTrainedModel, processor: ProcessorMixin, index: int, count: int
) -> None:
    """Process ``index`` of ``count``'s share of a several-process preparation, written to the shared cache.

    For every split, the tracks of the shards :func:`~.encoding.share_rows` gives this process have their vocals
    removed (``demucs_model_path``), are measured for their captions, encoded with EnCodec on this process' device
    (``training.device``) and measured for ``silence_threshold_db``: everything :func:`prepare_data` then finds in
    the cache. A one-process preparation encodes the same shards with the same cache keys, so an interrupted
    preparation continues with any number of processes.
    """
    data_args, training = parsed.data, parsed.training
    root = cache_root(data_args.data_cache_dir)
    ensure_writable_folder(root, "data_cache_dir")
    chroma_extractor = processor.feature_extractor if is_melody_model(model) else None
    codec = codec_fingerprint(parsed.model, root, model)
    codec_device = next(model.audio_encoder.parameters()).device
    model.audio_encoder.to(training.device)
    try:
        with progress_bars(not training.disable_tqdm and index == 0):  # one process' bars stand for all
            for split, is_eval in split_plan(data_args).values():
                raw, _, _, _ = _tracks(
                    data_args,
                    split,
                    is_eval,
                    model,
                    root,
                    codec,
                    chroma_extractor,
                    training.seed,
                    {},
                    parsed.model.cache_dir,
                )
                rows = share_rows(len(raw), index, count)
                if rows:
                    _prepare_tracks(raw.select(rows), data_args, model, root, codec, chroma_extractor)
    finally:
        model.audio_encoder.to(codec_device)


def _prepare_tracks(
    raw: datasets.Dataset,
    data_args: DataArguments,
    model: PreTrainedModel,
    root: Path,
    codec: str,
    chroma_extractor: Any,
) -> None:
    """Into the cache: ``raw``'s instrumentals, caption measurements, codes and (for the long enough) levels."""
    if data_args.demucs_model_path:
        raw = remove_vocals(raw, data_args.demucs_model_path, root, progress)
    caption_tracks(raw, data_args, root, None, progress)
    lufs, workers = data_args.loudness_target_lufs, data_args.preprocessing_num_workers
    encoded = encode_dataset(raw, model, root, codec, chroma_extractor, lufs, workers)
    if data_args.silence_threshold_db is not None:
        frame_rate = AudioSpec.of(model).frame_rate
        for source, seconds in zip(raw["audio"], encoded["seconds"], strict=True):
            if seconds >= data_args.min_duration_in_seconds:
                track_levels(source, root, frame_rate)


def track_levels(source: Any, root: Path, frame_rate: float) -> list[float]:
    """A track's level (dBFS) per codec frame, measured once and cached in ``root``."""
    return cached_measure(source, root, f"levels|{frame_rate}", partial(frame_levels, frame_rate=frame_rate))


def prepare_split(
    data_args: DataArguments,
    split: str | None,
    model: PreTrainedModel,
    codec: str,
    is_eval: bool,
    chroma_extractor: Any = None,
    seed: int = 42,
    stats: dict[str, Any] | None = None,
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """One split ready for the collator: columns ``codes`` (K, frames), ``text`` (and ``chroma`` for melody).

    Args:
        split: the split's name in the source (None for the held-out side of ``eval_split_percentage``).
        codec: :func:`~.cache_keys.module_fingerprint` of the model's EnCodec (part of the codes' cache key).
        is_eval: the evaluation side: fixed consecutive windows instead of whole tracks.
        seed: which tracks eval_split_percentage holds out.
        stats: when given, filled with what preparation found and left out (for the data report).
        cache_dir: where Hub datasets are downloaded (the ``cache_dir`` model option).

    Raises:
        UserError: on bad input, or when no clip is long enough.
    """
    root = cache_root(data_args.data_cache_dir)
    stats = {} if stats is None else stats
    spec = AudioSpec.of(model)
    raw, encoded, split, names = _tracks(
        data_args, split, is_eval, model, root, codec, chroma_extractor, seed, stats, cache_dir
    )
    if data_args.demucs_model_path:  # each track's instrumental (cached) is what gets captioned and encoded
        raw = remove_vocals(raw, data_args.demucs_model_path, root, progress)
    # caption_template filled with instance_prompt, own caption, measured tempo/key/level words and CLAP tags (each
    # measurement cached per file apart from the codes, so a caption option never re-encodes)
    captions, measured = caption_tracks(raw, data_args, root, stats, progress)
    if data_args.add_metadata:  # each track's estimated tempo and key, for the data report's distribution
        stats["track_metadata"] = [found.get("metadata") or {} for found in measured if not found.get("final")]
    for entry in stats.get("low_confidence", []):
        entry["source"] = names[entry.pop("index")]
    stats["review_rows"] = [
        review_row(name, caption, own, found, data_args.loudness_target_lufs)
        for name, caption, own, found in zip(names, captions, raw["text"], measured, strict=True)
    ]
    if encoded is None:
        encoded = encode_dataset(
            raw,
            model,
            root,
            codec,
            chroma_extractor,
            data_args.loudness_target_lufs,
            data_args.preprocessing_num_workers,
        )
    if data_args.push_metadata_repo_id:  # audio + final captions to a Hub dataset, after the (cached) encoding
        push_captioned_split(raw, captions, measured, data_args, "eval" if is_eval else "train", root)
    encoded = encoded.add_column("text", captions).add_column("source", names)  # every example traces to its file
    encoded, kept = _long_enough(encoded, raw, data_args, split, stats)
    levels = None
    if data_args.silence_threshold_db is not None:  # each track's level per codec frame, measured once and cached
        levels = [
            track_levels(raw[i]["audio"], root, spec.frame_rate)
            for i in progress(iterable=kept, desc="Measuring levels", unit="track")
        ]
    if data_args.chunk_long_tracks:
        sources = list(encoded["source"])  # chunk_dataset gives each chunk its track's source
        encoded = _chunks(
            encoded.remove_columns(["source"]), sources, levels, data_args, model, chroma_extractor, split, stats
        )
    elif levels is not None:
        encoded = _loud_enough(encoded, raw, kept, levels, data_args, split, stats)
    if is_eval:
        ratio = chroma_frames_per_code_frame(chroma_extractor, spec) if chroma_extractor is not None else None
        min_frames = max(1, spec.frames(data_args.min_duration_in_seconds))
        encoded = fixed_windows(encoded, spec.frames(data_args.max_duration_in_seconds), min_frames, ratio)
    logger.info("%s split: %d examples", split, len(encoded))
    return encoded


def _tracks(
    data_args: DataArguments,
    split: str | None,
    is_eval: bool,
    model: PreTrainedModel,
    root: Path,
    codec: str,
    chroma_extractor: Any,
    seed: int,
    stats: dict[str, Any],
    cache_dir: str | None,
) -> tuple[datasets.Dataset, datasets.Dataset | None, str, list[str]]:
    """The split's readable tracks (``audio``, ``text``), their codes when streamed (else None), the split's name,
    and each track's name (:func:`~.sources.source_names`).

    Every file is checked before anything else (bad ones skipped and listed, or an error with ``strict``), so that
    ``eval_split_percentage`` holds out readable tracks only.
    """
    limit = data_args.max_eval_samples if is_eval else data_args.max_train_samples
    if data_args.streaming:  # audio never stored: codes, captions and source names come from the stream
        encoded = encode_stream(data_args, split, model, root, codec, chroma_extractor, limit, cache_dir)
        raw = encoded.select_columns(["source", "text"]).rename_column("source", "audio")
        stats.update(tracks=len(raw), own_captions=sum(bool((t or "").strip()) for t in raw["text"]), auto_captioned=0)
        return raw, encoded.remove_columns(["source", "text"]), split, list(raw["audio"])
    if data_args.eval_split_percentage > 0:  # both sides come from the training split, whole tracks on one side
        raw = load_split(data_args, data_args.train_split_name, cache_dir)
        # the bad files are reported once, with the training side
        raw = screen_split(raw, data_args.dataset_name, "train", root, data_args.strict, {} if is_eval else stats)
        if len(raw) < 2:
            raise UserError(
                f"eval_split_percentage needs at least 2 readable tracks, '{data_args.dataset_name}' has {len(raw)}; "
                "add audio or set eval_split_percentage to 0"
            )
        train_tracks, eval_tracks = split_tracks(len(raw), data_args.eval_split_percentage, seed)
        raw = raw.select(eval_tracks if is_eval else train_tracks)
        loaded = data_args.train_split_name
        split = "eval" if is_eval else "train"
        if limit is not None:
            raw = raw.select(range(min(limit, len(raw))))
    else:
        raw = load_split(data_args, split, cache_dir)
        if limit is not None:  # the first N clips, checked
            raw = raw.select(range(min(limit, len(raw))))
        raw = screen_split(raw, data_args.dataset_name, split, root, data_args.strict, stats)
        loaded = split
    stats.update(tracks=len(raw), own_captions=sum(bool((t or "").strip()) for t in raw["text"]), auto_captioned=0)
    return raw, None, split, source_names(raw, data_args, loaded)


def _long_enough(
    encoded: datasets.Dataset, raw: datasets.Dataset, data_args: DataArguments, split: str, stats: dict[str, Any]
) -> tuple[datasets.Dataset, list[int]]:
    """The clips at least ``min_duration_in_seconds`` long (without their ``seconds`` column), and their indices.

    Raises:
        UserError: no clip is long enough.
    """
    minimum = data_args.min_duration_in_seconds
    seconds = encoded["seconds"]
    kept = [i for i, s in enumerate(seconds) if s >= minimum]
    stats.update(
        seconds_found=float(sum(seconds)),
        too_short=len(encoded) - len(kept),
        seconds_too_short=float(sum(seconds) - sum(seconds[i] for i in kept)),
        silent_tracks=0,
    )
    stats.setdefault("skipped_files", []).extend(
        skipped_entry(describe_source(raw[i]["audio"]), f"too short: {s:.2f} s < min_duration_in_seconds")
        for i, s in enumerate(seconds)
        if s < minimum
    )
    if len(kept) < len(encoded):
        logger.warning(
            "%d of %d %s clips are shorter than min_duration_in_seconds=%g and are left out",
            len(encoded) - len(kept),
            len(encoded),
            split,
            minimum,
        )
    if not kept:
        raise UserError(
            f"no {split} clip is at least min_duration_in_seconds={minimum:g} s long; lower min_duration_in_seconds "
            "or add longer audio"
        )
    return encoded.select(kept).remove_columns(["seconds"]), kept


def _loud_enough(
    encoded: datasets.Dataset,
    raw: datasets.Dataset,
    kept: list[int],
    levels: list[list[float]],
    data_args: DataArguments,
    split: str,
    stats: dict[str, Any],
) -> datasets.Dataset:
    """The whole tracks whose level reaches ``silence_threshold_db`` (``kept[j]``: the raw track of row j).

    Raises:
        UserError: every track is quieter.
    """
    threshold = data_args.silence_threshold_db
    track_db = [level_db(track, 0, len(track)) for track in levels]
    loud = [j for j, db in enumerate(track_db) if db >= threshold]
    if len(loud) < len(encoded):
        logger.warning(
            "%d of %d %s tracks are quieter than silence_threshold_db=%g dBFS and are left out",
            len(encoded) - len(loud),
            len(encoded),
            split,
            threshold,
        )
    stats["silent_tracks"] = len(encoded) - len(loud)
    stats.setdefault("skipped_files", []).extend(
        skipped_entry(describe_source(raw[kept[j]]["audio"]), f"silent: {db:.1f} dBFS")
        for j, db in enumerate(track_db)
        if db < threshold
    )
    if not loud:
        raise UserError(
            f"every {split} track is quieter than silence_threshold_db={threshold:g} dBFS; lower the threshold (or "
            "unset it) or check the audio"
        )
    return encoded.select(loud)


def _chunks(
    encoded: datasets.Dataset,
    sources: list[str],
    levels: list[list[float]] | None,
    data_args: DataArguments,
    model: PreTrainedModel,
    chroma_extractor: Any,
    split: str,
    stats: dict[str, Any],
) -> datasets.Dataset:
    """Each track cut into chunks of ``max_duration_in_seconds`` with its tail handled by ``tail_policy`` (silent
    chunks left out with ``silence_threshold_db``).

    Raises:
        UserError: every chunk is quieter than the silence threshold.
    """
    spec = AudioSpec.of(model)
    max_frames = spec.frames(data_args.max_duration_in_seconds)
    min_frames = max(1, spec.frames(data_args.min_duration_in_seconds))
    policy, threshold = data_args.tail_policy, data_args.silence_threshold_db
    silence = None
    if policy == "pad":  # the codes of silence, to pad short tails with
        samples = (max_frames + 2) * spec.samples_per_frame
        silence = encode_clip(model.audio_encoder.eval(), np.zeros((spec.channels, samples), np.float32))
    ratio = chroma_frames_per_code_frame(chroma_extractor, spec) if chroma_extractor is not None else None
    tracks = len(encoded)
    track_frames = [len(codes[0]) for codes in encoded["codes"]]
    stats.update(plan_summary(track_frames, max_frames, min_frames, policy, levels, threshold))
    encoded = chunk_dataset(
        encoded, max_frames, min_frames, policy, sources, spec.frame_rate, silence, ratio, levels, threshold
    )
    if threshold is not None:  # a track none of whose chunks is loud enough is left out whole
        kept = set(encoded["source"])
        stats.setdefault("skipped_files", []).extend(
            skipped_entry(source, "silent: every chunk below silence_threshold_db")
            for source in sources
            if source not in kept
        )
        if not len(encoded):
            raise UserError(
                f"every {split} chunk is quieter than silence_threshold_db={threshold:g} dBFS; lower the threshold "
                "(or unset it) or check the audio"
            )
    logger.info("%s split: %d tracks cut into %d chunks (tail_policy=%s)", split, tracks, len(encoded), policy)
    return encoded
