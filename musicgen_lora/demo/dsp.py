"""Signal-processing steps shared by the demo's voices (:mod:`.instruments`) and its mix (:mod:`.render`): a time
axis, and Butterworth high-/low-pass filtering."""

from __future__ import annotations

import numpy as np


def time_axis(n: int, sr: int) -> np.ndarray:
    """Times in seconds of ``n`` samples at ``sr`` Hz, float32 (the voices are computed in float32)."""
    return np.arange(n, dtype=np.float32) / np.float32(sr)


def fast_len(n: int) -> int:
    """Smallest 2**a * 3**b >= n (a fast FFT size for numpy's pocketfft)."""
    best = 1 << max(0, (n - 1).bit_length())
    power3 = 1
    while power3 < best:
        candidate = power3 << max(0, (-(-n // power3) - 1).bit_length())
        best = min(best, candidate)
        power3 *= 3
    return best


def response(freqs: np.ndarray, highpass: float | None, lowpass: float | None, order: int = 2) -> np.ndarray:
    """Magnitude response of Butterworth high-/low-pass filters (both given: a band-pass)."""
    h = np.ones_like(freqs)
    if highpass is not None:
        with np.errstate(divide="ignore"):
            h /= np.sqrt(1.0 + (highpass / np.maximum(freqs, 1e-9)) ** (2 * order))
    if lowpass is not None:
        h /= np.sqrt(1.0 + (freqs / lowpass) ** (2 * order))
    return h


def butterworth(
    x: np.ndarray, sr: int, highpass: float | None = None, lowpass: float | None = None, order: int = 2
) -> np.ndarray:
    """Zero-phase Butterworth-magnitude filtering in the frequency domain (zero-padded, so no wrap-around of
    the part we keep). Cut-offs are clamped below Nyquist, so every sample rate works."""
    if lowpass is not None:
        lowpass = min(lowpass, 0.45 * sr)
    if highpass is not None:
        highpass = min(highpass, 0.4 * sr)
    m = fast_len(len(x) + int(0.05 * sr))
    spectrum = np.fft.rfft(x, m) * response(np.fft.rfftfreq(m, 1.0 / sr), highpass, lowpass, order)
    return np.fft.irfft(spectrum, m)[: len(x)]
