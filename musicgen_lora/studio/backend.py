"""The studio's one door into the package's own Python functions.

Everything else in the studio runs the project's commands in subprocesses (see :mod:`.runs`); what it needs in
process — building the demo assets, checking a config the way training checks it, listing a folder's tracks and
captions the way preparation reads them, the tempo/key that preparation measured — is imported here and only here,
so a reorganisation of the package changes this module's imports and nothing else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import logging
from pathlib import Path
from typing import Any

import torch

from ..audio.io import AUDIO_EXTENSIONS, FFMPEG_EXTENSIONS
from ..config.arguments import (
    RESOLVED_CONFIG_NAME,
    DataArguments,
    LoraArguments,
    ModelArguments,
    MusicgenTrainingArguments,
)
from ..config.caption_template import effective_template
from ..config.parsing import parse_config
from ..demo.assets import DEMO_CONFIG, build_demo_assets
from ..errors import UserError, one_line
from ..evaluate.report import format_value, metric_sections, read_value
from ..files import cache_root
from ..prepare.captions import track_fields
from ..prepare.measurements import cached_measures, measure
from ..prepare.report import CAPTIONS_NAME, REPORT_NAME, tempo_key_report
from ..prepare.reuse import PREPARED_DIR_NAME
from ..prepare.sources import load_split
from ..train.checkpoints import checkpoint_folders, is_complete, newest_complete_checkpoint
from ..train.output_dir import RUN_MARKERS
from ..train.progress_log import PROGRESS_FILE, device_info
from ..train.rerun import FINISHED_MARKER

__all__ = [
    "AUDIO_EXTENSIONS", "CAPTIONS_NAME", "DEMO_CONFIG", "FFMPEG_EXTENSIONS", "FINISHED_MARKER", "PREPARED_DIR_NAME",
    "PROGRESS_FILE", "REPORT_NAME", "RESOLVED_CONFIG_NAME", "RUN_MARKERS", "UserError", "check_config",
    "checkpoint_folders", "ensure_demo_assets", "final_caption", "format_value", "is_complete", "list_tracks",
    "machine_device", "measured_fields", "metric_sections", "newest_complete_checkpoint", "one_line", "option_names",
    "read_value", "tempo_key_report",
]  # fmt: skip

logger = logging.getLogger(__name__)

# What the studio needs of a config's parsed form, without handing the dataclass around.
TrackRow = dict[str, Any]


def ensure_demo_assets(model_dir: Path, corpus_dir: Path) -> None:
    """Build the demo's tiny random MusicGen and its synthetic captioned corpus where they are missing (the same
    assets ``python finetune_musicgen.py`` builds for its offline demo)."""
    build_demo_assets(model_dir, corpus_dir)


@functools.lru_cache(maxsize=1)
def option_names() -> frozenset[str]:
    """Every option of the training command (what a config file or the page's JSON box may hold)."""
    groups = (ModelArguments, DataArguments, LoraArguments, MusicgenTrainingArguments)
    return frozenset(f.name for group in groups for f in dataclasses.fields(group))


@functools.lru_cache(maxsize=1)
def machine_device() -> dict[str, Any]:
    """The device a run started now would train on, as the run reports it (``{"kind", "name", "memory_total"}``)."""
    if torch.cuda.is_available():
        return device_info(torch.device("cuda", 0))
    if torch.backends.mps.is_available():
        return device_info(torch.device("mps"))
    return device_info(torch.device("cpu"))


def check_config(config_path: Path, extra: list[str] | None = None) -> DataArguments:
    """Parse a config exactly as ``finetune_musicgen.py`` does, so a bad value is reported in the page before any
    process starts.

    Raises:
        UserError: the same one-line message the command would print.
    """
    with contextlib.redirect_stderr(io.StringIO()):  # the hardware notices belong to the run's log, not here
        return parse_config([str(config_path), *(extra or [])]).data


def list_tracks(args: DataArguments) -> list[TrackRow]:
    """The train (and eval) split's audio files with their own captions, as preparation reads them:
    ``[{"path", "caption", "split", "used"}]`` (``caption`` None where a file has none; ``used`` False for the files
    after the first ``max_train_samples`` / ``max_eval_samples``, which preparation leaves out)."""
    splits = {args.train_split_name: args.max_train_samples}
    if args.eval_split_name:
        splits[args.eval_split_name] = args.max_eval_samples
    rows: list[TrackRow] = []
    for split, limit in splits.items():
        dataset = load_split(args, split)
        for index, (audio, text) in enumerate(zip(dataset["audio"], dataset["text"], strict=False)):
            path = audio.get("path") if isinstance(audio, dict) else audio
            rows.append({"path": str(path), "caption": text, "split": split, "used": limit is None or index < limit})
    return rows


def measured_fields(args: DataArguments, path: str) -> dict[str, Any]:
    """Tempo and key of one track from preparation's cache (``add_metadata``; measured now when not cached)."""
    return cached_measures(path, cache_root(args.data_cache_dir), {"metadata": measure})["metadata"]


def final_caption(args: DataArguments, caption: str | None, measured: dict[str, Any] | None) -> str:
    """The caption training gives a track: ``caption_template`` filled with the trigger word, its own caption and
    the measured tempo/key (CLAP tags and levels are not shown here)."""
    template = effective_template(args.caption_template)
    found = {"metadata": measured} if measured else {}
    fields = track_fields(caption, args.instance_prompt, found, args.loudness_target_lufs, "caption" in template.fields)
    return template.render(fields)
