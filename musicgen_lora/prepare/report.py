"""The data report: what preparation found, kept and left out (and why), per split, as ``data_report.json`` and a few
printed lines.
"""

from __future__ import annotations

import collections
import dataclasses
import statistics
from typing import Any

import datasets

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


# ------------------------------------------------------------------------------------------------ each stage's report


def skipped_entry(path: str, reason: str) -> dict[str, str]:
    """One line of the data report's list of files left out: ``{"path": ..., "reason": "<kind>: <detail>"}``."""
    return {"path": path, "reason": reason}


def reason_counts(skipped: list[dict[str, str]]) -> dict[str, int]:
    """How many files were left out for each kind of reason (``{"unreadable": 2, "silent": 1}``)."""
    return dict(collections.Counter(entry["reason"].split(":", 1)[0] for entry in skipped))


def counts_text(skipped: list[dict[str, str]]) -> str:
    """``"2 unreadable, 1 silent"``."""
    return ", ".join(f"{n} {kind}" for kind, n in reason_counts(skipped).items())


@dataclasses.dataclass(frozen=True)
class ScreenReport:
    """What screening found: files listed, files readable, the bad ones (data report entries, see
    :func:`~.screening.skipped_entry`), and the audio files the listing left out (not in the metadata)."""

    found: int
    read: int
    skipped: list[dict[str, str]] = dataclasses.field(default_factory=list)
    not_listed: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class CaptionReport:
    """What captioning did: own captions, captions that got a measured field, captions taken as written, fields left
    out for low confidence (``{"source", "bpm"/"key": confidence}``), every track's estimates (None without
    ``add_metadata``) and the rows of captions.jsonl."""

    own_captions: int
    auto_captioned: int
    final_captions: int
    low_confidence: list[dict[str, Any]]
    track_metadata: list[dict[str, Any]] | None
    review_rows: list[dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class LengthReport:
    """The audio found, and the tracks shorter than ``min_duration_in_seconds`` (left out)."""

    seconds_found: float
    too_short: int
    seconds_too_short: float
    skipped: list[dict[str, str]]


@dataclasses.dataclass(frozen=True)
class SilenceReport:
    """Whole tracks quieter than ``silence_threshold_db`` (left out)."""

    silent_tracks: int
    skipped: list[dict[str, str]]


@dataclasses.dataclass(frozen=True)
class ChunkReport:
    """What cutting into chunks did (see :func:`~.chunking.plan_summary`), and the tracks left with no loud chunk."""

    chunks: int
    silent_chunks: int
    dropped_tail_frames: int
    padded_frames: int
    overlap_frames: int
    skipped: list[dict[str, str]]


@dataclasses.dataclass(frozen=True)
class SplitReport:
    """One split's stage reports, assembled into its part of ``data_report.json`` by :meth:`as_json`."""

    tracks: int
    screen: ScreenReport
    captions: CaptionReport
    lengths: LengthReport
    silence: SilenceReport | None = None
    chunks: ChunkReport | None = None

    @property
    def skipped(self) -> list[dict[str, str]]:
        """Every file left out, with its reason, in the order the stages left them out."""
        stages = (self.screen, self.lengths, self.silence, self.chunks)
        return [entry for stage in stages if stage is not None for entry in stage.skipped]

    def as_json(self, dataset: datasets.Dataset, frame_rate: float, maximum: float) -> dict[str, Any]:
        """The split's part of the data report, for its final examples ``dataset``."""
        lengths = [len(codes[0]) / frame_rate for codes in dataset["codes"]]
        chunks, captions = self.chunks, self.captions
        return {
            "tracks": self.tracks,
            "examples": len(dataset),
            "hours_found": self.lengths.seconds_found / 3600,
            "hours_kept": sum(lengths) / 3600,
            "seconds_padded_with_silence": (chunks.padded_frames if chunks else 0) / frame_rate,
            "seconds_seen_twice_by_overlap": (chunks.overlap_frames if chunks else 0) / frame_rate,
            "length_histogram": _histogram(lengths, maximum),
            "captions": {
                "tracks_with_own_caption": captions.own_captions,
                "tracks_with_added_tempo_key": captions.auto_captioned,
                "tracks_with_final_caption": captions.final_captions,
                "coverage": captions.own_captions / max(self.tracks, 1),
                "left_out_low_confidence": low_confidence_report(captions.low_confidence),
            },
            "left_out": {
                "too_short_tracks": self.lengths.too_short,
                "too_short_seconds": self.lengths.seconds_too_short,
                "silent_tracks": self.silence.silent_tracks if self.silence else 0,
                "silent_chunks": chunks.silent_chunks if chunks else 0,
                "dropped_tail_seconds": (chunks.dropped_tail_frames if chunks else 0) / frame_rate,
            },
            "files": files_report(self.screen, self.skipped),
            **({"tempo_key": tempo_key_report(captions.track_metadata)} if captions.track_metadata is not None else {}),
        }


# ------------------------------------------------------------------------------------------------ data_report.json

HISTOGRAM_BINS = 6


BPM_BIN = 10  # width of the tempo histogram's bins


def _histogram(seconds: list[float], maximum: float) -> dict[str, int]:
    """Counts of example lengths in HISTOGRAM_BINS equal bins from 0 to the maximum (last bin closed)."""
    width = maximum / HISTOGRAM_BINS
    counts = [0] * HISTOGRAM_BINS
    for value in seconds:
        counts[min(HISTOGRAM_BINS - 1, int(value / width))] += 1
    return {f"{i * width:g}-{(i + 1) * width:g} s": n for i, n in enumerate(counts)}


def files_report(screen: ScreenReport, skipped: list[dict[str, str]]) -> dict[str, Any]:
    """Files found, read (decodable) and left out, with each left-out file and its reason, and the reason counts;
    the audio files a folder's metadata does not list (left out) are counted and named apart."""
    return {
        "found": screen.found,
        "read": screen.read,
        "skipped": len(skipped),
        "reasons": reason_counts(skipped),
        "skipped_files": skipped,
        # only where a folder's metadata left audio files out, so reports of complete listings keep their shape
        **(
            {"not_listed": len(screen.not_listed), "not_listed_files": list(screen.not_listed)}
            if screen.not_listed
            else {}
        ),
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
            + (f", {files['not_listed']} not listed in the metadata" if files.get("not_listed") else "")
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
