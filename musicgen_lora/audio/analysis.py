"""What a piece of audio is, measured from the audio alone: loudness, brightness, frame-level descriptors, and the
key and tempo vocabulary (names, parsing, scores) shared with :mod:`.tempo` and :mod:`.key`, which estimate them.

No model weights and no training: short-time Fourier transforms and textbook estimators (numpy/scipy, librosa for
the STFT, mel filterbank and MFCC, where measured as good), so the numbers mean the same thing on every machine.
Used by :mod:`musicgen_lora.evaluate` (prompt adherence, audio health, the weight-free Fréchet descriptor) and by
:mod:`musicgen_lora.prepare` (captions).

* **Loudness** (:func:`integrated_loudness`): ITU-R BS.1770-4 integrated loudness in LUFS (K-weighting, 400 ms
  blocks with 75 % overlap, -70 LUFS absolute and -10 LU relative gates), for any sample rate.
* **Brightness** (:func:`spectral_centroid`): the centroid of the long-term average magnitude spectrum, in Hz.
* **Descriptors** (:func:`frame_descriptors`): per-frame MFCCs (20) and chroma (12), the weight-free embedding of
  the evaluation's Fréchet distance.

All functions take mono or multi-channel float audio, ``(samples,)`` or ``(channels, samples)``."""

from __future__ import annotations

import math
import re

import librosa
import numpy as np

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


_PITCH_CLASSES = {
    "C": 0, "B#": 0, "C#": 1, "Db": 1, "D": 2, "D#": 3, "Eb": 3, "E": 4, "Fb": 4, "E#": 5, "F": 5,
    "F#": 6, "Gb": 6, "G": 7, "G#": 8, "Ab": 8, "A": 9, "A#": 10, "Bb": 10, "B": 11, "Cb": 11,
}  # fmt: skip


SILENCE_LUFS = -70.0  # BS.1770's absolute gate: blocks quieter than this are not counted


def to_mono(audio: np.ndarray) -> np.ndarray:
    """``(samples,)`` or ``(channels, samples)`` float audio -> float64 ``(samples,)`` (mean of the channels)."""
    audio = np.asarray(audio, dtype=np.float64)
    return audio.mean(axis=0) if audio.ndim == 2 else audio.reshape(-1)


def to_mono32(audio: np.ndarray) -> np.ndarray:
    """Like :func:`to_mono` but float32, without a float64 copy: half the memory (7.7 MB for 60 s at 32 kHz)."""
    audio = np.asarray(audio, dtype=np.float32)
    return audio.mean(axis=0) if audio.ndim == 2 else audio.reshape(-1)


def stft_magnitude(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Magnitude spectrogram of mono ``x`` with a Hann window, centred zero-padded frames: (num_frames, n_fft // 2 + 1).

    librosa's STFT: 0.09 s and 33 MB for 60 s at 32 kHz (4096/1365) against 0.18 s and 117 MB for the numpy framing
    it replaced (bench/RESULTS.md, "analysis vs librosa").
    """
    x = np.asarray(x, dtype=np.float32)
    return np.abs(librosa.stft(x, n_fft=n_fft, hop_length=hop, window="hann", center=True, pad_mode="constant")).T


def tempo_error(estimated: float, target: float) -> dict[str, float]:
    """Absolute error in bpm, relative error, and the relative error allowing a factor 2 or 3 (octave errors)."""
    relative = abs(estimated - target) / target
    octave = min(abs(estimated * f - target) / target for f in (1.0, 0.5, 2.0, 1 / 3, 3.0))
    return {"abs_error_bpm": abs(estimated - target), "rel_error": relative, "rel_error_any_octave": octave}


def key_name(tonic: int, mode: str) -> str:
    """``(9, "minor")`` -> ``"A minor"``."""
    return f"{NOTE_NAMES[tonic % 12]} {mode}"


def parse_key(text: str) -> tuple[int, str] | None:
    """``"F# minor"`` / ``"Bb maj"`` -> ``(6, "minor")`` / ``(10, "major")``; None if it is not a key."""
    match = re.fullmatch(r"\s*([A-Ga-g])([#b♯♭]?)\s*(major|minor|maj|min)\s*", text, flags=re.IGNORECASE)
    if not match:
        return None
    accidental = {"♯": "#", "♭": "b", "B": "b"}.get(match.group(2), match.group(2))  # "EB major" is E flat
    root = match.group(1).upper() + accidental
    mode = "major" if match.group(3).lower().startswith("maj") else "minor"
    return _PITCH_CLASSES[root], mode


def key_score(estimated: tuple[int, str], target: tuple[int, str]) -> tuple[float, str]:
    """MIREX key score and relation: 1 same key, 0.5 a fifth away (same mode), 0.3 relative, 0.2 parallel, else 0."""
    (tonic, mode), (target_tonic, target_mode) = estimated, target
    if (tonic, mode) == (target_tonic, target_mode):
        return 1.0, "same"
    if mode == target_mode and (tonic - target_tonic) % 12 in (5, 7):
        return 0.5, "fifth"
    if mode != target_mode:
        relative = (target_tonic + (9 if target_mode == "major" else 3)) % 12
        if tonic == relative:
            return 0.3, "relative"
        if tonic == target_tonic:
            return 0.2, "parallel"
    return 0.0, "other"


def _k_weighting(sr: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two biquads of BS.1770's K-weighting (high shelf, then high-pass), designed for any sample rate.

    The constants reproduce the standard's 48 kHz coefficients exactly (the same design as pyloudnorm and
    libebur128).
    """
    # stage 1: high shelf, +4 dB above ~1.5 kHz (head effects)
    gain_db, q, fc = 3.999843853973347, 0.7071752369554196, 1681.974450955533
    k = math.tan(math.pi * fc / sr)
    vh = 10 ** (gain_db / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf_b = np.array([(vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0])
    shelf_a = np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    # stage 2: RLB high-pass at ~38 Hz
    q, fc = 0.5003270373238773, 38.13547087602444
    k = math.tan(math.pi * fc / sr)
    a0 = 1 + k / q + k * k
    high_b = np.array([1.0, -2.0, 1.0])
    high_a = np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    return [(shelf_b, shelf_a), (high_b, high_a)]


def integrated_loudness(audio: np.ndarray, sr: int) -> float:
    """ITU-R BS.1770-4 integrated loudness in LUFS; ``-inf`` for silence or audio shorter than one 400 ms block.

    Channels are weighted 1 (the standard's weight for left, right and centre; surround channels are not
    distinguished here).
    """
    from scipy.signal import lfilter

    audio = np.asarray(audio, dtype=np.float64)
    audio = audio[None, :] if audio.ndim == 1 else audio  # (channels, samples)
    block, step = int(round(0.4 * sr)), int(round(0.1 * sr))
    if audio.shape[1] < block:
        return -math.inf
    weighted = audio
    for b, a in _k_weighting(sr):
        weighted = lfilter(b, a, weighted, axis=1)
    starts = np.arange(0, audio.shape[1] - block + 1, step)
    squares = np.concatenate([np.zeros((weighted.shape[0], 1)), np.cumsum(weighted**2, axis=1)], axis=1)
    power = ((squares[:, starts + block] - squares[:, starts]) / block).sum(axis=0)  # (blocks,) summed channels
    with np.errstate(divide="ignore"):
        loudness = -0.691 + 10 * np.log10(power)
    gated = power[loudness > SILENCE_LUFS]
    if gated.size == 0:
        return -math.inf
    relative_gate = -0.691 + 10 * math.log10(gated.mean()) - 10.0
    gated = power[(loudness > SILENCE_LUFS) & (loudness > relative_gate)]
    return float(-0.691 + 10 * math.log10(gated.mean()))


CENTROID_MAX_HZ = 16000.0  # the band MusicGen's 32 kHz EnCodec keeps; higher content of 44.1/48 kHz files is ignored


def spectral_centroid(audio: np.ndarray, sr: int, n_fft: int = 4096) -> float | None:
    """Spectral centroid in Hz of the long-term average magnitude spectrum, between 20 Hz and 16 kHz (or Nyquist).

    Averaging the spectrum over the whole excerpt first weights every frame by its level, so quiet passages and
    silence barely count. A sine gives its own frequency; white noise sampled at 32 kHz gives about 8 kHz. None for
    silence (or audio shorter than a few samples).
    """
    x = to_mono(audio)
    if len(x) < 16 or not np.any(x):
        return None
    n_fft = min(n_fft, 1 << int(math.log2(len(x))))
    spectrum = stft_magnitude(x, n_fft, n_fft // 2).mean(axis=0)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    band = (freqs >= 20.0) & (freqs <= min(CENTROID_MAX_HZ, sr / 2))
    total = spectrum[band].sum()
    if total <= 0:
        return None
    return float((freqs[band] * spectrum[band]).sum() / total)


def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float = 30.0, fmax: float | None = None) -> np.ndarray:
    """Triangular filters on the HTK mel scale, (n_mels, n_fft // 2 + 1): librosa's (equal to the hand-written
    filterbank it replaced within 3e-8)."""
    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax or sr / 2, htk=True, norm=None)


def frame_descriptors(audio: np.ndarray, sr: int, n_mfcc: int = 20) -> np.ndarray:
    """Per-frame MFCCs and normalised chroma, (num_frames, n_mfcc + 12), about 23 frames per second.

    A weight-free timbre + harmony embedding: 40 mel bands (30 Hz to 11 kHz) in dB, DCT-II to ``n_mfcc``
    coefficients, plus the 12 pitch classes of each frame normalised to sum 1 (so loudness lives in the MFCCs):
    librosa's ``chroma_stft`` (the project's one chroma, as in :mod:`musicgen_lora.memorisation.melody`) of the same
    magnitude spectrum, tuning fixed at A440. Measured against the hand-written whitened chroma it replaced
    (bench/RESULTS.md, *Core and extras*): the same Fréchet distances, in half the time.
    """
    x = to_mono(audio)
    n_fft = 4096 if sr > 24000 else 2048
    hop = n_fft // 3
    mag = stft_magnitude(x, n_fft, hop)
    mel = mel_filterbank(sr, n_fft, 40, fmax=min(11000.0, sr / 2)) @ (mag.T**2)  # (40, frames)
    log_mel = 10.0 * np.log10(np.maximum(mel, 1e-10))
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=n_mfcc, dct_type=2, norm="ortho").T  # (frames, n_mfcc)
    chroma = librosa.feature.chroma_stft(S=mag.T, sr=sr, n_fft=n_fft, tuning=0.0, norm=None).T  # (frames, 12)
    chroma = chroma / np.maximum(chroma.sum(axis=1, keepdims=True), 1e-9)
    frames = min(len(mfcc), len(chroma))
    return np.concatenate([mfcc[:frames], chroma[:frames]], axis=1)
