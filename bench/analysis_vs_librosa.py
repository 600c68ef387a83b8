"""Our analysis code and librosa's, side by side: accuracy on the real-music corpora, speed and memory.

Usage::

    python bench/analysis_vs_librosa.py CORPUS_DIR [--limit N] [--before PATH]

``CORPUS_DIR`` is a folder written by ``bench/key_tempo_corpora.py``; ``--before`` is the previous analysis.py
(``git show e2d5858:musicgen_lora/audio/analysis.py > before.py``) whose hand-written STFT, mel filterbank, MFCC,
chroma and onset code is compared with librosa's. Speed: best and median of 5 runs on a 60 s excerpt (one core: run with
OMP_NUM_THREADS=1); memory: tracemalloc's peak (numpy allocations are traced). Prints a markdown report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from key_tempo_accuracy import load_module  # noqa: E402

from musicgen_lora.audio import analysis  # noqa: E402
from musicgen_lora.audio.key import estimate_key, key_scores  # noqa: E402
from musicgen_lora.audio.tempo import estimate_tempo  # noqa: E402


def cost(function, repeats: int = 5) -> tuple[float, float, float]:
    """(best seconds, median seconds, peak traced MB) of ``function()``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    function()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return min(times), float(np.median(times)), peak / 2**20


def librosa_tempo(audio: np.ndarray, sr: int) -> float:
    """librosa's reference: onset strength + the tempogram's prior-weighted peak (librosa.feature.tempo)."""
    envelope = librosa.onset.onset_strength(y=audio, sr=sr)
    return float(librosa.feature.tempo(onset_envelope=envelope, sr=sr)[0])


def librosa_key(audio: np.ndarray, sr: int, kind: str) -> tuple[int, str]:
    """Our key profiles (and bass term off) on librosa's chroma: ``cqt`` or ``stft``."""
    if kind == "cqt":
        chroma = librosa.feature.chroma_cqt(y=audio, sr=sr)
    else:
        chroma = librosa.feature.chroma_stft(y=audio, sr=sr, n_fft=8192)
    scores = key_scores(chroma.sum(axis=1), np.zeros(12))
    mode, tonic = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return int(tonic), ("major", "minor")[mode]


def accuracy(corpus: Path, limit: int | None) -> list[str]:
    rows = [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()]
    rows = rows[:: max(1, len(rows) // limit)] if limit else rows
    hits: dict[str, list[float]] = {}
    for row in rows:
        audio, sr = sf.read(corpus / row["file"], dtype="float32")
        if row.get("bpm"):
            for name, bpm in (("ours", estimate_tempo(audio, sr)), ("librosa", librosa_tempo(audio, sr))):
                bpm = getattr(bpm, "bpm", bpm)
                hits.setdefault(f"tempo {name}", []).append(bpm is not None and abs(bpm / row["bpm"] - 1) <= 0.04)
        if row.get("key"):
            target = analysis.parse_key(row["key"])
            ours = estimate_key(audio, sr)
            for name, est in (
                ("ours (NNLS notes + bass)", (ours.tonic, ours.mode)),
                ("librosa chroma_cqt", librosa_key(audio, sr, "cqt")),
                ("librosa chroma_stft", librosa_key(audio, sr, "stft")),
            ):
                hits.setdefault(f"key {name}", []).append(analysis.key_score(est, target)[0])
    lines = ["| estimator | n | exact (tempo within 4 % / key exact) | MIREX (key) |", "|---|---|---|---|"]
    for name, values in hits.items():
        mirex = f"{np.mean(values):.3f}" if name.startswith("key") else "-"
        lines.append(f"| {name} | {len(values)} | {100 * np.mean([v == 1 for v in values]):.0f} % | {mirex} |")
    return lines


def speed(before, sr: int = 32000) -> list[str]:
    rng = np.random.default_rng(0)
    # 60 s of a harmonic tone sequence with noise bursts: enough structure for every function to do real work
    t = np.arange(60 * sr) / sr
    audio = (
        0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t)) + 0.05 * rng.standard_normal(len(t))
    ).astype(np.float32)
    n_fft, hop = 4096, 1365
    old_mel = getattr(before, "_mel_filterbank", None) or before.mel_filterbank

    def new_mel():
        return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=40, fmin=30.0, fmax=11000.0, htk=True, norm=None)

    cases = {
        "STFT magnitude (4096/1365)": (
            lambda: before.stft_magnitude(audio.astype(np.float64), n_fft, hop),
            lambda: np.abs(librosa.stft(audio, n_fft=n_fft, hop_length=hop, pad_mode="constant")),
        ),
        "mel filterbank (40 bands)": (lambda: old_mel(sr, n_fft, 40, fmax=11000.0), new_mel),
        "onset strength": (
            lambda: before.onset_envelope(audio, sr),
            lambda: librosa.onset.onset_strength(y=audio, sr=sr),
        ),
        "chroma (frame descriptors)": (
            lambda: before.chroma_frames(audio, sr, n_fft=n_fft, hop=hop),
            lambda: librosa.feature.chroma_stft(y=audio, sr=sr, n_fft=n_fft, hop_length=hop),
        ),
        "MFCC + chroma descriptors": (
            lambda: before.frame_descriptors(audio, sr),
            lambda: analysis.frame_descriptors(audio, sr),
        ),
        "tempo (60 s)": (lambda: before.estimate_tempo(audio, sr), lambda: librosa_tempo(audio, sr)),
    }
    lines = [
        "| function | ours: best / median s, peak MB | librosa (or new): best / median s, peak MB |",
        "|---|---|---|",
    ]
    for name, (ours, theirs) in cases.items():
        a, b = cost(ours, 2 if "tempo" in name else 5), cost(theirs, 2 if "tempo" in name else 5)
        lines.append(f"| {name} | {a[0]:.3f} / {a[1]:.3f}, {a[2]:.1f} | {b[0]:.3f} / {b[1]:.3f}, {b[2]:.1f} |")
    difference = np.abs(old_mel(sr, n_fft, 40, fmax=11000.0) - new_mel()).max()
    lines.append(f"\nmel filterbanks: largest difference {difference:.1e} (weights up to 1)")
    new = cost(lambda: (estimate_tempo(audio, sr), estimate_key(audio, sr)))
    lines.append(
        f"new estimate_tempo + estimate_key on 60 s: best {new[0]:.3f} s, median {new[1]:.3f} s, peak {new[2]:.1f} MB"
    )
    return lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--limit", type=int, default=None, help="measure accuracy on about N excerpts")
    parser.add_argument("--before", default=None, help="the previous analysis.py (default: the current one)")
    args = parser.parse_args(argv)
    before = load_module(args.before)
    load = open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else "?"
    report = [f"load average at start: {' '.join(load)}", ""] + speed(before) + [""] + accuracy(args.corpus, args.limit)
    print("\n".join(report))
    return {"lines": len(report)}


if __name__ == "__main__":
    main()
