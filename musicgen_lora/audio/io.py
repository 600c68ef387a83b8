"""Decode, check, resample and fix the channel count of audio — no model knowledge here.

Decoding uses libsndfile (through ``soundfile``), which reads wav/flac/ogg/mp3 without FFmpeg; resampling uses the
high-quality ``soxr`` resampler. ``datasets`` 5.x decodes audio through torchcodec + FFmpeg, which a fresh machine
may not have, so datasets are loaded with ``Audio(decode=False)`` and decoded here. Formats libsndfile cannot read
(m4a, aac, wma, ...: :data:`FFMPEG_EXTENSIONS`) are decoded through torchcodec when it is installed and works; without
it they raise an :class:`AudioProblem` naming the file and the fix.

:func:`probe_audio` checks a file cheaply (its header, plus a decode only where a problem could hide) so that
preparation can skip bad files before doing any expensive work on them."""

from __future__ import annotations

import functools
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from ..errors import UserError, one_line

# Extensions libsndfile decodes on every platform we support (mp3 since libsndfile 1.1).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus")


# Containers and codecs libsndfile cannot read (opus in mp4, AAC/ALAC in m4a, WMA, ...): decoded through torchcodec
# (FFmpeg) when it is importable and works, else reported as an unsupported format with the fix.
FFMPEG_EXTENSIONS = (".m4a", ".mp4", ".aac", ".wma", ".webm", ".mka", ".ac3", ".amr", ".ape", ".wv")


# libsndfile subtypes that can hold NaN/Inf (every other one decodes to finite samples); only these are fully
# decoded by probe_audio.
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")


PROBE_BLOCK = 4096  # frames read at each end of a compressed file by probe_audio (decoder errors show there)


# The lowest sample rate read as music: telephone audio is 8 kHz; a header saying 1 Hz makes a few bytes an hour of
# "audio" (a broken export), which would be resampled to hours of training data.
MIN_SAMPLE_RATE = 4000


# The longest track read: preparation decodes each track whole, into memory, and EnCodec encodes it in one pass (its
# first layers hold dozens of values per sample), so memory grows with the length; a 10-hour file needs tens of GB.
# Longer recordings (a DJ set, a concert) are left out before they are read, with the command that cuts them up.
MAX_TRACK_SECONDS = 30 * 60


_SOUNDFILE_ERRORS = (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError)


class AudioProblem(UserError):
    """An audio source that cannot be used, with what is wrong (``kind``, ``detail``) and the fix.

    ``kind`` is one of ``missing``, ``permission denied``, ``unreadable``, ``empty``, ``too short``, ``not finite``,
    ``bad sample rate``, ``too long``, ``silent`` (digital silence) and ``unsupported format``; ``reason``
    (``"<kind>: <detail>"``) is what the data report lists for the file.
    """

    FIXES = {
        "missing": "check the path or the file_name in your metadata",
        "permission denied": "fix its permissions (chmod +r) or remove it from the dataset",
        "unreadable": "convert it to FLAC/WAV or remove it from the dataset",
        "empty": "remove it from the dataset",
        "too short": "re-export it or remove it from the dataset",
        "not finite": "re-export it or remove it from the dataset",
        "bad sample rate": "re-export it at 32 kHz or more, or remove it from the dataset",
        "too long": "cut it into parts (e.g. ffmpeg -i IN -f segment -segment_time 600 -c copy OUT-%03d.wav)",
        "silent": "re-export it or remove it from the dataset",
    }

    def __init__(self, kind: str, name: str, detail: str, fix: str | None = None) -> None:
        self.kind, self.name, self.detail = kind, name, one_line(detail)
        self.fix = fix or self.FIXES[kind]
        problem = {
            "missing": f"audio file '{name}' not found",
            "permission denied": f"audio file '{name}' cannot be read: permission denied",
            "unreadable": f"cannot read audio file '{name}' ({self.detail})",
            "empty": f"audio file '{name}' is empty ({self.detail})",
            "too short": f"audio file '{name}' holds {self.detail}",
            "not finite": f"audio file '{name}' contains {self.detail}",
            "silent": f"audio file '{name}' holds {self.detail}",
            "unsupported format": f"audio file '{name}' is in a format that needs FFmpeg ({self.detail})",
            "bad sample rate": f"audio file '{name}' has {self.detail}",
            "too long": f"audio file '{name}' is {self.detail}",
        }[kind]
        super().__init__(f"{problem}; {self.fix}")

    @property
    def reason(self) -> str:
        return f"{self.kind}: {self.detail}"


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


def _suffix(source: Any) -> str:
    name = describe_source(source)
    return Path(name).suffix.lower() if name != "<audio bytes>" else ""


@functools.lru_cache(maxsize=1)
def _torchcodec_decoder() -> tuple[Any, str | None]:
    """torchcodec's ``AudioDecoder`` class, or None and why it cannot be used (checked once per process)."""
    try:
        from torchcodec.decoders import AudioDecoder
    except Exception as err:  # noqa: BLE001 - ImportError, or RuntimeError/OSError when FFmpeg's libraries are missing
        return None, f"torchcodec unavailable: {one_line(err)[:200]}"
    return AudioDecoder, None


def _decode_with_ffmpeg(source: Any, name: str) -> tuple[np.ndarray, int]:
    """Decode a format libsndfile cannot read through torchcodec (FFmpeg); (channels, samples) float32 and rate."""
    decoder_class, why = _torchcodec_decoder()
    if decoder_class is None:
        stem = Path(name).with_suffix(".flac").name
        raise AudioProblem(
            "unsupported format",
            name,
            f"{_suffix(source) or 'this format'}: {why}",
            f"install FFmpeg and torchcodec, or convert it to FLAC/WAV: ffmpeg -i '{Path(name).name}' '{stem}'",
        )
    target = _open_target(source)
    target = target.getvalue() if isinstance(target, io.BytesIO) else target
    try:
        samples = decoder_class(target).get_all_samples()
        audio = np.ascontiguousarray(samples.data.numpy(), dtype=np.float32)  # (channels, samples)
    except Exception as err:  # noqa: BLE001 - FFmpeg reports a broken file in many ways
        raise AudioProblem("unreadable", name, f"FFmpeg: {one_line(err)[:300]}") from None
    return audio, int(samples.sample_rate)


def check_samples(audio: np.ndarray, name: str) -> None:
    """Raise an :class:`AudioProblem` for decoded (channels, samples) audio that is empty, one sample or not finite."""
    if audio.shape[-1] == 0:
        raise AudioProblem("empty", name, "0 samples")
    if audio.shape[-1] == 1:
        raise AudioProblem("too short", name, "a single sample")
    if not np.isfinite(audio).all():
        raise AudioProblem("not finite", name, "NaN or infinite samples")


def check_format(frames: int, rate: int, name: str) -> None:
    """Raise an :class:`AudioProblem` for audio whose sample rate is below :data:`MIN_SAMPLE_RATE` or that is longer
    than :data:`MAX_TRACK_SECONDS` (checked from the header, before anything is decoded)."""
    if rate < MIN_SAMPLE_RATE:
        raise AudioProblem("bad sample rate", name, f"a sample rate of {rate} Hz (below {MIN_SAMPLE_RATE} Hz)")
    if frames / rate > MAX_TRACK_SECONDS:
        raise AudioProblem(
            "too long",
            name,
            f"{_duration(frames / rate)} long (the longest track read whole is {MAX_TRACK_SECONDS // 60} min)",
        )


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def _check_path(target: Any, name: str) -> None:
    if isinstance(target, str):
        if not os.path.exists(target):
            raise AudioProblem("missing", name, "file not found")
        if os.path.isdir(target):
            raise AudioProblem("unreadable", name, "a folder, not an audio file")
        if not os.access(target, os.R_OK):
            raise AudioProblem("permission denied", name, "not a readable file")
        if os.path.getsize(target) == 0:
            raise AudioProblem("empty", name, "0 bytes")


def decode_audio(source: Any) -> tuple[np.ndarray, int]:
    """Decode audio to float32 of shape (channels, samples).

    Args:
        source: a file path, raw file bytes, or a ``datasets`` audio dict (``{"path", "bytes"}`` or
            ``{"array", "sampling_rate"}``).

    Returns:
        ``(audio, sampling_rate)`` with ``audio`` of shape (channels, samples), float32.

    Raises:
        AudioProblem: the file is missing, unreadable, in a format that needs FFmpeg when torchcodec is not available,
            empty, a single sample, or holds NaN/Inf samples.
    """
    name = describe_source(source)
    target = _open_target(source)
    if isinstance(target, dict):
        audio = np.asarray(target["array"], dtype=np.float32)
        audio = audio[None, :] if audio.ndim == 1 else audio
        rate = int(target["sampling_rate"])
    elif _suffix(source) in FFMPEG_EXTENSIONS:
        _check_path(target, name)
        audio, rate = _decode_with_ffmpeg(source, name)
    else:
        _check_path(target, name)
        try:
            data, rate = sf.read(target, dtype="float32", always_2d=True)  # (samples, channels)
        except _SOUNDFILE_ERRORS as err:
            raise AudioProblem("unreadable", name, str(err)) from None
        audio = np.ascontiguousarray(data.T)
    check_samples(audio, name)
    return audio, rate


def probe_audio(source: Any) -> dict[str, Any]:
    """Check that an audio source is usable, at a fraction of the cost of decoding it.

    libsndfile formats are checked from their header; files whose samples are floats (which can hold NaN/Inf) are
    decoded in blocks, and compressed files (mp3, ogg, ...) have a block decoded at each end, where a truncated or
    corrupt stream fails. Formats that need FFmpeg are decoded whole through torchcodec.

    Returns:
        ``{"seconds", "sampling_rate", "channels"}`` of the audio.

    Raises:
        AudioProblem: what :func:`decode_audio` would raise for it.
    """
    name = describe_source(source)
    target = _open_target(source)
    if isinstance(target, dict) or _suffix(source) in FFMPEG_EXTENSIONS:
        audio, rate = decode_audio(source)
        check_format(audio.shape[-1], rate, name)
        return {"seconds": audio.shape[-1] / rate, "sampling_rate": rate, "channels": int(audio.shape[0])}
    _check_path(target, name)
    try:
        with sf.SoundFile(target) as handle:
            frames, rate, channels = handle.frames, handle.samplerate, handle.channels
            check_format(frames, rate, name)  # before anything is decoded
            if frames >= 2 and handle.subtype in FLOAT_SUBTYPES:  # every sample checked, a block at a time
                for block in handle.blocks(blocksize=1 << 16, dtype="float32"):
                    if not np.isfinite(block).all():
                        raise AudioProblem("not finite", name, "NaN or infinite samples")
            elif frames >= 2 and handle.format not in ("WAV", "WAVEX", "AIFF", "RF64", "W64"):  # compressed
                handle.read(PROBE_BLOCK, dtype="float32")
                if frames > PROBE_BLOCK and handle.seekable():
                    handle.seek(max(0, frames - PROBE_BLOCK))
                    handle.read(PROBE_BLOCK, dtype="float32")
    except AudioProblem:
        raise
    except _SOUNDFILE_ERRORS as err:
        raise AudioProblem("unreadable", name, str(err)) from None
    if frames == 0:
        raise AudioProblem("empty", name, "0 samples")
    if frames == 1:
        raise AudioProblem("too short", name, "a single sample")
    return {"seconds": frames / rate, "sampling_rate": int(rate), "channels": int(channels)}


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


def write_audio(path: Path, audio: np.ndarray, rate: int, fmt: str) -> list[Path]:
    """Write (channels, samples) audio as 16-bit WAV and/or MP3 (``fmt``: wav, mp3 or both); returns the paths."""
    written = []
    if fmt in ("wav", "both"):
        write_wav(path.with_suffix(".wav"), audio, rate)
        written.append(path.with_suffix(".wav"))
    if fmt in ("mp3", "both"):
        sf.write(str(path.with_suffix(".mp3")), np.clip(audio.T, -1.0, 1.0), rate, format="MP3")
        written.append(path.with_suffix(".mp3"))
    return written
