"""What a piece of audio is, measured from the audio alone: tempo, key, loudness and frame-level descriptors.

No model weights and no training: short-time Fourier transforms and textbook estimators, in numpy/scipy, so the
numbers mean the same thing on every machine. Used by :mod:`musicgen_lora.evaluate` (prompt adherence, audio
health, the weight-free Fréchet descriptor) and meant for captioning a corpus (tempo, key, loudness words).

* **Tempo** (:func:`estimate_tempo`): a spectral-flux onset envelope at 100 frames/s; each candidate tempo is scored
  by the envelope's autocorrelation at one to four beat periods (favours the beat and its slower multiples) times
  its Fourier magnitude at the beat frequency and its first harmonics (favours the beat and its faster multiples), so
  that octave errors in either direction are penalised; a broad log-normal prior (centred near 110 bpm) breaks the
  remaining ties.
* **Key** (:func:`estimate_key`): a pitch-class profile (chroma) from a log-compressed, spectrally whitened
  magnitude spectrum between 50 Hz and 2.1 kHz, correlated with the 24 rotated Albrecht-Shanahan key profiles.
* **Loudness** (:func:`integrated_loudness`): ITU-R BS.1770-4 integrated loudness in LUFS (K-weighting, 400 ms
  blocks with 75 % overlap, -70 LUFS absolute and -10 LU relative gates), for any sample rate.
* **Brightness** (:func:`spectral_centroid`): the centroid of the long-term average magnitude spectrum, in Hz.
* **Descriptors** (:func:`frame_descriptors`): per-frame MFCCs (20) and chroma (12), the weight-free embedding of
  the evaluation's Fréchet distance.

All functions take mono or multi-channel float audio, ``(samples,)`` or ``(channels, samples)``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


_PITCH_CLASSES = {
    "C": 0, "B#": 0, "C#": 1, "Db": 1, "D": 2, "D#": 3, "Eb": 3, "E": 4, "Fb": 4, "E#": 5, "F": 5,
    "F#": 6, "Gb": 6, "G": 7, "G#": 8, "Ab": 8, "A": 9, "A#": 10, "Bb": 10, "B": 11, "Cb": 11,
}  # fmt: skip


# Key profiles of Albrecht & Shanahan (2013): pitch-class distributions of major / minor pieces, tonic first. They
# beat Krumhansl & Kessler's probe-tone ratings on chord-based music (0.88 vs 0.72 MIREX score on our synthetic
# corpus, with fewer dominant and relative-key confusions).
MAJOR_PROFILE = np.array([0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081])


MINOR_PROFILE = np.array([0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052])


ONSET_FRAME_RATE = 100.0  # onset-envelope frames per second


MIN_BPM, MAX_BPM = 40.0, 240.0


SILENCE_LUFS = -70.0  # BS.1770's absolute gate: blocks quieter than this are not counted


def to_mono(audio: np.ndarray) -> np.ndarray:
    """``(samples,)`` or ``(channels, samples)`` float audio -> float64 ``(samples,)`` (mean of the channels)."""
    audio = np.asarray(audio, dtype=np.float64)
    return audio.mean(axis=0) if audio.ndim == 2 else audio.reshape(-1)


def _frames(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Centred (zero-padded) frames of ``x``: (num_frames, n_fft)."""
    padded = np.pad(x, (n_fft // 2, n_fft // 2))
    count = 1 + max(0, (len(padded) - n_fft) // hop)
    index = np.arange(n_fft)[None, :] + hop * np.arange(count)[:, None]
    return padded[index]


def stft_magnitude(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Magnitude spectrogram of mono ``x`` with a Hann window: (num_frames, n_fft // 2 + 1)."""
    return np.abs(np.fft.rfft(_frames(x, n_fft, hop) * np.hanning(n_fft + 2)[1:-1], axis=1))


def onset_envelope(audio: np.ndarray, sr: int) -> np.ndarray:
    """Spectral-flux onset strength at :data:`ONSET_FRAME_RATE` frames per second (1-D, >= 0)."""
    x = to_mono(audio)
    hop = max(1, int(round(sr / ONSET_FRAME_RATE)))
    n_fft = 1 << int(math.ceil(math.log2(4 * hop)))
    mag = stft_magnitude(x, n_fft, hop)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    # 36 log-spaced bands from 30 Hz to 8 kHz (or Nyquist): each band counts once, whatever its width
    edges = np.geomspace(30.0, min(8000.0, sr / 2), 37)
    band_of = np.searchsorted(edges, freqs) - 1
    keep = (band_of >= 0) & (band_of < 36)
    bands = np.zeros((mag.shape[0], 36))
    np.add.at(bands.T, band_of[keep], mag[:, keep].T)
    counts = np.maximum(np.bincount(band_of[keep], minlength=36), 1)
    bands = np.log1p(1000.0 * bands / counts / max(bands.max() / counts.max(), 1e-12))
    flux = np.maximum(np.diff(bands, axis=0, prepend=bands[:1]), 0.0).mean(axis=1)
    # remove the slowly varying part (loudness changes), keep the pulses
    width = int(ONSET_FRAME_RATE * 0.4) | 1
    local = np.convolve(flux, np.ones(width) / width, mode="same")
    return np.maximum(flux - local, 0.0)


@dataclass
class TempoEstimate:
    bpm: float
    confidence: float  # the winning salience relative to the best candidate an octave away (> 1: clear winner)


def estimate_tempo(
    audio: np.ndarray, sr: int, min_bpm: float = MIN_BPM, max_bpm: float = MAX_BPM
) -> TempoEstimate | None:
    """Estimated tempo in beats per minute, or None when the audio has no rhythmic content (or is under 1 s).

    Args:
        audio: ``(samples,)`` or ``(channels, samples)`` float audio.
        sr: its sample rate.
        min_bpm, max_bpm: the range searched.
    """
    if to_mono(audio).shape[-1] < sr:  # under 1 s; shorter than the envelope's smoothing window, it would not fit
        return None
    env = onset_envelope(audio, sr)
    if len(env) < ONSET_FRAME_RATE or not np.any(env > 0):
        return None
    env = env - env.mean()
    n = len(env)
    # autocorrelation (unbiased: divided by the overlap), through the FFT
    spectrum = np.fft.rfft(env, 2 * n)
    acf = np.fft.irfft(np.abs(spectrum) ** 2)[:n]
    acf = acf / np.maximum(n - np.arange(n), 1) / max(acf[0] / n, 1e-12)
    bpms = np.arange(min_bpm, max_bpm + 0.05, 0.1)
    periods = ONSET_FRAME_RATE * 60.0 / bpms  # frames per beat
    lags = np.arange(n)
    acf_score = np.zeros_like(bpms)
    weight = np.zeros_like(bpms)
    for beats in (1, 2, 3, 4):
        lag = beats * periods
        usable = lag < 0.7 * n
        acf_score += np.where(usable, np.interp(lag, lags, acf), 0.0)
        weight += usable
    acf_score = np.maximum(acf_score / np.maximum(weight, 1), 0.0)
    # Fourier magnitude of the envelope at the beat frequency and its 2nd and 4th harmonics
    t = np.arange(n) / ONSET_FRAME_RATE
    window = np.hanning(n)
    dft_score = np.zeros_like(bpms)
    for harmonic, w in ((1, 1.0), (2, 0.5), (4, 0.25)):
        freqs = harmonic * bpms / 60.0
        dft_score += w * np.abs(np.exp(-2j * np.pi * np.outer(freqs, t)) @ (env * window))
    dft_score /= max(dft_score.max(), 1e-12)
    prior = np.exp(-0.5 * (np.log2(bpms / 110.0) / 0.9) ** 2)
    salience = acf_score * dft_score * prior
    best = int(np.argmax(salience))
    if salience[best] <= 0:
        return None
    bpm = float(bpms[best])
    rivals = [salience[int(np.argmin(np.abs(bpms - bpm * f)))] for f in (0.5, 2.0) if min_bpm <= bpm * f <= max_bpm]
    rival = max(rivals) if rivals else 0.0
    return TempoEstimate(bpm=round(bpm, 1), confidence=float(salience[best] / max(rival, 1e-12)) if rival else math.inf)


def tempo_error(estimated: float, target: float) -> dict[str, float]:
    """Absolute error in bpm, relative error, and the relative error allowing a factor 2 or 3 (octave errors)."""
    relative = abs(estimated - target) / target
    octave = min(abs(estimated * f - target) / target for f in (1.0, 0.5, 2.0, 1 / 3, 3.0))
    return {"abs_error_bpm": abs(estimated - target), "rel_error": relative, "rel_error_any_octave": octave}


def chroma_frames(audio: np.ndarray, sr: int, n_fft: int = 8192, hop: int | None = None) -> np.ndarray:
    """Pitch-class energy per frame, (num_frames, 12), from a whitened log spectrum between 50 Hz and 2.1 kHz."""
    x = to_mono(audio)
    hop = hop or n_fft // 4
    n_fft = min(n_fft, 1 << int(math.log2(max(len(x), 256))))
    mag = stft_magnitude(x, n_fft, hop)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    band = (freqs >= 50.0) & (freqs <= 2100.0)
    spec = np.log1p(100.0 * mag[:, band] / max(mag.max(), 1e-12))
    # whiten: subtract a moving average along frequency, so that tonal peaks stand out from broadband energy
    width = 31
    if spec.shape[1] < width:  # an excerpt of a few ms: too few bins to whiten, and no pitch to find in it
        return np.zeros((mag.shape[0], 12))
    spec = np.maximum(spec - np.apply_along_axis(lambda r: np.convolve(r, np.ones(width) / width, "same"), 1, spec), 0)
    midi = 69.0 + 12.0 * np.log2(freqs[band] / 440.0)
    pitch_class = np.round(midi).astype(int) % 12
    # weight each bin by how close it is to an equal-tempered pitch (bins between two notes count little)
    closeness = np.cos(np.pi * (midi - np.round(midi))) ** 2
    chroma = np.zeros((mag.shape[0], 12))
    np.add.at(chroma.T, pitch_class, (spec * closeness).T)
    return chroma


@dataclass
class KeyEstimate:
    key: str  # e.g. "A minor"
    tonic: int  # pitch class, 0 = C
    mode: str  # "major" or "minor"
    correlation: float  # Pearson correlation of the chroma with the winning key profile
    margin: float  # how much better than the runner-up


def key_name(tonic: int, mode: str) -> str:
    return f"{NOTE_NAMES[tonic % 12]} {mode}"


def estimate_key(audio: np.ndarray, sr: int) -> KeyEstimate | None:
    """The most likely of the 24 major/minor keys, or None for audio without tonal content."""
    chroma = chroma_frames(audio, sr).sum(axis=0)
    if not np.any(chroma > 0) or np.allclose(chroma, chroma[0]):
        return None
    scores = []
    for mode, profile in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
        for tonic in range(12):
            scores.append((float(np.corrcoef(chroma, np.roll(profile, tonic))[0, 1]), tonic, mode))
    scores.sort(reverse=True)
    best, second = scores[0], scores[1]
    return KeyEstimate(key_name(best[1], best[2]), best[1], best[2], best[0], best[0] - second[0])


def parse_key(text: str) -> tuple[int, str] | None:
    """``"F# minor"`` / ``"Bb maj"`` -> ``(6, "minor")`` / ``(10, "major")``; None if it is not a key."""
    match = re.fullmatch(r"\s*([A-Ga-g])([#b♯♭]?)\s*(major|minor|maj|min)\s*", text, flags=re.IGNORECASE)
    if not match:
        return None
    root = match.group(1).upper() + match.group(2).replace("♯", "#").replace("♭", "b")
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
    """Triangular filters on the HTK mel scale, (n_mels, n_fft // 2 + 1)."""
    fmax = fmax or sr / 2

    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def hz(m):
        return 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)

    points = hz(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    lower, centre, upper = points[:-2, None], points[1:-1, None], points[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def frame_descriptors(audio: np.ndarray, sr: int, n_mfcc: int = 20) -> np.ndarray:
    """Per-frame MFCCs and normalised chroma, (num_frames, n_mfcc + 12), about 23 frames per second.

    A weight-free timbre + harmony embedding: 40 mel bands (30 Hz to 11 kHz) in dB, DCT-II to ``n_mfcc``
    coefficients, plus the 12 pitch classes of each frame normalised to sum 1 (so loudness lives in the MFCCs).
    """
    x = to_mono(audio)
    n_fft = 4096 if sr > 24000 else 2048
    hop = n_fft // 3
    mag = stft_magnitude(x, n_fft, hop)
    mel = mel_filterbank(sr, n_fft, 40, fmax=min(11000.0, sr / 2)) @ (mag.T**2)  # (40, frames)
    log_mel = 10.0 * np.log10(np.maximum(mel, 1e-10))
    n = np.arange(40)
    dct = np.cos(np.pi / 40 * (n[None, :] + 0.5) * np.arange(n_mfcc)[:, None]) * math.sqrt(2.0 / 40)
    mfcc = (dct @ log_mel).T  # (frames, n_mfcc)
    chroma = chroma_frames(x, sr, n_fft=n_fft, hop=hop)
    chroma = chroma / np.maximum(chroma.sum(axis=1, keepdims=True), 1e-9)
    frames = min(len(mfcc), len(chroma))
    return np.concatenate([mfcc[:frames], chroma[:frames]], axis=1)
