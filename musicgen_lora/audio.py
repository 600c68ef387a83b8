"""Decode, resample and fix the channel count of audio — no model knowledge here.

Decoding uses libsndfile (through ``soundfile``), which reads wav/flac/ogg/mp3 without FFmpeg; resampling uses the
high-quality ``soxr`` resampler. ``datasets`` 5.x decodes audio through torchcodec + FFmpeg, which a fresh machine
may not have, so datasets are loaded with ``Audio(decode=False)`` and decoded here.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from .errors import UserError

# Extensions libsndfile decodes on every platform we support (mp3 since libsndfile 1.1).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus")


def describe_source(source: Any) -> str:
    """A short name for an audio source (path, datasets Audio dict or bytes) for error messages."""
    if isinstance(source, dict):
        return source.get("path") or "<audio bytes>"
    if isinstance(source, (bytes, bytearray)):
        return "<audio bytes>"
    return str(source)


def _open_target(source: Any) -> Any:
    """Turn a path, bytes, or a ``datasets`` Audio(decode=False) dict into something soundfile can read."""
    if isinstance(source, dict):
        if source.get("bytes"):
            return io.BytesIO(source["bytes"])
        if source.get("path"):
            return source["path"]
        if "array" in source:  # an already-decoded datasets row
            return source
        raise UserError(f"audio entry has neither bytes nor a path: {sorted(source)}; check the audio column")
    if isinstance(source, (bytes, bytearray)):
        return io.BytesIO(source)
    return os.fspath(source)


def decode_audio(source: Any) -> tuple[np.ndarray, int]:
    """Decode audio to float32 of shape (channels, samples).

    Args:
        source: a file path, raw file bytes, or a ``datasets`` audio dict (``{"path", "bytes"}`` or
            ``{"array", "sampling_rate"}``).

    Returns:
        ``(audio, sampling_rate)`` with ``audio`` of shape (channels, samples), float32.

    Raises:
        UserError: the file is missing, unreadable, empty, or holds NaN/Inf samples.
    """
    name = describe_source(source)
    target = _open_target(source)
    if isinstance(target, dict):
        audio = np.asarray(target["array"], dtype=np.float32)
        audio = audio[None, :] if audio.ndim == 1 else audio
        rate = int(target["sampling_rate"])
    else:
        if isinstance(target, str) and not os.path.exists(target):
            raise UserError(f"audio file '{name}' not found; check the path or the file_name in your metadata")
        try:
            data, rate = sf.read(target, dtype="float32", always_2d=True)  # (samples, channels)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
            raise UserError(
                f"cannot read audio file '{name}' ({err}); convert it to wav/flac/ogg/mp3 or remove it from the dataset"
            ) from None
        audio = np.ascontiguousarray(data.T)
    if audio.shape[-1] == 0:
        raise UserError(f"audio file '{name}' is empty; remove it from the dataset")
    if audio.shape[-1] == 1:
        raise UserError(f"audio file '{name}' holds a single sample; re-export it or remove it from the dataset")
    if not np.isfinite(audio).all():
        raise UserError(f"audio file '{name}' contains NaN or infinite samples; re-export it or remove it")
    return audio, rate


def set_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    """Down-mix to mono (mean of channels) or up-mix mono by duplication; audio is (channels, samples)."""
    if audio.shape[0] == channels:
        return audio
    if channels == 1:
        return audio.mean(axis=0, keepdims=True)
    if audio.shape[0] == 1:
        return np.repeat(audio, channels, axis=0)
    raise UserError(f"cannot convert {audio.shape[0]}-channel audio to {channels} channels; use mono or stereo files")


def resample(audio: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """High-quality resampling of (channels, samples) audio with soxr."""
    if rate == target_rate:
        return audio
    out = soxr.resample(audio.T, rate, target_rate, quality="HQ")  # soxr wants (samples, channels)
    return np.ascontiguousarray(np.asarray(out, dtype=np.float32).T)


def load_audio(source: Any, target_rate: int, channels: int) -> np.ndarray:
    """Decode, resample to ``target_rate`` and convert to ``channels``; returns float32 (channels, samples)."""
    audio, rate = decode_audio(source)
    return resample(set_channels(audio, channels), rate, target_rate)


def write_wav(path: str | os.PathLike, audio: np.ndarray, rate: int) -> None:
    """Write float audio of shape (channels, samples) or (samples,) as 16-bit PCM WAV."""
    audio = np.asarray(audio, dtype=np.float32)
    data = audio.T if audio.ndim == 2 else audio
    sf.write(os.fspath(path), np.clip(data, -1.0, 1.0), rate, subtype="PCM_16")
