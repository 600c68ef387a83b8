"""Spectrogram pictures of the generated clips, for the report page."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..audio import analysis

# 9 anchors of a perceptually ordered dark-to-bright palette (close to matplotlib's "magma")
_PALETTE = np.array(
    [[0, 0, 4], [28, 16, 68], [79, 18, 123], [129, 37, 129], [181, 54, 122], [229, 80, 100], [251, 135, 97],
     [254, 194, 135], [252, 253, 191]], dtype=np.float64,
)  # fmt: skip


def spectrogram_image(audio: np.ndarray, sr: int, height: int = 128, max_width: int = 640) -> np.ndarray:
    """A log-mel spectrogram as an RGB image (height, width, 3) uint8, low frequencies at the bottom, 80 dB range."""
    x = analysis.to_mono(np.nan_to_num(np.asarray(audio, dtype=np.float64)))
    n_fft = 4096  # 7.8 Hz bins at 32 kHz: the lowest mel bands are not empty
    hop = max(256, int(math.ceil(len(x) / max_width)))
    mag = analysis.stft_magnitude(x, n_fft, hop)
    mel = analysis.mel_filterbank(sr, n_fft, height, fmin=30.0) @ (mag.T**2)  # (height, frames)
    db = 10 * np.log10(np.maximum(mel, 1e-10))
    level = np.clip((db - (db.max() - 80.0)) / 80.0, 0.0, 1.0)[::-1]  # (height, frames), 0..1
    position = level * (len(_PALETTE) - 1)
    low = np.floor(position).astype(int).clip(0, len(_PALETTE) - 2)
    frac = (position - low)[..., None]
    rgb = _PALETTE[low] * (1 - frac) + _PALETTE[low + 1] * frac
    return rgb.round().astype(np.uint8)


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB uint8 image (height, width, 3) as a PNG (zlib only, no imaging library)."""
    import struct
    import zlib

    height, width, _ = image.shape
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    Path(path).write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    )
