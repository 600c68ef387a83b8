"""Spectrogram pictures of the generated clips, for the report page: librosa's log-mel spectrogram, drawn by
matplotlib with its "magma" colour map (low frequencies at the bottom, an 80 dB range)."""

from __future__ import annotations

import math
from pathlib import Path

import librosa
import matplotlib.image
import numpy as np

from ..audio import analysis

DYNAMIC_RANGE_DB = 80.0


def log_mel_spectrogram(audio: np.ndarray, sr: int, height: int = 128, max_width: int = 640) -> np.ndarray:
    """Decibels relative to the loudest cell, clipped to -80..0 dB: (height mel bands from 30 Hz up, <= max_width
    frames)."""
    x = analysis.to_mono(np.nan_to_num(np.asarray(audio, dtype=np.float32)))
    hop = max(256, int(math.ceil(len(x) / max_width)))
    # n_fft 4096: 7.8 Hz bins at 32 kHz, so the lowest mel bands are not empty
    mel = librosa.feature.melspectrogram(y=x, sr=sr, n_fft=4096, hop_length=hop, n_mels=height, fmin=30.0, htk=True)
    return librosa.power_to_db(mel, ref=np.max, amin=1e-10, top_db=DYNAMIC_RANGE_DB)


def write_spectrogram_png(path: str | Path, audio: np.ndarray, sr: int) -> np.ndarray:
    """Write the clip's spectrogram as a PNG (one pixel per mel band and frame); returns the dB image it drew."""
    image = log_mel_spectrogram(audio, sr)
    matplotlib.image.imsave(path, image, cmap="magma", vmin=-DYNAMIC_RANGE_DB, vmax=0.0, origin="lower")
    return image
