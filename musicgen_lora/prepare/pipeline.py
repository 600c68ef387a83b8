"""The preparation of a run's data, as one story (:func:`prepare_data`, the steps numbered as in the transformers
examples' ``main()``): list the sources once; screen; decode each track once, measuring and encoding it from that
decode; caption; keep what is long and loud enough and cut chunks; save the splits, captions, report and
fingerprint together. Each stage takes the :class:`~.context.PrepareContext` and returns a small report; the data
report is assembled from those. Training reuses the result (:func:`load_or_prepare`) while nothing that shapes it
changed."""

from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path
from typing import Any

import datasets
from transformers import PreTrainedModel, ProcessorMixin

from ..config.arguments import ParsedConfig
from ..files import (
    atomic_write_json,
    atomic_write_text,
    cache_root,
    check_apart_from_data,
    ensure_writable_folder,
    run_lock,
    save_dataset_atomically,
)
from ..hub.dataset import check_can_push_metadata, push_captioned_split
from ..logs import progress, progress_bars
from ..models.loading import check_melody_options, load_model_and_processor
from ..models.spec import chroma_frames_per_code_frame
from .captions import caption_measures, caption_tracks, check_captions, fit_text_encoder
from .chunking import fixed_windows
from .context import PrepareContext, Sources
from .encoding import encode_dataset, share_rows
from .guards import check_prepared_data_is_free, disk_full_as_user_error, refuse_changed_data, staged_folder
from .limits import chunks, levels_kind, levels_measure, long_enough, loud_enough, track_levels
from .processes import from_main_process, run_in_step
from .report import CAPTIONS_NAME, REPORT_NAME, REPORTED_OPTIONS, SplitReport
from .reuse import (
    FINGERPRINT_NAME,
    PREPARED_DIR_NAME,
    already_prepared,
    load_prepared,
    prepared_fingerprint,
    split_plan,
    usable_reason,
)
from .tracks import select_tracks
from .vocals import remove_vocals

logger = logging.getLogger(__name__)


def prepare_command(parsed: ParsedConfig) -> dict[str, Any]:
    """``python -m musicgen_lora.prepare``: :func:`prepare_data` holding ``output_dir``'s lock (a training run
    writing there, or another ``prepare``, is refused), and refusing to replace the prepared data of a run that
    output_dir holds with data prepared otherwise.

    Raises:
        UserError: as :func:`prepare_data`; the folder is locked; it holds a run prepared with other data.
    """
    check_apart_from_data(parsed.training.output_dir, parsed.data.dataset_name)  # before the lock is written there
    ensure_writable_folder(parsed.training.output_dir, "output_dir")
    with run_lock(parsed.training.output_dir, what="prepare"):
        check_prepared_data_is_free(parsed)
        return prepare_data(parsed)


def prepare_data(
    parsed: ParsedConfig, model: PreTrainedModel | None = None, processor: ProcessorMixin | None = None
) -> dict[str, Any]:
    """Prepare every split of a run; returns the data report (also written as OUTPUT_DIR/prepared_data/...).

    The splits, ``data_report.json``, ``captions.jsonl`` and ``fingerprint.json`` (see
    :func:`~.reuse.prepared_fingerprint`) are written to ``OUTPUT_DIR/prepared_data`` together; training reuses
    them while the fingerprint matches.

    Raises:
        UserError: bad input, or a full disk (nothing half-written is left).
    """
    # disable_tqdm covers every bar of the preparation: loading the model, encoding, cutting chunks, saving the splits
    with progress_bars(not parsed.training.disable_tqdm), disk_full_as_user_error(parsed):
        return _prepare_all_splits(parsed, model, processor)


def _prepare_all_splits(
    parsed: ParsedConfig,
    model: PreTrainedModel | None,
    processor: ProcessorMixin | None,
    sources: Sources | None = None,
) -> dict[str, Any]:
    """:func:`prepare_data` without the progress-bar and disk switches."""
    data_args, training = parsed.data, parsed.training
    out = Path(training.output_dir).expanduser() / PREPARED_DIR_NAME
    check_apart_from_data(training.output_dir, data_args.dataset_name)
    ensure_writable_folder(training.output_dir, "output_dir")
    ensure_writable_folder(cache_root(data_args.data_cache_dir), "data_cache_dir")
    sources = sources or Sources(data_args, parsed.model.cache_dir)
    # 1. list the sources, once: the fingerprint and every split read the same listing
    if model is None or processor is None:
        report = already_prepared(parsed, out, sources)
        if report is not None:
            return report
        model, processor = load_model_and_processor(parsed.model)
        check_melody_options(model, parsed)  # training checks them itself, once
    context = PrepareContext.of(parsed, model, processor, sources)
    fingerprint = prepared_fingerprint(parsed, context.codec, context.spec, context.chroma_extractor, sources)
    # 2.-6. every split is prepared before the folder is touched, so bad data never spoils an earlier run's
    splits = split_plan(data_args)
    prepared = {name: prepare_split(context, split, is_eval) for name, (split, is_eval) in splits.items()}
    # 7. save the splits, every track's caption (to review and copy back as metadata.jsonl), the report, and last the
    # fingerprint, into a new folder that replaces the old one whole
    report = {
        "dataset_name": data_args.dataset_name,
        "output": str(out),
        "splits": {name: part.report_json(context) for name, part in prepared.items()},
        "options": {key: getattr(data_args, key) for key in REPORTED_OPTIONS},
        "captions_file": str(out / CAPTIONS_NAME),
    }
    rows = [{**row, "split": name} for name, part in prepared.items() for row in part.report.captions.review_rows]
    with staged_folder(out) as staging:
        for name, part in prepared.items():
            save_dataset_atomically(part.examples, staging / name)
        atomic_write_text(staging / CAPTIONS_NAME, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        atomic_write_json(staging / REPORT_NAME, report, indent=2)
        atomic_write_json(staging / FINGERPRINT_NAME, fingerprint, indent=2)
    return report


class PreparedSplit:
    """One prepared split: its examples (columns ``codes``, ``text``, ``source``; ``chroma`` for melody;
    ``offset_seconds`` for chunks) and its stages' report."""

    def __init__(self, examples: datasets.Dataset, report: SplitReport) -> None:
        self.examples, self.report = examples, report

    def report_json(self, context: PrepareContext) -> dict[str, Any]:
        return self.report.as_json(self.examples, context.spec.frame_rate, context.data.max_duration_in_seconds)


def prepare_split(context: PrepareContext, split: str | None, is_eval: bool) -> PreparedSplit:
    """One split ready for the collator, and what each stage found.

    Args:
        split: the split's name in the source (None for the held-out side of ``eval_split_percentage``).
        is_eval: the evaluation side: fixed consecutive windows instead of whole tracks.

    Raises:
        UserError: on bad input, or when no clip is long (or loud) enough.
    """
    data = context.data
    if data.push_metadata_repo_id:  # fail before the work, not after it
        check_can_push_metadata(data.push_metadata_repo_id)
    # 2. screen: the split's tracks, bad files skipped and reported, the held-out share among the readable ones
    tracks = select_tracks(context, split, is_eval)
    table = tracks.table
    check_captions(table, data, context.root)  # a caption nothing could fill: said before any decoding
    if data.demucs_model_path:  # each track's instrumental (cached) is what gets measured and encoded
        table = remove_vocals(table, data.demucs_model_path, context.root, progress)
    # 3. decode each track once: its caption measurements, levels and codes come from that decode (all cached)
    codes = tracks.codes if tracks.codes is not None else encode_tracks(context, table)
    # 4. caption: caption_template filled with instance_prompt, own caption, measured fields and CLAP tags
    captions, measured, caption_report = caption_tracks(table, data, context.root)
    captions = fit_text_encoder(captions, table["source"], context.tokenizer)
    if data.push_metadata_repo_id:  # audio + final captions to a Hub dataset, after the (cached) encoding
        push_captioned_split(table, captions, measured, data, "eval" if is_eval else "train", context.root)
    examples = datasets.concatenate_datasets(
        [codes, datasets.Dataset.from_dict({"text": captions, "source": table["source"]})], axis=1
    )  # every example traces to its file
    # 5. limits: long enough, loud enough (whole tracks, or chunk by chunk when cutting chunks)
    audio = table["audio"]
    examples, kept, lengths = long_enough(examples, audio, tracks.name, context)
    audio = [audio[i] for i in kept]
    levels = None
    if data.silence_threshold_db is not None:
        levels = [track_levels(source, context) for source in audio]
    silence = chunked = None
    if data.chunk_long_tracks:
        examples, chunked = chunks(examples, levels, tracks.name, context)
    elif levels is not None:
        examples, silence = loud_enough(examples, levels, audio, tracks.name, context)
    if is_eval:  # evaluation must not depend on random crops: consecutive windows
        examples = _eval_windows(examples, context)
    logger.info("%s split: %d examples", tracks.name, len(examples))
    return PreparedSplit(examples, SplitReport(len(table), tracks.screen, caption_report, lengths, silence, chunked))


def encode_tracks(context: PrepareContext, table: datasets.Dataset) -> datasets.Dataset:
    """The codes of every track (cached, or encoded now), each track decoded at most once: what its caption and
    ``silence_threshold_db`` need measured is taken from the same decode (and cached)."""
    data = context.data
    measures, _ = caption_measures(data, context.root)
    if data.silence_threshold_db is not None:
        measures[levels_kind(context.spec.frame_rate)] = levels_measure(context.spec.frame_rate)
    return encode_dataset(
        table,
        context.model,
        context.root,
        context.codec,
        chroma_extractor=context.chroma_extractor,
        loudness_lufs=data.loudness_target_lufs,
        num_workers=data.preprocessing_num_workers,
        measures=measures,
    )


def _eval_windows(examples: datasets.Dataset, context: PrepareContext) -> datasets.Dataset:
    spec, extractor = context.spec, context.chroma_extractor
    ratio = chroma_frames_per_code_frame(extractor, spec) if extractor is not None else None
    min_frames = max(1, spec.frames(context.data.min_duration_in_seconds))
    return fixed_windows(examples, spec.frames(context.data.max_duration_in_seconds), min_frames, ratio)


def load_or_prepare(
    parsed: ParsedConfig, model: PreTrainedModel, processor: ProcessorMixin, continuing: str | None = None
) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """The run's train (and eval) split from ``OUTPUT_DIR/prepared_data`` when it was prepared with the same data
    options, codec and source files; otherwise prepared now (written there, as ``prepare`` does) and then loaded.

    With several processes (torchrun, accelerate launch) every process calls this. When the data must be prepared,
    each process first prepares its share of the tracks into the shared ``data_cache_dir`` (:func:`prepare_share`,
    encoding on its own device), then each machine's main process assembles ``prepared_data`` from the cache and the
    others load it. An error in any process stops every process with that error's line.

    Args:
        continuing: the checkpoint of a stopped run that the same command continues: its data must not have changed.

    Returns:
        ``(train, eval or None)``.

    Raises:
        UserError: bad input, in whichever process met it; the data changed under a run being continued.
    """
    training = parsed.training
    folder = Path(training.output_dir).expanduser() / PREPARED_DIR_NAME
    context = PrepareContext.of(parsed, model, processor)
    current = prepared_fingerprint(parsed, context.codec, context.spec, context.chroma_extractor, context.sources)
    reason = from_main_process(usable_reason(folder, current, list(split_plan(parsed.data))))  # one decision for all
    if reason is None:
        logger.info("Using the prepared data in %s (same data options, codec and source files)", folder)
    else:
        if continuing is not None:
            refuse_changed_data(folder, current, continuing, training.output_dir)
        if training.process_index == 0:
            log = logger.info if reason.startswith("no complete") else logger.warning
            log("Preparing the data into %s (%s), as python -m musicgen_lora.prepare does", folder, reason)
        if training.world_size > 1 and not parsed.data.streaming:  # a stream is read once, by the main process
            share = partial(prepare_share, context, training)
            run_in_step(share, what="encoding its share of the data")
        work = partial(_prepare_with_listing, parsed, model, processor, context.sources)
        run_in_step(work, active=training.local_process_index == 0)
    splits = load_prepared(folder, list(split_plan(parsed.data)))
    return splits["train"], splits.get("eval")


def _prepare_with_listing(
    parsed: ParsedConfig, model: PreTrainedModel, processor: ProcessorMixin, sources: Sources
) -> dict[str, Any]:
    """:func:`prepare_data` on listings already read (training listed the sources for the fingerprint)."""
    with progress_bars(not parsed.training.disable_tqdm), disk_full_as_user_error(parsed):
        return _prepare_all_splits(parsed, model, processor, sources)


def prepare_share(context: PrepareContext, training: Any) -> None:
    """This process' share of a several-process preparation (``training.process_index`` of ``world_size``), written
    to the shared cache.

    For every split, the tracks of the shards :func:`~.encoding.share_rows` gives this process have their vocals
    removed (``demucs_model_path``), and are decoded once to be measured for their captions and
    ``silence_threshold_db`` and encoded with EnCodec on this process' device (``training.device``): everything
    :func:`prepare_data` then finds in the cache. A one-process preparation encodes the same shards with the same
    cache keys, so an interrupted preparation continues with any number of processes.
    """
    data, encoder = context.data, context.model.audio_encoder
    index, count = training.process_index, training.world_size
    ensure_writable_folder(context.root, "data_cache_dir")
    codec_device = next(encoder.parameters()).device
    encoder.to(training.device)
    try:
        with progress_bars(not training.disable_tqdm and index == 0):  # one process' bars stand for all
            for split, is_eval in split_plan(data).values():
                table = select_tracks(context, split, is_eval).table
                rows = share_rows(len(table), index, count)
                if rows:
                    mine = table.select(rows)
                    if data.demucs_model_path:
                        mine = remove_vocals(mine, data.demucs_model_path, context.root, progress)
                    encode_tracks(context, mine)
    finally:
        encoder.to(codec_device)
