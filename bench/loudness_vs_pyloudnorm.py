"""Our BS.1770 integrated loudness (musicgen_lora.audio.analysis) against pyloudnorm: accuracy on the EBU Tech 3341
test signals (stereo 1 kHz sines; the expected loudness, within +-0.1 LU) and CPU time on 3 minutes of stereo audio.

    python bench/loudness_vs_pyloudnorm.py       # needs pyloudnorm (requirements-dev.txt)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pyloudnorm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musicgen_lora.audio.analysis import integrated_loudness  # noqa: E402

# EBU Tech 3341 cases 1-5: (level dBFS, seconds) in sequence, and the expected integrated loudness (LUFS)
CASES = {
    "3341-1": ([(-23, 20)], -23.0),
    "3341-2": ([(-33, 20)], -33.0),
    "3341-3": ([(-36, 10), (-23, 60), (-36, 10)], -23.0),
    "3341-4": ([(-72, 10), (-36, 10), (-23, 20), (-36, 10), (-72, 10)], -23.0),
    "3341-5": ([(-26, 20), (-20, 20.1), (-26, 20)], -23.0),
}


def sines(parts: list[tuple[float, float]], sr: int) -> np.ndarray:
    """Stereo (2, samples) 1 kHz sines at the given peak levels, one after the other."""
    mono = np.concatenate(
        [10 ** (db / 20) * np.sin(2 * np.pi * 1000 * np.arange(int(round(s * sr))) / sr) for db, s in parts]
    )
    return np.stack([mono, mono])


def cpu_seconds(function, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return sorted(times)[repeat // 2]


def main() -> None:
    errors = {"ours": [], "pyloudnorm": []}
    for sr in (48000, 44100, 32000):
        for name, (parts, expected) in CASES.items():
            audio = sines(parts, sr)
            ours = integrated_loudness(audio, sr)
            theirs = pyloudnorm.Meter(sr).integrated_loudness(audio.T)
            errors["ours"].append(abs(ours - expected))
            errors["pyloudnorm"].append(abs(theirs - expected))
            print(f"{sr} Hz {name}: expected {expected:.1f}, ours {ours:.3f}, pyloudnorm {theirs:.3f}")
    for who, found in errors.items():
        outside = sum(e > 0.1 for e in found)
        worst = max(found)
        print(f"{who}: mean |error| {np.mean(found):.3f} LU, max {worst:.3f}, {outside} of {len(found)} outside 0.1")
    rng = np.random.default_rng(0)
    for sr in (32000, 44100):
        audio = 0.1 * rng.standard_normal((2, 180 * sr))
        ours = cpu_seconds(lambda audio=audio, sr=sr: integrated_loudness(audio, sr))
        theirs = cpu_seconds(lambda audio=audio, sr=sr: pyloudnorm.Meter(sr).integrated_loudness(audio.T))
        print(f"3 min stereo at {sr} Hz, median CPU s of 5: ours {ours:.3f}, pyloudnorm {theirs:.3f}")


if __name__ == "__main__":
    main()
