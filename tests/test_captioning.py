"""Auto-captions (add_metadata): tempo and key from analysis.py, checked against the synthetic corpus' ground truth."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from transformers import AutoModelForTextToWaveform

import musicgen_lora.captioning as captioning
from musicgen_lora.analysis import parse_key
from musicgen_lora.config import parse_config
from musicgen_lora.data import module_fingerprint, prepare_split
from musicgen_lora.errors import UserError

from .conftest import base_argv


@pytest.fixture(scope="module")
def truth_corpus(tmp_path_factory) -> tuple[Path, list[dict]]:
    """10 clips of 6 s (every genre twice) with ground-truth bpm and key, and no captions on disk."""
    from musicgen_lora.synth import synthesize_corpus

    folder = tmp_path_factory.mktemp("captioning") / "corpus"
    rows = synthesize_corpus(folder, clips=10, seconds=6.0, seed=11)
    (folder / "metadata.jsonl").unlink()  # a plain folder of wavs: captions must come from the audio
    return folder, rows


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return AutoModelForTextToWaveform.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("captioning-cache")


def prepare(tmp_path, model_dir, model, dataset, cache, *extra):
    args = parse_config(base_argv(model_dir, dataset, tmp_path / "out", cache) + list(extra)).args
    return prepare_split(args, "train", model, module_fingerprint(model.audio_encoder), False)


def test_captions_get_tempo_and_key_matching_ground_truth(tmp_path, tiny_model_dir, model, truth_corpus, cache):
    folder, rows = truth_corpus
    split = prepare(tmp_path, tiny_model_dir, model, folder, cache, "--add_metadata", "true", "--instance_prompt", "sks")
    assert len(split) == len(rows)
    tempo_hits, key_hits = 0, 0
    for caption, row in zip(split["text"], rows):  # files sorted by name = the corpus order
        words = caption.split(", ")
        assert words[0] == "sks" and words[1].endswith(" bpm") and len(words) == 3, caption
        tempo_hits += abs(int(words[1].split()[0]) - row["bpm"]) <= 2
        key_hits += parse_key(words[2]) == parse_key(row["key"])
    # the acceptance: tempo within 2 bpm and key with mode right on at least 90 % of the clips
    assert tempo_hits >= 0.9 * len(rows), split["text"]
    assert key_hits >= 0.9 * len(rows), (split["text"], [r["key"] for r in rows])


def test_metadata_merges_with_existing_captions(tmp_path, tiny_model_dir, model, truth_corpus, cache):
    source, rows = truth_corpus
    folder = tmp_path / "captioned"
    folder.mkdir()
    for name in ("clip_000.wav", "clip_001.wav", "clip_002.wav"):
        shutil.copy(source / name, folder / name)
    (folder / "clip_000.txt").write_text("lofi hip hop, dusty drums")  # genre words only: tempo and key added
    (folder / "clip_001.txt").write_text("techno, 131 bpm, G minor")  # states both: kept as written
    split = prepare(tmp_path, tiny_model_dir, model, folder, cache, "--add_metadata", "true")
    first = split["text"][0].split(", ")
    assert first[:2] == ["lofi hip hop", "dusty drums"] and first[2] == f"{rows[0]['bpm']} bpm" and len(first) == 4
    assert split["text"][1] == "techno, 131 bpm, G minor"
    assert split["text"][2] == f"{rows[2]['bpm']} bpm, {rows[2]['key']}"  # no caption at all: the estimates alone
    without = prepare(tmp_path, tiny_model_dir, model, folder, cache, "--instance_prompt", "x")
    assert without["text"] == ["x, lofi hip hop, dusty drums", "x, techno, 131 bpm, G minor", "x"]


def test_estimates_are_cached_and_never_re_encode(tmp_path, tiny_model_dir, model, truth_corpus, cache, monkeypatch):
    folder, _ = truth_corpus
    first = prepare(tmp_path, tiny_model_dir, model, folder, cache, "--add_metadata", "true", "--instance_prompt", "a")
    codes_dirs = sorted(p.name for p in cache.glob("codes-*"))

    def boom(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(captioning, "measure", boom)
    monkeypatch.setattr("musicgen_lora.data.encode_clip", boom)
    again = prepare(tmp_path, tiny_model_dir, model, folder, cache, "--add_metadata", "true", "--instance_prompt", "b")
    assert [t[1:] for t in again["text"]] == [t[1:] for t in first["text"]]  # only the trigger word changed
    assert sorted(p.name for p in cache.glob("codes-*")) == codes_dirs


def test_unmeasurable_track_without_caption_still_needs_one(tmp_path, tiny_model_dir, model, cache):
    import numpy as np
    import soundfile as sf

    folder = tmp_path / "silent"
    folder.mkdir()
    sf.write(folder / "quiet.wav", np.zeros(32000 * 2, np.float32), 32000)
    assert captioning.measure(np.zeros((1, 32000 * 2), np.float32), 32000) == {"bpm": None, "key": None}
    with pytest.raises(UserError, match="1 clip.* have no caption"):
        prepare(tmp_path, tiny_model_dir, model, folder, cache, "--add_metadata", "true")
