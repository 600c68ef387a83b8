"""Numbers for generated audio: audio health, prompt adherence, diversity, and the per-model summaries (the
Fréchet distances are in :mod:`.frechet`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..audio import analysis
from ..audio.key import estimate_key
from ..audio.tempo import estimate_tempo
from .prompts import Prompt

SILENCE_DBFS = -60.0  # a 50 ms window quieter than this (RMS) counts as silent


CLIP_LEVEL = 0.999  # |sample| at or above this counts as clipped (the WAV files are 16-bit PCM in [-1, 1])


FRECHET_NOTE = (
    "Fréchet distances (float64, symmetric eigendecomposition form) between the generated clips and each evaluation "
    "dataset's reference audio (its windows' codes decoded by the same EnCodec, so both sides carry its artefacts), "
    "on three embeddings: 'clap' (FAD as in fadtk's clap-laion-music: laion/larger_clap_music, 10 s windows every "
    "second at 48 kHz; only with --clap_model), 'encodec_latent' (the evaluated model's own EnCodec encoder output, "
    "50 frames/s) and 'descriptor' (weight-free MFCC(20)+chroma(12) frames). Lower is closer to the reference. With "
    "few frames the estimate is biased upwards: 'fad_inf' extrapolates it to infinitely many (Chong & Forsyth 2020, "
    "as fadtk's FAD∞; 'r2' says how straight the line was). Not the VGGish FAD of MusicGen's paper: compare models "
    "within this evaluation only."
)


def audio_health(audio: np.ndarray, sr: int, requested_seconds: float) -> dict[str, Any]:
    """Duration, silence, clipping, loudness and non-finite samples of float audio (channels, samples)."""
    audio = np.asarray(audio, dtype=np.float64)
    audio = audio[None] if audio.ndim == 1 else audio
    finite = np.isfinite(audio)
    clean = np.where(finite, audio, 0.0)
    seconds = audio.shape[-1] / sr
    window = max(1, int(0.05 * sr))
    count = audio.shape[-1] // window
    if count:
        blocks = clean[:, : count * window].reshape(audio.shape[0], count, window)
        rms = np.sqrt((blocks**2).mean(axis=(0, 2)))
        silent = float((20 * np.log10(np.maximum(rms, 1e-12)) < SILENCE_DBFS).mean())
    else:
        silent = 1.0
    loudness = analysis.integrated_loudness(clean, sr)
    peak = float(np.abs(clean).max()) if clean.size else 0.0
    return {
        "duration": seconds,
        "requested_duration": requested_seconds,
        "duration_ratio": seconds / requested_seconds if requested_seconds > 0 else None,
        "silent_fraction": silent,
        "clipping_fraction": float((np.abs(clean) >= CLIP_LEVEL).mean()),
        "peak_dbfs": 20 * math.log10(peak) if peak > 0 else None,
        "loudness_lufs": loudness if math.isfinite(loudness) else None,  # None: silent (below the -70 LUFS gate)
        "nan_samples": int(np.isnan(audio).sum()),
        "inf_samples": int(np.isinf(audio).sum()),
    }


def adherence(audio: np.ndarray, sr: int, prompt: Prompt) -> dict[str, Any]:
    """Estimated tempo and key of ``audio``, and their error against what the prompt asked for."""
    tempo = estimate_tempo(audio, sr)
    key = estimate_key(audio, sr)
    targets = [bpm for bpm in (prompt.bpm, prompt.bpm_alternative) if bpm is not None]
    if tempo is not None and targets:  # of "85 or 170 bpm", the one nearer what was played
        targets.sort(key=lambda bpm: abs(tempo.bpm - bpm) / bpm)
    result: dict[str, Any] = {
        "estimated_bpm": tempo.bpm if tempo else None,
        "estimated_key": key.key if key else None,
        "target_bpm": targets[0] if targets else None,
        "target_key": prompt.key,
    }
    if targets:
        if tempo is None:
            result.update(tempo_rel_error=None, tempo_within_4pct=False, tempo_within_4pct_any_octave=False)
        else:
            error = analysis.tempo_error(tempo.bpm, targets[0])
            result.update(
                tempo_abs_error=error["abs_error_bpm"],
                tempo_rel_error=error["rel_error"],
                tempo_within_4pct=error["rel_error"] <= 0.04,
                tempo_within_4pct_any_octave=error["rel_error_any_octave"] <= 0.04,
            )
    if prompt.key is not None:
        target = analysis.parse_key(prompt.key)
        score, relation = analysis.key_score((key.tonic, key.mode), target) if key else (0.0, "none")
        result.update(key_score=score, key_relation=relation)
    return result


def mean_of(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(values)) if values else None


def pairwise_distance(vectors: list[np.ndarray]) -> float | None:
    """Mean Euclidean distance over all pairs (None for fewer than two)."""
    if len(vectors) < 2:
        return None
    distances = [float(np.linalg.norm(a - b)) for i, a in enumerate(vectors) for b in vectors[i + 1 :]]
    return float(np.mean(distances))


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-model means of the per-file metrics."""
    health = {
        "files": len(records),
        "duration_ratio_min": min((r["duration_ratio"] for r in records), default=None),
        "duration_ratio_mean": mean_of([r["duration_ratio"] for r in records]),
        "silent_fraction_mean": mean_of([r["silent_fraction"] for r in records]),
        "clipping_fraction_mean": mean_of([r["clipping_fraction"] for r in records]),
        "loudness_lufs_mean": mean_of([r["loudness_lufs"] for r in records]),
        "files_with_nonfinite_samples": sum(1 for r in records if r["nan_samples"] or r["inf_samples"]),
    }
    with_bpm = [r for r in records if r["target_bpm"] is not None]
    with_key = [r for r in records if r["target_key"] is not None]
    adherence_summary = {
        "files_with_target_bpm": len(with_bpm),
        "tempo_rel_error_mean": mean_of([r.get("tempo_rel_error") for r in with_bpm]),
        "tempo_within_4pct": mean_of([float(r["tempo_within_4pct"]) for r in with_bpm]),
        "tempo_within_4pct_any_octave": mean_of([float(r["tempo_within_4pct_any_octave"]) for r in with_bpm]),
        "files_with_target_key": len(with_key),
        "key_score_mean": mean_of([r["key_score"] for r in with_key]),
        "key_exact": mean_of([float(r["key_score"] == 1.0) for r in with_key]),
    }
    summary = {"health": health, "adherence": adherence_summary}
    if any("clap_score" in r for r in records):
        summary["clap_score_mean"] = mean_of([r.get("clap_score") for r in records])
    return summary
