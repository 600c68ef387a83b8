"""Prepare the data of a run once, apart from training, and report what it holds.

    python -m musicgen_lora.prepare CONFIG.json [--key value ...]     # the same config (and flags) as training

Loads the sources, holds out evaluation tracks (``eval_split_percentage``), measures levels and captions
(``silence_threshold_db``, ``add_metadata``), normalises loudness and encodes with EnCodec, and cuts chunks
(``chunk_long_tracks``), exactly as training does; then writes the prepared splits (Arrow, ``datasets``) and
``data_report.json`` to ``OUTPUT_DIR/prepared_data/`` and prints a short summary.

The expensive work is cached in ``data_cache_dir`` (codes per dataset, tempo/key/levels per file), so training
with the same config afterwards reuses it without encoding again, and an interrupted ``prepare`` run continues
where it stopped: files already analysed and splits already encoded are not redone.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import datasets

from .config import ParsedConfig, parse_config
from .data import AudioSpec, module_fingerprint, prepare_split
from .errors import exit_on_user_error
from .logs import setup_logging
from .modeling import is_melody_model, load_model_and_processor

PREPARED_DIR_NAME = "prepared_data"
REPORT_NAME = "data_report.json"
HISTOGRAM_BINS = 6


def _histogram(seconds: list[float], maximum: float) -> dict[str, int]:
    """Counts of example lengths in HISTOGRAM_BINS equal bins from 0 to the maximum (last bin closed)."""
    width = maximum / HISTOGRAM_BINS
    counts = [0] * HISTOGRAM_BINS
    for value in seconds:
        counts[min(HISTOGRAM_BINS - 1, int(value / width))] += 1
    return {f"{i * width:g}-{(i + 1) * width:g} s": n for i, n in enumerate(counts)}


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
    }


def _save(dataset: datasets.Dataset, target: Path) -> None:
    """Write a split next to its place and swap it in, so an interruption never leaves half a split."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        dataset.save_to_disk(str(staging))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def prepare_data(parsed: ParsedConfig) -> dict[str, Any]:
    """Prepare every split of a run; returns the data report (also written as OUTPUT_DIR/prepared_data/...)."""
    args, training = parsed.args, parsed.training
    model, processor = load_model_and_processor(args)
    chroma_extractor = processor.feature_extractor if is_melody_model(model) else None
    codec_fingerprint = module_fingerprint(model.audio_encoder)
    frame_rate = AudioSpec.of(model).frame_rate
    out = Path(training.output_dir) / PREPARED_DIR_NAME
    splits = {"train": (args.train_split_name, False)}
    if args.eval_split_name or args.eval_split_percentage > 0:
        splits["eval"] = (args.eval_split_name, True)
    report: dict[str, Any] = {"dataset_name": args.dataset_name, "output": str(out), "splits": {}}
    for name, (split, is_eval) in splits.items():
        stats: dict[str, Any] = {}
        dataset = prepare_split(args, split, model, codec_fingerprint, is_eval, chroma_extractor, training.seed, stats)
        _save(dataset, out / name)
        report["splits"][name] = split_report(dataset, stats, frame_rate, args.max_duration_in_seconds)
    report["options"] = {
        key: getattr(args, key)
        for key in (
            "chunk_long_tracks", "tail_policy", "eval_split_percentage", "add_metadata", "loudness_target_lufs",
            "silence_threshold_db", "max_duration_in_seconds", "min_duration_in_seconds", "instance_prompt",
        )
    }  # fmt: skip
    (out / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


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
