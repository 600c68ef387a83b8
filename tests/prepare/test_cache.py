"""Data sources, captions, decoding of every common format, the encoding cache, and bad data."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

import musicgen_lora.prepare.encoding as encoding
from musicgen_lora.audio.io import load_audio
from musicgen_lora.config.parsing import parse_config
from musicgen_lora.errors import UserError
from musicgen_lora.prepare.cache_keys import module_fingerprint
from musicgen_lora.prepare.encoding import encode_dataset
from musicgen_lora.prepare.sources import load_split

from ..conftest import base_argv, tone
from .conftest import prepared_split


def args_for(tmp_path: Path, model_dir: Path, dataset: Path, *extra: str):
    return parse_config(base_argv(model_dir, dataset, tmp_path / "out", tmp_path / "cache") + list(extra)).data


@pytest.fixture(scope="module")
def codec_fingerprint(model):
    return module_fingerprint(model.audio_encoder)


def test_metadata_jsonl_folder(tmp_path, tiny_model_dir, corpus_dir):
    split = load_split(args_for(tmp_path, tiny_model_dir, corpus_dir), "train")
    rows = [json.loads(line) for line in (corpus_dir / "metadata.jsonl").read_text().splitlines()]
    assert split["text"] == [row["text"] for row in rows]
    assert [Path(p).name for p in split["audio"]] == [row["file_name"] for row in rows]


def test_metadata_csv_folder_with_custom_caption_column(tmp_path, tiny_model_dir):
    folder = tmp_path / "songs"
    folder.mkdir()
    sf.write(folder / "a.flac", tone(1.0, rate=44100, tremolo_hz=2), 44100)
    with (folder / "metadata.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["file_name", "description"], ["a.flac", "slow ambient pad"]])
    split = load_split(args_for(tmp_path, tiny_model_dir, folder, "--text_column_name", "description"), "train")
    assert split["text"] == ["slow ambient pad"]


def test_audio_and_txt_pairs_in_every_common_format(tmp_path, tiny_model_dir):
    folder = tmp_path / "pairs"
    folder.mkdir()
    formats = {"a.wav": 48000, "b.flac": 44100, "c.ogg": 22050, "d.mp3": 44100}
    for index, (name, rate) in enumerate(formats.items()):
        sf.write(
            folder / name, tone(1.5, rate=rate, tremolo_hz=2, channels=2, channel_gain=0.3), rate
        )  # stereo at various rates
        (folder / name).with_suffix(".txt").write_text(f"caption {index}\n")
    split = load_split(args_for(tmp_path, tiny_model_dir, folder), "train")
    assert split["text"] == [f"caption {i}" for i in range(4)]
    for path in split["audio"]:
        audio = load_audio(path, 32000, 1)  # mono at the model's rate
        assert audio.shape[0] == 1
        # mp3 encoders add a little padding; everything else is exact after resampling
        assert abs(audio.shape[1] - 1.5 * 32000) <= (2500 if path.endswith(".mp3") else 2)
        assert 0.05 < np.abs(audio).max() < 1.0


def test_instance_prompt_prefixes_or_replaces_captions(tmp_path, tiny_model_dir, model, codec_fingerprint):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("a.wav", "b.wav"):
        sf.write(folder / name, tone(1.2, tremolo_hz=2), 32000)
    (folder / "a.txt").write_text("jazz piano")
    args = args_for(tmp_path, tiny_model_dir, folder, "--instance_prompt", "sks style")
    split = prepared_split(args, "train", model, codec_fingerprint, is_eval=False)
    assert split["text"] == ["sks style, jazz piano", "sks style"]
    with pytest.raises(UserError, match=r"1 clip\(s\) have no caption .*b.wav.*instance_prompt"):
        prepared_split(args_for(tmp_path, tiny_model_dir, folder), "train", model, codec_fingerprint, is_eval=False)


def test_second_run_reuses_the_codes_and_a_changed_file_is_encoded_again(
    tmp_path, tiny_model_dir, corpus_dir, model, codec_fingerprint, monkeypatch
):
    args = args_for(tmp_path, tiny_model_dir, corpus_dir)
    first = prepared_split(args, "train", model, codec_fingerprint, is_eval=False)
    assert len(first) == 8 and len(first[0]["codes"]) == 4 and len(first[0]["codes"][0]) == 150  # 3 s at 50 Hz

    def must_not_encode(*_args, **_kwargs):
        raise AssertionError("encoded again although nothing changed")

    monkeypatch.setattr(encoding, "encode_clip", must_not_encode)
    second = prepared_split(args, "train", model, codec_fingerprint, is_eval=False)
    assert second["codes"] == first["codes"] and second["text"] == first["text"]

    # captions and duration limits are applied after the cache: changing them does not re-encode either
    longer = args_for(
        tmp_path, tiny_model_dir, corpus_dir, "--instance_prompt", "demo", "--min_duration_in_seconds", "2"
    )
    assert prepared_split(longer, "train", model, codec_fingerprint, is_eval=False)["text"][0].startswith("demo, ")

    monkeypatch.undo()
    calls = []
    original = encoding.encode_clip
    monkeypatch.setattr(encoding, "encode_clip", lambda *a, **k: calls.append(1) or original(*a, **k))
    changed = tmp_path / "copy"
    changed.mkdir()
    for item in corpus_dir.iterdir():
        (changed / item.name).write_bytes(item.read_bytes())
    copy_args = args_for(tmp_path, tiny_model_dir, changed)
    prepared_split(copy_args, "train", model, codec_fingerprint, is_eval=False)
    assert len(calls) == 8
    stat = os.stat(changed / "clip_000.wav")
    os.utime(changed / "clip_000.wav", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the file was edited
    prepared_split(copy_args, "train", model, codec_fingerprint, is_eval=False)
    assert len(calls) == 16


def test_codes_are_varied_and_match_the_audio_length(tmp_path, tiny_model_dir, corpus_dir, model, codec_fingerprint):
    split = prepared_split(args_for(tmp_path, tiny_model_dir, corpus_dir), "train", model, codec_fingerprint, False)
    codes = np.array(split[0]["codes"])  # (K, frames)
    assert codes.shape == (4, 150)
    assert all(len(np.unique(row)) >= 8 for row in codes)  # a real codec, not all zeros


def test_short_clips_are_left_out_and_eval_uses_fixed_windows(tmp_path, tiny_model_dir, model, codec_fingerprint):
    folder = tmp_path / "splits"
    for split, seconds in (("train", [0.5, 2.0]), ("validation", [5.0])):
        (folder / split).mkdir(parents=True)
        for index, length in enumerate(seconds):
            sf.write(folder / split / f"{index}.wav", tone(length, 200 + 50 * index, tremolo_hz=2), 32000)
            (folder / split / f"{index}.txt").write_text(f"tone {index}")
    args = args_for(
        tmp_path,
        tiny_model_dir,
        folder,
        "--eval_split_name",
        "validation",
        "--max_duration_in_seconds",
        "2",
        "--min_duration_in_seconds",
        "1",
    )
    train = prepared_split(args, "train", model, codec_fingerprint, is_eval=False)
    assert train["text"] == ["tone 1"]  # the 0.5 s clip is shorter than the minimum
    evaluation = prepared_split(args, "validation", model, codec_fingerprint, is_eval=True)
    # 5 s in windows of 2 s: 2 + 2 + 1 s, the last one kept because it reaches the 1 s minimum
    assert [len(codes[0]) for codes in evaluation["codes"]] == [100, 100, 50]


def test_hub_dataset_path_decodes_audio_bytes_without_ffmpeg(
    tmp_path, tiny_model_dir, model, codec_fingerprint, monkeypatch
):
    wav = tmp_path / "x.wav"
    sf.write(wav, tone(1.5, rate=16000, tremolo_hz=2), 16000)
    hub = datasets.Dataset.from_dict(
        {"song": [{"path": "x.wav", "bytes": wav.read_bytes()}], "caption": ["lofi"], "genre": ["lofi"]}
    ).cast_column("song", datasets.Audio())
    seen = {}

    def fake_load_dataset(name, config, split, cache_dir=None):
        seen.update(name=name, config=config, split=split)
        return hub

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    args = args_for(
        tmp_path,
        tiny_model_dir,
        Path("someone/tiny-songs"),
        "--audio_column_name",
        "song",
        "--text_column_name",
        "caption",
        "--dataset_config_name",
        "clean",
    )
    split = prepared_split(args, "train", model, codec_fingerprint, is_eval=False)
    assert seen == {"name": "someone/tiny-songs", "config": "clean", "split": "train"}
    assert split["text"] == ["lofi"] and len(split[0]["codes"][0]) == 75
    bad = args_for(tmp_path, tiny_model_dir, Path("someone/tiny-songs"), "--audio_column_name", "wave")
    with pytest.raises(UserError, match="audio column 'wave' not found.*columns are: song, caption, genre"):
        load_split(bad, "train")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: None, "holds no audio files"),
        (lambda d: (d / "metadata.jsonl").write_text('{"file_name": "a.wav"}\n{oops\n'), "line 2 is not valid JSON"),
        (lambda d: (d / "metadata.jsonl").write_text('{"path": "a.wav", "text": "x"}\n'), "no 'file_name' or 'audio'"),
        (
            lambda d: (d / "metadata.jsonl").write_text('{"file_name": "a.wav", "caption": "x"}\n'),
            "caption column 'text' not found.*columns: caption, file_name",
        ),
    ],
)
def test_bad_folders_get_clear_errors(tmp_path, tiny_model_dir, make, expected):
    folder = tmp_path / "bad"
    folder.mkdir()
    make(folder)
    with pytest.raises(UserError, match=expected):
        load_split(args_for(tmp_path, tiny_model_dir, folder), "train")


def test_missing_dataset_path_and_unreachable_hub(tmp_path, tiny_model_dir):
    with pytest.raises(UserError, match="dataset path .* not found"):
        load_split(args_for(tmp_path, tiny_model_dir, tmp_path / "nowhere"), "train")
    with pytest.raises(UserError, match="cannot load dataset 'nobody/nothing'"):
        load_split(args_for(tmp_path, tiny_model_dir, Path("nobody/nothing")), "train")


@pytest.mark.parametrize(
    ("write", "expected"),
    [
        (lambda p: p.write_bytes(b"not audio at all"), "cannot read audio file .*a.wav"),
        (lambda p: sf.write(p, np.zeros((0, 1), np.float32), 32000), "is empty"),
        (lambda p: sf.write(p, np.full((3200, 1), np.nan, np.float32), 32000, subtype="FLOAT"), "NaN"),
    ],
)
def test_unreadable_audio_names_the_file(tmp_path, tiny_model_dir, model, codec_fingerprint, write, expected):
    folder = tmp_path / "broken"
    folder.mkdir()
    write(folder / "a.wav")
    (folder / "a.txt").write_text("x")
    with pytest.raises(UserError, match=expected):
        prepared_split(args_for(tmp_path, tiny_model_dir, folder), "train", model, codec_fingerprint, is_eval=False)


def test_interrupted_encoding_leaves_no_cache_entry(tmp_path, tiny_model_dir, corpus_dir, model, monkeypatch):
    calls = []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    original = encoding.encode_clip
    monkeypatch.setattr(encoding, "encode_clip", crash_on_third)
    raw = load_split(args_for(tmp_path, tiny_model_dir, corpus_dir), "train")
    with pytest.raises(KeyboardInterrupt):
        encode_dataset(raw, model, tmp_path / "codes")
    assert len(calls) == 3
    assert not (tmp_path / "codes").exists() or not list((tmp_path / "codes").glob("codes-*"))
