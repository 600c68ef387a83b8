"""Automatic captions: each track's estimated tempo and key added to its caption (``add_metadata``).

The estimates come from :mod:`musicgen_lora.analysis` (spectral-flux tempo, key-profile key with mode), measured on
the track's central excerpt of at most :data:`EXCERPT_SECONDS` (a whole song's tempo and key; it bounds the cost on
long files). The caption becomes ``"<instance_prompt>, <own caption>, <tempo> bpm, <key>"``: the words a user wrote
(genre, mood, instruments) come first, and a tempo or key the caption already states is not added again. A track
without rhythm (no tempo) or without tonal content (no key) gets only what could be measured.

Estimates are cached as small JSON files under ``<data_cache_dir>/analysis/``, keyed by the audio's identity (path,
size and modification time, or a hash of the bytes), so changing captions or the template never re-analyses, and
analysing never re-encodes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np

from . import analysis
from .audio import decode_audio

logger = logging.getLogger(__name__)

EXCERPT_SECONDS = 60.0
ANALYSIS_VERSION = 1  # bump when the estimators change, so cached estimates are redone
_BPM_WORDS = re.compile(r"\b\d+(\.\d+)?\s*bpm\b", re.IGNORECASE)


def _identity(source: Any) -> str:
    if isinstance(source, dict) and source.get("bytes"):
        return "bytes:" + hashlib.sha256(source["bytes"]).hexdigest()
    path = source.get("path") if isinstance(source, dict) else source
    path = os.fspath(path)
    stat = os.stat(path) if os.path.exists(path) else None
    return json.dumps([os.path.abspath(path), stat and stat.st_size, stat and stat.st_mtime_ns, ANALYSIS_VERSION])


def measure(audio: np.ndarray, sr: int) -> dict[str, Any]:
    """Tempo (bpm, rounded) and key of (channels, samples) audio, on its central excerpt; None where not measurable."""
    mono = analysis.to_mono(audio)
    excerpt = int(EXCERPT_SECONDS * sr)
    if len(mono) > excerpt:
        start = (len(mono) - excerpt) // 2
        mono = mono[start : start + excerpt]
    tempo = analysis.estimate_tempo(mono, sr)
    key = analysis.estimate_key(mono, sr)
    return {"bpm": None if tempo is None else int(round(tempo.bpm)), "key": None if key is None else key.key}


def cached_measure(source: Any, cache_root: Path, kind: str, compute: Callable[[np.ndarray, int], Any]) -> Any:
    """``compute(audio, sr)`` of one audio source, cached as JSON under ``cache_root/analysis`` by the source's
    identity and ``kind`` (which must name everything ``compute`` depends on)."""
    digest = hashlib.sha256(f"{kind}|{_identity(source)}".encode()).hexdigest()[:24]
    path = cache_root / "analysis" / f"{kind.split('|')[0]}-{digest}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    audio, sr = decode_audio(source)
    result = compute(audio, sr)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(f".{os.getpid()}.tmp")
    staging.write_text(json.dumps(result), encoding="utf-8")
    os.replace(staging, path)  # never a half-written estimate
    return result


def track_metadata(source: Any, cache_root: Path) -> dict[str, Any]:
    """The cached (or newly measured) tempo and key of one audio source (path or datasets audio dict)."""
    return cached_measure(source, cache_root, "metadata", lambda audio, sr: measure(audio, sr))


def _states_key(caption: str) -> bool:
    return any(analysis.parse_key(part) is not None for part in re.split(r"[,;]", caption))


def metadata_caption(caption: str | None, metadata: dict[str, Any]) -> str:
    """``caption`` followed by the measured tempo and key it does not already state (either may be empty)."""
    caption = (caption or "").strip()
    words = [caption] if caption else []
    if metadata.get("bpm") is not None and not _BPM_WORDS.search(caption):
        words.append(f"{metadata['bpm']} bpm")
    if metadata.get("key") and not _states_key(caption):
        words.append(metadata["key"])
    return ", ".join(words)


def add_metadata(sources: list[Any], captions: list[str | None], cache_root: Path) -> list[str]:
    """Every track's caption with its estimated tempo and key added (see :func:`metadata_caption`)."""
    out = []
    for index, (source, caption) in enumerate(zip(sources, captions)):
        out.append(metadata_caption(caption, track_metadata(source, cache_root)))
        if (index + 1) % 100 == 0:
            logger.info("Estimated tempo and key of %d / %d tracks", index + 1, len(sources))
    return out
