"""What is measured of each track for its caption (tempo, key, loudness, brightness), each cached as JSON per file
under ``<data_cache_dir>/analysis/``, so captions never decode audio twice.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import analysis
from ..audio.io import decode_audio, describe_source
from ..audio.key import estimate_key
from ..audio.tempo import estimate_tempo
from ..files import atomic_write_json, file_identity

EXCERPT_SECONDS = 60.0


ANALYSIS_VERSION = 6  # bump when the estimators change, so cached estimates are redone (4: EMPTY_HALF_BEATS 0.15;
# 5: the octave decision and bpm_alternative; 6: a triple metre's levels and the bass among the evidence)


def _central(mono: np.ndarray, sr: int) -> np.ndarray:
    excerpt = int(EXCERPT_SECONDS * sr)
    if len(mono) > excerpt:
        start = (len(mono) - excerpt) // 2
        mono = mono[start : start + excerpt]
    return mono


def measure(audio: np.ndarray, sr: int) -> dict[str, Any]:
    """Tempo (bpm, rounded) and key of (channels, samples) audio on its central excerpt, each with its confidence
    (0 to 1, see :mod:`musicgen_lora.audio.tempo` and :mod:`musicgen_lora.audio.key`); None where not measurable.
    ``bpm_alternative``: the next likeliest tempo (rounded: an octave away, or x 3/2, x 2/3, x 3 of a triple
    metre) where the tempo is in doubt, else None.

    Every estimate is kept, however low its confidence: the caption leaves out those below the thresholds
    (:func:`musicgen_lora.prepare.captions.track_fields`), and captions.jsonl shows them all for review.
    """
    mono = _central(analysis.to_mono32(audio), sr)
    tempo = estimate_tempo(mono, sr)
    key = estimate_key(mono, sr)
    return {
        "bpm": None if tempo is None else int(round(tempo.bpm)),
        "bpm_confidence": None if tempo is None else round(tempo.confidence, 3),
        "bpm_alternative": None if tempo is None or tempo.alternative is None else int(round(tempo.alternative)),
        "key": None if key is None else key.key,
        "key_confidence": None if key is None else round(key.confidence, 3),
    }


def measure_level(audio: np.ndarray, sr: int) -> dict[str, Any]:
    """Integrated loudness (LUFS) and peak of the whole track, and the spectral centroid (Hz) of its central excerpt;
    None where not measurable (silence)."""
    lufs = analysis.integrated_loudness(audio, sr)
    return {
        "lufs": lufs if math.isfinite(lufs) else None,
        "peak": float(np.abs(audio).max()),
        "centroid_hz": analysis.spectral_centroid(_central(analysis.to_mono(audio), sr), sr),
    }


def measurement_cache_path(cache_root: Path, kind: str, identity: str) -> Path:
    digest = hashlib.sha256(f"{kind}|{identity}".encode()).hexdigest()[:24]
    return cache_root / "analysis" / f"{kind.split('|')[0]}-{digest}.json"


def cached_measures(
    source: Any,
    cache_root: Path,
    computes: dict[str, Callable[[np.ndarray, int], Any]],
    decoded: tuple[np.ndarray, int] | None = None,
) -> dict[str, Any]:
    """``{kind: compute(audio, sr)}`` of one audio source, each cached as JSON under ``cache_root/analysis`` by the
    source's identity and its ``kind`` (which must name everything its ``compute`` depends on).

    Args:
        decoded: the source already decoded (:func:`~musicgen_lora.audio.io.decode_audio`); without it the audio is
            decoded once, and only when some kind is not cached yet.
    """
    identity = json.dumps([*(file_identity(source) or [describe_source(source)]), ANALYSIS_VERSION])
    results: dict[str, Any] = {}
    audio = decoded
    for kind, compute in computes.items():
        path = measurement_cache_path(cache_root, kind, identity)
        if path.is_file():
            results[kind] = json.loads(path.read_text(encoding="utf-8"))
            continue
        if audio is None:
            audio = decode_audio(source)
        results[kind] = compute(*audio)
        atomic_write_json(path, results[kind])
    return results


def cached_measure(source: Any, cache_root: Path, kind: str, compute: Callable[[np.ndarray, int], Any]) -> Any:
    """``compute(audio, sr)`` of one audio source, cached (see :func:`cached_measures`)."""
    return cached_measures(source, cache_root, {kind: compute})[kind]
