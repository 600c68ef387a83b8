"""Check every source file once before any expensive work, and skip the bad ones (or stop, with ``strict``).

Users bring folders of songs, not clean datasets: a corrupt download, a 0-byte placeholder, a float WAV full of NaN,
a one-sample export or an m4a on a machine without FFmpeg must not stop a run of a thousand songs. Before captioning
and encoding, each audio file of a split is checked with :func:`musicgen_lora.audio.io.probe_audio` (its header, and a
decode only where a problem could hide). A bad file is logged as a warning and listed with its reason in the data
report; with ``strict: true`` the first one stops the run with an error naming it and the fix. When no file is left,
the error says how many were skipped and why.

A file of digital silence (every sample within one 16-bit step of zero: an all-zero export, a placeholder) is left out
here too, as ``silent``: it would teach the model that a caption sounds like nothing, and with no caption of its own
it stops the run. Reading stops at the first louder block, so music costs one block.

A check's result is cached as a small JSON file under ``<data_cache_dir>/analysis/``, keyed by the file's identity
(path, size, modification time; or a hash of the bytes), so re-runs check nothing again. Results that depend on this
machine rather than the file (a missing file, a format that needs FFmpeg) are not cached."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import soundfile as sf

from ..audio.io import AUDIO_EXTENSIONS, AudioProblem, decode_audio, describe_source, probe_audio
from ..errors import UserError
from ..files import atomic_write_json, file_identity
from .report import ScreenReport, counts_text, skipped_entry

logger = logging.getLogger(__name__)


PROBE_VERSION = 3  # bump when the checks change, so cached results are redone (2: sample rate, length; 3: silence)
SILENCE_PEAK = 2.0**-15  # one step of 16-bit audio: a file with no sample above it holds no sound (-90 dBFS)
SILENCE_BLOCK = 1 << 16  # frames read at a time while looking for a sound


UNCACHED_KINDS = (
    "missing",
    "permission denied",
    "unsupported format",
)  # they change with the machine or a chmod, not with the file


def cached_probe(source: Any, cache_root: Path) -> AudioProblem | None:
    """The problem of one audio source (None: usable), checked once and cached by the file's identity."""
    identity = file_identity(source)
    path = None
    if identity is not None:
        digest = hashlib.sha256(f"probe|{PROBE_VERSION}|{json.dumps(identity)}".encode()).hexdigest()[:24]
        path = cache_root / "analysis" / f"probe-{digest}.json"
        if path.is_file():
            found = json.loads(path.read_text(encoding="utf-8"))
            return None if found.get("ok") else AudioProblem(found["kind"], describe_source(source), found["detail"])
    try:
        result = {"ok": True, **probe_audio(source)}
        problem = None
        if is_digital_silence(source):
            raise AudioProblem("silent", describe_source(source), "digital silence (no sample above -90 dBFS)")
    except AudioProblem as err:
        result = {"ok": False, "kind": err.kind, "detail": err.detail}
        problem = err
    if path is not None and (problem is None or problem.kind not in UNCACHED_KINDS):
        atomic_write_json(path, result)
    return problem


def is_digital_silence(source: Any) -> bool:
    """Whether no sample of a (probed, readable) audio source rises above :data:`SILENCE_PEAK`; a file is read a
    block at a time and only until its first louder sample."""
    if isinstance(source, (str, Path)) and Path(source).suffix.lower() in AUDIO_EXTENSIONS:
        with sf.SoundFile(str(source)) as handle:
            return not any(np.abs(block).max(initial=0.0) > SILENCE_PEAK for block in handle.blocks(SILENCE_BLOCK))
    audio, _ = decode_audio(source)  # bytes, a dataset's dict, a format that needs FFmpeg
    return not np.abs(audio).max(initial=0.0) > SILENCE_PEAK


def screen_split(
    raw: datasets.Dataset, dataset_name: str, split: str, cache_root: Path, strict: bool
) -> tuple[datasets.Dataset, ScreenReport]:
    """The rows of ``raw`` whose audio (and conditional audio) is usable, and what was found; the others are skipped
    with a warning.

    Raises:
        UserError: with ``strict``, at the first bad file; otherwise when every file is bad.
    """
    columns = [c for c in ("audio", "conditional_audio") if c in raw.column_names]
    sources = {c: raw[c] for c in columns}
    keep, problems = [], []
    for index in range(len(raw)):
        problem = None
        for column in columns:  # a row is only as good as its worst file (the melody audio too)
            if problem is None and sources[column][index] is not None:
                problem = cached_probe(sources[column][index], cache_root)
        if problem is None:
            keep.append(index)
            continue
        if strict:
            raise UserError(f"{problem} (strict is on: bad audio files stop the run; set strict false to skip them)")
        logger.warning("Skipping a bad audio file: %s", problem)
        problems.append(problem)
    skipped = [skipped_entry(p.name, p.reason) for p in problems]
    if problems and not keep:
        raise UserError(
            f"all {len(raw)} audio file(s) of '{dataset_name}' ({split} split) were skipped "
            f"({counts_text(skipped)}; each is named in the warnings above), the first because {problems[0]}"
        )
    if problems:
        logger.warning(
            "%d of %d %s audio files were skipped (%s); they are listed in data_report.json by python -m "
            "musicgen_lora.prepare",
            len(problems),
            len(raw),
            split,
            counts_text(skipped),
        )
    return (raw.select(keep) if problems else raw), ScreenReport(found=len(raw), read=len(keep), skipped=skipped)
