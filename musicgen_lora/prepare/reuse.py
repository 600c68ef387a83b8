"""Reuse of prepared data: the fingerprint of everything that shapes it, why a prepared folder is stale, and loading
it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import datasets
from transformers import AutoConfig

from ..config.arguments import DataArguments, ParsedConfig
from ..files import cache_root, file_identity, files_fingerprint, is_saved_dataset
from ..models.processors import load_processor
from ..models.spec import AudioSpec
from .cache_keys import chroma_settings, remembered_codec_fingerprint, source_fingerprint
from .context import Sources
from .measurements import ANALYSIS_VERSION
from .report import REPORT_NAME
from .sources import source_names

logger = logging.getLogger(__name__)


PREPARED_DIR_NAME = "prepared_data"


FINGERPRINT_NAME = "fingerprint.json"  # written last: its presence means the prepared splits are complete


PREPARED_FORMAT = 3  # bump when what the prepared splits hold changes, so older prepared folders are redone (3: each
# track's identity in fingerprint.json, to name what changed)


# The data options that never change the prepared data (where caches live, how many processes, whether a bad file
# stops the run). Every other DataArguments option is part of the prepared data's fingerprint, so a data option
# added later makes older prepared folders stale by default instead of being missed. push_metadata_repo_id stays
# in: setting it after a `prepare` must prepare again (from the caches) and push.
NOT_SHAPING_OPTIONS = frozenset({"data_cache_dir", "preprocessing_num_workers", "strict"})


# Local weights that shape captions or audio: their files' identity (not only the path) is part of the fingerprint,
# so new weights at the same path make the prepared data stale.
WEIGHT_OPTIONS = ("clap_model_name_or_path", "demucs_model_path")


def split_plan(data_args: DataArguments) -> dict[str, tuple[str | None, bool]]:
    """The prepared splits of a run: ``{"train": (split name, False), "eval": (split name, True)}``."""
    splits = {"train": (data_args.train_split_name, False)}
    if data_args.eval_split_name or data_args.eval_split_percentage > 0:
        splits["eval"] = (data_args.eval_split_name, True)
    return splits


def source_split(data_args: DataArguments, split: str | None) -> str:
    """The source split a prepared split comes from (both sides of ``eval_split_percentage`` from the training one)."""
    return data_args.train_split_name if data_args.eval_split_percentage > 0 or split is None else split


def tracks_identity(tracks: datasets.Dataset, data_args: DataArguments, split: str) -> dict[str, Any]:
    """A listed split's identity: the digest of :func:`~.cache_keys.source_fingerprint` and, for files, each track's
    name with a short hash of its file's identity and caption (so that what changed can be named)."""
    identity: dict[str, Any] = {"digest": source_fingerprint(tracks)}
    audio = tracks["audio"]
    if audio and not (isinstance(audio[0], dict) and audio[0].get("bytes")):
        texts = tracks["text"]
        finals = tracks["caption_final"] if "caption_final" in tracks.column_names else [False] * len(tracks)
        identity["tracks"] = {
            name: hashlib.sha256(json.dumps([file_identity(a), t, f]).encode()).hexdigest()[:12]
            for name, a, t, f in zip(source_names(tracks, data_args, split), audio, texts, finals, strict=True)
        }
    return identity


def changed_tracks(stored: dict[str, Any], current: dict[str, Any]) -> str | None:
    """What differs between the sources of two fingerprints, in words (``"2 tracks gone (a.wav, b.wav), 1 changed
    (c.wav)"``); None when they are the same, ``"the dataset's content"`` when tracks cannot be named."""
    old, new = stored.get("sources") or {}, current.get("sources") or {}
    if old == new:
        return None
    parts = []
    for split in sorted({*old, *new}):
        before, after = (old.get(split) or {}).get("tracks"), (new.get(split) or {}).get("tracks")
        if not isinstance(before, dict) or not isinstance(after, dict):
            return "the dataset's content"
        for what, names in (
            ("gone", [n for n in before if n not in after]),
            ("new", [n for n in after if n not in before]),
            ("changed (file or caption)", [n for n in after if n in before and before[n] != after[n]]),
        ):
            if names:
                shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
                parts.append(f"{len(names)} track(s) {what}: {shown}")
    return "; ".join(parts) or "the dataset's content"


def fingerprint_options(parsed: ParsedConfig) -> dict[str, Any]:
    """The options part of :func:`prepared_fingerprint`: every data option that shapes the prepared data."""
    data_args = parsed.data
    options = {k: v for k, v in dataclasses.asdict(data_args).items() if k not in NOT_SHAPING_OPTIONS}
    if data_args.eval_split_percentage > 0:
        options["seed"] = parsed.training.seed  # which tracks are held out
    for option in WEIGHT_OPTIONS:
        if getattr(data_args, option) and Path(getattr(data_args, option)).expanduser().exists():
            options[f"files of {option}"] = files_fingerprint(getattr(data_args, option))
    if data_args.add_metadata:  # new estimators write new captions: measured again, and the prepared data redone
        options["version of the tempo and key estimators"] = ANALYSIS_VERSION
    return options


def prepared_fingerprint(
    parsed: ParsedConfig, codec: str, spec: AudioSpec, chroma_extractor: Any = None, sources: Sources | None = None
) -> dict[str, Any]:
    """Everything that shapes the prepared data: the data options, the codec and audio format, and the sources'
    identities (each file's path, size and modification time and the captions; a Hub dataset's fingerprint; a
    streamed dataset's name, config and split).

    Args:
        sources: the preparation's listings (listed here when not given).
    """
    data_args = parsed.data
    sources = sources or Sources(data_args, parsed.model.cache_dir)
    options = fingerprint_options(parsed)
    identities: dict[str, Any] = {}
    for split, _ in split_plan(data_args).values():
        split = source_split(data_args, split)
        if split not in identities:
            identities[split] = (
                ["stream", data_args.dataset_name, data_args.dataset_config_name, split]
                if data_args.streaming
                else tracks_identity(sources.tracks(split), data_args, split)
            )
    audio = {
        "fingerprint": codec,
        "sampling_rate": spec.sampling_rate,
        "channels": spec.channels,
        "chroma": chroma_settings(chroma_extractor) if chroma_extractor is not None else None,
    }
    return json.loads(
        json.dumps({"format": PREPARED_FORMAT, "options": options, "codec": audio, "sources": identities})
    )


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
    changed = sorted(
        k
        for k in {*stored.get("options", {}), *current["options"]}
        if stored.get("options", {}).get(k, "-") != current["options"].get(k, "-")
    )
    if changed:
        return f"{', '.join(changed)} changed since it was prepared"
    if stored.get("codec") != current["codec"]:
        return "the model's audio codec (EnCodec weights or audio format) is another"
    return f"the source files or captions changed since it was prepared ({changed_tracks(stored, current)})"


def usable_reason(folder: Path, current: dict[str, Any], names: list[str]) -> str | None:
    """Why the prepared data in ``folder`` cannot be used for ``current`` with splits ``names`` (None: it can)."""
    reason = stale_reason(folder, current)
    missing = [name for name in names if not is_saved_dataset(folder / name)]
    if reason is None and missing:
        reason = f"its {' and '.join(missing)} split is missing"
    return reason


def already_prepared(parsed: ParsedConfig, folder: Path, sources: Sources | None = None) -> dict[str, Any] | None:
    """The report of ``folder`` when it already holds exactly this preparation, found without loading the model
    (the codec's fingerprint is remembered by its files' identity); None when the data must be prepared."""
    model_args, data_args = parsed.model, parsed.data
    codec = remembered_codec_fingerprint(model_args, cache_root(data_args.data_cache_dir))
    if codec is None:
        return None
    name, cache_dir = model_args.model_name_or_path, model_args.cache_dir
    try:
        config = AutoConfig.from_pretrained(name, cache_dir=cache_dir)
        melody = getattr(config, "model_type", None) == "musicgen_melody"
        chroma = load_processor(name, cache_dir=cache_dir).feature_extractor if melody else None
        current = prepared_fingerprint(parsed, codec, AudioSpec.of_config(config), chroma, sources)
        if usable_reason(folder, current, list(split_plan(data_args))) is not None:
            return None
        report = json.loads((folder / REPORT_NAME).read_text(encoding="utf-8"))
        if data_args.strict and any(part["files"]["skipped"] for part in report["splits"].values()):
            return None  # strict stops at the bad files the earlier preparation left out
    except (OSError, ValueError, KeyError, TypeError, ImportError, AttributeError):
        return None  # the full path loads the model and says what is wrong
    logger.info(
        "Nothing to prepare: %s holds this data, prepared with the same options, codec and source files", folder
    )
    return report


def load_prepared(folder: Path, names: list[str]) -> dict[str, datasets.Dataset]:
    return {name: datasets.load_from_disk(str(folder / name)) for name in names}
