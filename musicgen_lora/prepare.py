"""Prepare the data of a run once, apart from training, and report what it holds.

    python -m musicgen_lora.prepare CONFIG.json [--key value ...]     # the same config (and flags) as training

Loads the sources, holds out evaluation tracks (``eval_split_percentage``), measures levels and captions
(``silence_threshold_db``, ``add_metadata``), normalises loudness and encodes with EnCodec, and cuts chunks
(``chunk_long_tracks``), exactly as training does; then writes the prepared splits (Arrow, ``datasets``),
``data_report.json`` and ``fingerprint.json`` to ``OUTPUT_DIR/prepared_data/`` and prints a short summary.

Training loads those splits while ``fingerprint.json`` (data options, codec, source files' identities and
captions) matches its config, and prepares them itself (this same code) when they are missing or stale.

The expensive work is cached in ``data_cache_dir`` (codes in shards of clips saved as each finishes, tempo/key/levels
per file), so an interrupted ``prepare`` run continues where it stopped: files already analysed and shards already
encoded are not redone. ``preprocessing_num_workers`` encodes the shards in several processes; ``streaming`` reads a
Hub dataset as a stream and keeps only the codes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import collections
import json
import logging
import os
import shutil
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
from transformers import AutoConfig, PreTrainedModel, ProcessorMixin

from .config import FinetuneArguments, ParsedConfig, parse_config
from .data import (
    AudioSpec,
    chroma_settings,
    codec_fingerprint,
    load_split,
    remembered_codec_fingerprint,
    prepare_split,
    save_atomically,
    source_fingerprint,
)
from .errors import exit_on_user_error
from .clap import local_fingerprint
from .screening import counts_text, reason_counts
from .logs import setup_logging
from .modeling import is_melody_model, load_model_and_processor
from .processors import load_processor

logger = logging.getLogger(__name__)

PREPARED_DIR_NAME = "prepared_data"
REPORT_NAME = "data_report.json"
FINGERPRINT_NAME = "fingerprint.json"  # written last: its presence means the prepared splits are complete
PREPARED_FORMAT = 1  # bump when what the prepared splits hold changes, so older prepared folders are redone
HISTOGRAM_BINS = 6
BPM_BIN = 10  # width of the tempo histogram's bins
# Options that never change the prepared data (model, LoRA, samples, where caches live, how many processes).
# Every other option of FinetuneArguments is part of the prepared data's fingerprint, so a data option added later
# makes older prepared folders stale by default instead of being missed.
NOT_DATA_OPTIONS = frozenset({
    "model_name_or_path", "trust_remote_code", "overwrite_output_dir", "base_model_id", "cache_dir", "data_cache_dir",
    "preprocessing_num_workers", "chroma_dropout_prob", "text_dropout_prob", "skip_nonfinite_batches", "use_lora",
    "lora_r", "lora_alpha", "lora_dropout", "decoder_dropout", "lora_target_modules", "use_rslora", "use_dora", "train_text_encoder",
    "lora_target_regex", "sample_prompts", "sample_every_steps", "sample_duration_in_seconds", "guidance_scale",
    "strict",  # stops the run or not; the data is the same
    "base_model_dtype", "attn_implementation",  # EnCodec stays fp32
    # push_metadata_repo_id stays a data option: setting it after a `prepare` must prepare (from the caches) and push
})  # fmt: skip
# Local weights that shape captions or audio: their files' identity (not only the path) is part of the fingerprint,
# so new weights at the same path make the prepared data stale.
WEIGHT_OPTIONS = ("clap_model_name_or_path", "demucs_model_path")


def _histogram(seconds: list[float], maximum: float) -> dict[str, int]:
    """Counts of example lengths in HISTOGRAM_BINS equal bins from 0 to the maximum (last bin closed)."""
    width = maximum / HISTOGRAM_BINS
    counts = [0] * HISTOGRAM_BINS
    for value in seconds:
        counts[min(HISTOGRAM_BINS - 1, int(value / width))] += 1
    return {f"{i * width:g}-{(i + 1) * width:g} s": n for i, n in enumerate(counts)}


def files_report(stats: dict[str, Any]) -> dict[str, Any]:
    """Files found, read (decodable) and left out, with each left-out file and its reason, and the reason counts."""
    skipped = stats.get("skipped_files", [])
    found = stats.get("files_found", stats["tracks"])  # streamed data is not checked apart: every row was read
    return {
        "found": found, "read": stats.get("files_read", found), "skipped": len(skipped),
        "reasons": reason_counts(skipped), "skipped_files": skipped,
    }  # fmt: skip


def tempo_key_report(estimates: list[dict[str, Any]]) -> dict[str, Any]:
    """The distribution of the estimated tempi (histogram in BPM_BIN-wide bins, median) and keys (counts, most
    common first) over the analysed tracks."""
    bpms = sorted(e["bpm"] for e in estimates if e.get("bpm") is not None)
    bins = collections.Counter(int(bpm // BPM_BIN) * BPM_BIN for bpm in bpms)
    keys = collections.Counter(e["key"] for e in estimates if e.get("key"))
    return {
        "tracks_analysed": len(estimates),
        "bpm_histogram": {f"{low}-{low + BPM_BIN} bpm": bins[low] for low in sorted(bins)},
        "bpm_median": float(statistics.median(bpms)) if bpms else None,
        "keys": dict(keys.most_common()),
        "tracks_without_tempo": len(estimates) - len(bpms),
        "tracks_without_key": len(estimates) - sum(keys.values()),
    }


def split_report(dataset: datasets.Dataset, stats: dict[str, Any], frame_rate: float, maximum: float) -> dict[str, Any]:
    """One split's part of the data report."""
    lengths = [len(codes[0]) / frame_rate for codes in dataset["codes"]]
    padded = stats.get("padded_frames", 0) / frame_rate
    return {
        "tracks": stats["tracks"],
        "examples": len(dataset),
        "hours_found": stats["seconds_found"] / 3600,
        "hours_kept": sum(lengths) / 3600,
        "seconds_padded_with_silence": padded,
        "seconds_seen_twice_by_overlap": stats.get("overlap_frames", 0) / frame_rate,
        "length_histogram": _histogram(lengths, maximum),
        "captions": {
            "tracks_with_own_caption": stats["own_captions"],
            "tracks_with_added_tempo_key": stats["auto_captioned"],
            "coverage": stats["own_captions"] / max(stats["tracks"], 1),
        },
        "left_out": {
            "too_short_tracks": stats["too_short"],
            "too_short_seconds": stats["seconds_too_short"],
            "silent_tracks": stats["silent_tracks"],
            "silent_chunks": stats.get("silent_chunks", 0),
            "dropped_tail_seconds": stats.get("dropped_tail_frames", 0) / frame_rate,
        },
        "files": files_report(stats),
        **({"tempo_key": tempo_key_report(stats["track_metadata"])} if "track_metadata" in stats else {}),
    }


def split_plan(args: FinetuneArguments) -> dict[str, tuple[str | None, bool]]:
    """The prepared splits of a run: ``{"train": (split name, False), "eval": (split name, True)}``."""
    splits = {"train": (args.train_split_name, False)}
    if args.eval_split_name or args.eval_split_percentage > 0:
        splits["eval"] = (args.eval_split_name, True)
    return splits


def prepared_fingerprint(
    parsed: ParsedConfig, codec: str, spec: AudioSpec, chroma_extractor: Any = None
) -> dict[str, Any]:
    """Everything that shapes the prepared data: the data options, the codec and audio format, and the sources'
    identities (each file's path, size and modification time and the captions; a Hub dataset's fingerprint; a
    streamed dataset's name, config and split)."""
    args = parsed.args
    options = {k: v for k, v in dataclasses.asdict(args).items() if k not in NOT_DATA_OPTIONS}
    if args.eval_split_percentage > 0:
        options["seed"] = parsed.training.seed  # which tracks are held out
    for option in WEIGHT_OPTIONS:
        if getattr(args, option) and Path(getattr(args, option)).expanduser().exists():
            options[f"files of {option}"] = local_fingerprint(getattr(args, option))
    sources: dict[str, Any] = {}
    for split, is_eval in split_plan(args).values():
        split = args.train_split_name if args.eval_split_percentage > 0 or split is None else split
        if split not in sources:
            sources[split] = (
                ["stream", args.dataset_name, args.dataset_config_name, split] if args.streaming
                else source_fingerprint(load_split(args, split))
            )  # fmt: skip
    audio = {"fingerprint": codec, "sampling_rate": spec.sampling_rate, "channels": spec.channels,
             "chroma": chroma_settings(chroma_extractor) if chroma_extractor is not None else None}  # fmt: skip
    return json.loads(json.dumps({"format": PREPARED_FORMAT, "options": options, "codec": audio, "sources": sources}))


def stale_reason(folder: Path, current: dict[str, Any]) -> str | None:
    """Why the prepared data in ``folder`` cannot be used for ``current`` (None: it can)."""
    try:
        stored = json.loads((folder / FINGERPRINT_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"no complete prepared data in {folder}"
    if stored == current:
        return None
    if stored.get("format") != current["format"]:
        return "it was prepared by another version of this project"
    changed = sorted(k for k in {*stored.get("options", {}), *current["options"]}
                     if stored.get("options", {}).get(k, "-") != current["options"].get(k, "-"))  # fmt: skip
    if changed:
        return f"{', '.join(changed)} changed since it was prepared"
    if stored.get("codec") != current["codec"]:
        return "the model's audio codec (EnCodec weights or audio format) is another"
    return "the source files or captions changed since it was prepared"


def usable_reason(folder: Path, current: dict[str, Any], names: list[str]) -> str | None:
    """Why the prepared data in ``folder`` cannot be used for ``current`` with splits ``names`` (None: it can)."""
    reason = stale_reason(folder, current)
    missing = [name for name in names if not (folder / name / "dataset_info.json").is_file()]
    if reason is None and missing:
        reason = f"its {' and '.join(missing)} split is missing"
    return reason


def already_prepared(parsed: ParsedConfig, folder: Path) -> dict[str, Any] | None:
    """The report of ``folder`` when it already holds exactly this preparation, found without loading the model
    (the codec's fingerprint is remembered by its files' identity); None when the data must be prepared."""
    args = parsed.args
    codec = remembered_codec_fingerprint(args)
    if codec is None:
        return None
    try:
        config = AutoConfig.from_pretrained(args.model_name_or_path, cache_dir=args.cache_dir)
        melody = getattr(config, "model_type", None) == "musicgen_melody"
        chroma = load_processor(args.model_name_or_path, cache_dir=args.cache_dir).feature_extractor if melody else None
        current = prepared_fingerprint(parsed, codec, AudioSpec.of_config(config), chroma)
        if usable_reason(folder, current, list(split_plan(args))) is not None:
            return None
        report = json.loads((folder / REPORT_NAME).read_text(encoding="utf-8"))
        if args.strict and any(part["files"]["skipped"] for part in report["splits"].values()):
            return None  # strict stops at the bad files the earlier preparation left out
    except (OSError, ValueError, KeyError, TypeError, ImportError, AttributeError):
        return None  # the full path loads the model and says what is wrong
    logger.info("Nothing to prepare: %s holds this data, prepared with the same options, codec and source files", folder)
    return report


def load_prepared(folder: Path, names: list[str]) -> dict[str, datasets.Dataset]:
    return {name: datasets.load_from_disk(str(folder / name)) for name in names}


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """``datasets`` progress bars (and ours, which follow them) on or off for a block (``disable_tqdm``)."""
    was_enabled = datasets.utils.is_progress_bar_enabled()
    if was_enabled and not enabled:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled and not enabled:
            datasets.enable_progress_bars()


def prepare_data(
    parsed: ParsedConfig, model: PreTrainedModel | None = None, processor: ProcessorMixin | None = None
) -> dict[str, Any]:
    """Prepare every split of a run; returns the data report (also written as OUTPUT_DIR/prepared_data/...).

    The splits, ``data_report.json`` and, last, ``fingerprint.json`` (see :func:`prepared_fingerprint`) are written
    to ``OUTPUT_DIR/prepared_data``; training reuses them while the fingerprint matches.
    """
    args, training = parsed.args, parsed.training
    out = Path(training.output_dir) / PREPARED_DIR_NAME
    if model is None or processor is None:
        report = already_prepared(parsed, out)
        if report is not None:
            return report
        model, processor = load_model_and_processor(args)
    chroma_extractor = processor.feature_extractor if is_melody_model(model) else None
    codec = codec_fingerprint(args, model)
    spec = AudioSpec.of(model)
    fingerprint = prepared_fingerprint(parsed, codec, spec, chroma_extractor)  # before: files may change
    report: dict[str, Any] = {"dataset_name": args.dataset_name, "output": str(out), "splits": {}}
    splits = split_plan(args)
    prepared = {}
    with progress_bars(not training.disable_tqdm):
        # every split is prepared before the folder is touched, so bad data never spoils an earlier run's
        for name, (split, is_eval) in splits.items():
            stats: dict[str, Any] = {}
            dataset = prepare_split(args, split, model, codec, is_eval, chroma_extractor, training.seed, stats)
            prepared[name] = dataset
            report["splits"][name] = split_report(dataset, stats, spec.frame_rate, args.max_duration_in_seconds)
    (out / FINGERPRINT_NAME).unlink(missing_ok=True)  # the folder is incomplete until the new one is written
    for name, dataset in prepared.items():
        save_atomically(dataset, out / name, replace=True)
    if "eval" not in splits:
        shutil.rmtree(out / "eval", ignore_errors=True)  # from an earlier preparation with evaluation
    report["options"] = {
        key: getattr(args, key)
        for key in (
            "chunk_long_tracks", "tail_policy", "eval_split_percentage", "add_metadata", "loudness_target_lufs",
            "silence_threshold_db", "max_duration_in_seconds", "min_duration_in_seconds", "instance_prompt",
            "streaming", "caption_template", "clap_model_name_or_path", "clap_tag_threshold", "demucs_model_path",
        )
    }  # fmt: skip
    (out / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    staging = out / f".{FINGERPRINT_NAME}.{os.getpid()}"
    staging.write_text(json.dumps(fingerprint, indent=2) + "\n", encoding="utf-8")
    os.replace(staging, out / FINGERPRINT_NAME)
    return report


def load_or_prepare(
    parsed: ParsedConfig, model: PreTrainedModel, processor: ProcessorMixin
) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """The run's train (and eval) split from ``OUTPUT_DIR/prepared_data`` when it was prepared with the same data
    options, codec and source files; otherwise prepared now (written there, as ``prepare`` does) and then loaded.

    Returns:
        ``(train, eval or None)``.
    """
    folder = Path(parsed.training.output_dir) / PREPARED_DIR_NAME
    chroma_extractor = processor.feature_extractor if is_melody_model(model) else None
    current = prepared_fingerprint(parsed, codec_fingerprint(parsed.args, model), AudioSpec.of(model), chroma_extractor)
    reason = usable_reason(folder, current, list(split_plan(parsed.args)))
    if reason is None:
        logger.info("Using the prepared data in %s (same data options, codec and source files)", folder)
    else:
        log = logger.info if reason.startswith("no complete") else logger.warning
        log("Preparing the data into %s (%s), as python -m musicgen_lora.prepare does", folder, reason)
        prepare_data(parsed, model, processor)
    splits = load_prepared(folder, list(split_plan(parsed.args)))
    return splits["train"], splits.get("eval")


def summary(report: dict[str, Any]) -> str:
    """The few lines printed at the end of ``prepare``."""
    lines = []
    for name, part in report["splits"].items():
        left = part["left_out"]
        captions = part["captions"]
        lines += [
            f"{name}: {part['examples']} examples from {part['tracks']} tracks, {part['hours_found']:.2f} h found, "
            f"{part['hours_kept']:.2f} h kept",
            "  lengths: " + ", ".join(f"{k}: {v}" for k, v in part["length_histogram"].items() if v),
            f"  captions: {captions['tracks_with_own_caption']}/{part['tracks']} tracks had one, "
            f"{captions['tracks_with_added_tempo_key']} got tempo/key added",
            f"  left out: {left['too_short_tracks']} too short, {left['silent_tracks']} silent tracks, "
            f"{left['silent_chunks']} silent chunks, {left['dropped_tail_seconds']:.1f} s of tails",
        ]
        files = part["files"]
        lines.append(
            f"  files: {files['found']} found, {files['read']} read, {files['skipped']} left out"
            + (f" ({counts_text(files['skipped_files'])}; each listed in {REPORT_NAME})" if files["skipped"] else "")
        )
        if "tempo_key" in part:
            tempo_key = part["tempo_key"]
            lines.append(
                "  tempo: " + (", ".join(f"{k}: {v}" for k, v in tempo_key["bpm_histogram"].items()) or "none found")
                + "; keys: " + (", ".join(f"{k}: {v}" for k, v in tempo_key["keys"].items()) or "none found")
            )  # fmt: skip
    lines.append(f"written to {report['output']} ({REPORT_NAME})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else list(argv)
    setup_logging()
    with exit_on_user_error(argv):
        report = prepare_data(parse_config(argv))
        print(summary(report))
        return report


if __name__ == "__main__":
    main()
