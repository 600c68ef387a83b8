"""Signal-processing steps shared by the demo's voices (:mod:`.instruments`) and its mix (:mod:`.render`): a time
axis, and Butterworth high-/low-pass filtering with :mod:`scipy.signal`."""

from __future__ import annotations

import numpy as np
from scipy import signal


def time_axis(n: int, sr: int) -> np.ndarray:
    """Times in seconds of ``n`` samples at ``sr`` Hz, float32 (the voices are computed in float32)."""
    return np.arange(n, dtype=np.float32) / np.float32(sr)


def butterworth(
    x: np.ndarray, sr: int, highpass: float | None = None, lowpass: float | None = None, order: int = 2
) -> np.ndarray:
    """``x`` through a Butterworth high-pass and/or low-pass of ``order`` (both given: the two in series, a
    band-pass whose magnitude is the product of theirs). Cut-offs are clamped below Nyquist (high-pass <= 0.4 sr,
    low-pass <= 0.45 sr), so every sample rate works; no cut-off: ``x`` unchanged.

    Causal IIR filtering (``sosfilt``), as a mixing desk filters: the textbook Butterworth magnitude response (so the
    tone is that filter's) plus a phase shift, which moves no pitch and no beat.
    """
    sections = []
    if highpass is not None:
        sections.append(signal.butter(order, min(highpass, 0.4 * sr), "highpass", fs=sr, output="sos"))
    if lowpass is not None:
        sections.append(signal.butter(order, min(lowpass, 0.45 * sr), "lowpass", fs=sr, output="sos"))
    if not sections:
        return x
    return signal.sosfilt(np.concatenate(sections), x)
