"""The first preparation of a 20-track folder: wall time, and how often each audio file is opened and decoded.

    python bench/prepare_first_run.py [--tracks 20] [--seconds 30] [--repeat 3] [--out results.json]

Writes a folder of ``--tracks`` stereo 44.1 kHz WAVs (synthesised tones with a tremolo and a quiet tail) with a
metadata.jsonl, builds the tiny random MusicGen, and runs ``python -m musicgen_lora.prepare`` in this process on an
empty cache ``--repeat`` times (a new cache each time), with every caption measurement and level on
(``add_metadata``, ``loudness_target_lufs``, ``silence_threshold_db``). soundfile is patched to count, per file:

* ``opens``: ``soundfile.SoundFile`` objects created for it (every read, header check or decode opens one);
* ``decodes``: frames read from it divided by its length (1.0 = decoded once from start to end);
* ``source_listings``: how often the folder's metadata.jsonl was read.

Wall time on a shared machine swings with the other jobs; the process' CPU time is printed beside it.

Printed (and written with ``--out``) as the median wall time and the per-file counts (the same for every file).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musicgen_lora.demo.tiny import save_tiny_musicgen  # noqa: E402
from musicgen_lora.prepare import sources  # noqa: E402
from musicgen_lora.prepare.cli import main as prepare_main  # noqa: E402

RATE = 44100


def write_folder(folder: Path, tracks: int, seconds: float) -> list[Path]:
    """``tracks`` stereo WAVs of ``seconds`` (a chord with a tremolo, its last 2 s silent) and their captions."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for index in range(tracks):
        t = np.arange(int(seconds * RATE)) / RATE
        base = 110.0 * 2 ** (index / 12)
        mono = sum(np.sin(2 * np.pi * base * k * t) / k for k in (1, 1.5, 2, 3)) * (0.5 + 0.5 * np.sin(2 * np.pi * t))
        mono = 0.2 * mono + 0.01 * rng.standard_normal(len(t))
        mono[-2 * RATE :] = 0.0
        audio = np.stack([mono, 0.8 * mono], axis=1).astype(np.float32)
        name = f"track_{index:02d}.wav"
        sf.write(folder / name, audio, RATE, subtype="PCM_16")
        rows.append({"file_name": name, "text": f"a test chord {index}"})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return [folder / r["file_name"] for r in rows]


class Counter:
    """Counts soundfile opens and frames read per (real) path."""

    def __init__(self) -> None:
        self.opens: collections.Counter[str] = collections.Counter()
        self.frames: collections.Counter[str] = collections.Counter()
        self._init, self._read = sf.SoundFile.__init__, sf.SoundFile.read

    def __enter__(self) -> Counter:
        counter = self

        def init(handle, file, *args, **kwargs):
            counter._init(handle, file, *args, **kwargs)
            handle._counted = os.path.realpath(file) if isinstance(file, (str, os.PathLike)) else None
            if handle._counted:
                counter.opens[handle._counted] += 1

        def read(handle, frames=-1, *args, **kwargs):
            out = counter._read(handle, frames, *args, **kwargs)
            if getattr(handle, "_counted", None):
                counter.frames[handle._counted] += len(out)
            return out

        sf.SoundFile.__init__, sf.SoundFile.read = init, read
        return self

    def __exit__(self, *exc: object) -> None:
        sf.SoundFile.__init__, sf.SoundFile.read = self._init, self._read


@contextlib.contextmanager
def counting_listings() -> Iterator[list[int]]:
    """Counts how often the dataset folder's listing (metadata.jsonl) is read."""
    listed: list[int] = []
    original = sources._read_metadata

    def counting(folder):
        listed.append(1)
        return original(folder)

    sources._read_metadata = counting
    try:
        yield listed
    finally:
        sources._read_metadata = original


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="prepare-first-run-"))
    try:
        files = write_folder(root / "songs", args.tracks, args.seconds)
        model = save_tiny_musicgen(root / "tiny", seed=0)
        times, cpu_times, counts, listings = [], [], [], []
        for attempt in range(args.repeat):
            argv_run = [
                "--model_name_or_path", str(model), "--dataset_name", str(root / "songs"),
                "--output_dir", str(root / f"out-{attempt}"), "--data_cache_dir", str(root / f"cache-{attempt}"),
                "--report_to", "none", "--disable_tqdm", "true", "--add_metadata", "true",
                "--loudness_target_lufs", "-14", "--silence_threshold_db", "-60", "--max_duration_in_seconds", "10",
                "--chunk_long_tracks", "true",
            ]  # fmt: skip
            with Counter() as counter, counting_listings() as listed:
                start, cpu = time.perf_counter(), time.process_time()
                report = prepare_main(argv_run)
                times.append(time.perf_counter() - start)
                cpu_times.append(time.process_time() - cpu)
            listings.append(len(listed))
            frames = {str(f): sf.info(f).frames for f in files}
            counts.append(
                {
                    "opens": sorted({counter.opens[os.path.realpath(f)] for f in files}),
                    "decodes": sorted({round(counter.frames[os.path.realpath(f)] / frames[str(f)], 2) for f in files}),
                }
            )
        result = {
            "tracks": args.tracks,
            "seconds_per_track": args.seconds,
            "examples": report["splits"]["train"]["examples"],
            "wall_seconds": [round(t, 2) for t in times],
            "wall_seconds_median": round(statistics.median(times), 2),
            "cpu_seconds": [round(t, 2) for t in cpu_times],
            "cpu_seconds_median": round(statistics.median(cpu_times), 2),
            "source_listings": listings[0],
            "per_file": counts[0],
            "same_counts_every_run": all(c == counts[0] for c in counts),
        }
        print(json.dumps(result, indent=2))
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
        return result
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
