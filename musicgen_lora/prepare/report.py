"""The data report: what preparation found, kept and left out (and why), per split, as ``data_report.json`` and a few
printed lines.
"""

from __future__ import annotations

import collections
import statistics
from typing import Any

import datasets

from .screening import counts_text, reason_counts

REPORT_NAME = "data_report.json"


CAPTIONS_NAME = (
    "captions.jsonl"  # every track's final caption and measured fields, for review (see captions.review_row)
)
# The data options repeated in the report, so it says how the data was prepared.
REPORTED_OPTIONS = (
    "chunk_long_tracks", "tail_policy", "eval_split_percentage", "add_metadata", "loudness_target_lufs",
    "silence_threshold_db", "max_duration_in_seconds", "min_duration_in_seconds", "instance_prompt", "streaming",
    "caption_template", "clap_model_name_or_path", "clap_tag_threshold", "demucs_model_path",
)  # fmt: skip


HISTOGRAM_BINS = 6


BPM_BIN = 10  # width of the tempo histogram's bins


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
        "found": found,
        "read": stats.get("files_read", found),
        "skipped": len(skipped),
        "reasons": reason_counts(skipped),
        "skipped_files": skipped,
    }


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


def low_confidence_report(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """How many captions left the tempo / key out because its confidence was below the threshold, and which tracks
    (``{"source", "bpm"/"key": confidence}``, as :func:`~.captions.caption_tracks` found them)."""
    return {
        "bpm": sum("bpm" in e for e in entries),
        "key": sum("key" in e for e in entries),
        "tracks": entries,
    }


def _low_confidence_line(left: dict[str, Any], shown: int = 5) -> str:
    names = [
        f"{e['source']} (" + ", ".join(f"{k} {e[k]:.2f}" for k in ("bpm", "key") if k in e) + ")"
        for e in left["tracks"][:shown]
    ]
    more = f" and {len(left['tracks']) - shown} more" if len(left["tracks"]) > shown else ""
    return (
        f"  low confidence, left out of the caption: tempo {left['bpm']}, key {left['key']}: "
        + "; ".join(names)
        + more
        + f" (all listed in {REPORT_NAME}; estimates in {CAPTIONS_NAME})"
    )


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
            "tracks_with_final_caption": stats.get("final_captions", 0),
            "coverage": stats["own_captions"] / max(stats["tracks"], 1),
            "left_out_low_confidence": low_confidence_report(stats.get("low_confidence", [])),
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
            f"{captions['tracks_with_added_tempo_key']} got tempo/key added"
            + (
                f", {captions['tracks_with_final_caption']} taken as written"
                if captions["tracks_with_final_caption"]
                else ""
            ),
            f"  left out: {left['too_short_tracks']} too short, {left['silent_tracks']} silent tracks, "
            f"{left['silent_chunks']} silent chunks, {left['dropped_tail_seconds']:.1f} s of tails",
        ]
        if captions["left_out_low_confidence"]["tracks"]:
            lines.append(_low_confidence_line(captions["left_out_low_confidence"]))
        files = part["files"]
        lines.append(
            f"  files: {files['found']} found, {files['read']} read, {files['skipped']} left out"
            + (f" ({counts_text(files['skipped_files'])}; each listed in {REPORT_NAME})" if files["skipped"] else "")
        )
        if "tempo_key" in part:
            tempo_key = part["tempo_key"]
            lines.append(
                "  tempo: "
                + (", ".join(f"{k}: {v}" for k, v in tempo_key["bpm_histogram"].items()) or "none found")
                + "; keys: "
                + (", ".join(f"{k}: {v}" for k, v in tempo_key["keys"].items()) or "none found")
            )
    lines.append(f"written to {report['output']} ({REPORT_NAME}; every caption, to review, in {CAPTIONS_NAME})")
    return "\n".join(lines)
