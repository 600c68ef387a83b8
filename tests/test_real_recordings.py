"""Real recordings: the MP3s of the Debian package asc-music (installed by .ci/run) prepare, caption and train.

The package's three tracks last 5-7 minutes each; encoding 17 minutes with EnCodec would take most of a minute on a
small CPU, so the test uses a 12 s piece of each, cut out of the middle of the original MP3 stream at byte level
(no re-encoding: real MPEG frames, decoded by libsndfile as the whole files are, the first one after the cut starting
mid-reservoir as in any cut stream).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

from .conftest import base_argv
from .system_packages import asc_music_or_skip

pytestmark = pytest.mark.slow  # prepares and trains on real MP3s

PIECE_SECONDS = 12.0
CHUNK_SECONDS = 4.0
FRAME_RATE = 50  # the tiny model's codec frames per second
KEY = re.compile(r"\b[A-G][#b]? (major|minor)\b")


@pytest.fixture(scope="module")
def pieces(tmp_path_factory) -> Path:
    tracks = asc_music_or_skip(3)
    folder = tmp_path_factory.mktemp("asc") / "songs"
    folder.mkdir()
    for track in tracks:
        data = track.read_bytes()
        bytes_per_second = len(data) / sf.info(str(track)).duration
        start = int(0.4 * len(data))
        (folder / track.name).write_bytes(data[start : start + int(PIECE_SECONDS * bytes_per_second)])
    return folder


def test_real_mp3s_prepare_caption_and_train(pieces, tiny_model_dir, tmp_path):
    from finetune_musicgen import main as train_main
    from musicgen_lora.prepare.cli import main as prepare_main

    argv = base_argv(tiny_model_dir, pieces, tmp_path / "out", tmp_path / "cache") + [
        "--chunk_long_tracks",
        "true",
        "--max_duration_in_seconds",
        str(CHUNK_SECONDS),
        "--add_metadata",
        "true",
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "2",
        "--logging_steps",
        "1",
    ]
    report = prepare_main(argv)["splits"]["train"]
    assert report["files"] == {"found": 3, "read": 3, "skipped": 0, "reasons": {}, "skipped_files": []}
    assert report["tempo_key"]["tracks_analysed"] == 3 and report["tempo_key"]["tracks_without_tempo"] == 0
    assert sum(report["tempo_key"]["keys"].values()) == 3
    train = datasets.load_from_disk(str(tmp_path / "out" / "prepared_data" / "train"))
    # the chunks of each track cover it from start to end (merge: the last chunk ends at the track's end)
    for name in (p.name for p in sorted(pieces.glob("*.mp3"))):
        seconds = sf.info(str(pieces / name)).frames / sf.info(str(pieces / name)).samplerate
        chunks = sorted(
            (offset, len(codes[0]) / FRAME_RATE)
            for source, offset, codes in zip(train["source"], train["offset_seconds"], train["codes"], strict=False)
            if Path(source).name == name
        )
        assert len(chunks) == math.ceil(seconds / CHUNK_SECONDS - 0.01), (name, chunks)
        assert chunks[0][0] == 0.0 and all(length == CHUNK_SECONDS for _, length in chunks)
        # no gap between consecutive chunks
        assert all(later[0] <= earlier[0] + earlier[1] for earlier, later in zip(chunks, chunks[1:], strict=False))
        assert chunks[-1][0] + chunks[-1][1] == pytest.approx(seconds, abs=0.1)
    # every caption is the track's estimated tempo and key (it had no caption of its own)
    # (both octaves where the estimate cannot tell them apart: "60 or 120 bpm")
    assert all(re.fullmatch(r"(\d+ or )?\d+ bpm, " + KEY.pattern, text) for text in train["text"]), set(train["text"])
    result = train_main(argv)  # trains on the prepared data
    out = tmp_path / "out"
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    losses = [r["loss"] for r in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in r]
    assert len(losses) == 2 and np.isfinite(losses).all() and np.isfinite(result["train"]["train_loss"])
