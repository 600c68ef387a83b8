"""Single-file sources: a CSV of paths and captions, audiocraft jsonl manifests with sidecar .json, one long file."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from transformers import AutoModelForTextToWaveform

from musicgen_lora.config.parsing import parse_config
from musicgen_lora.errors import UserError
from musicgen_lora.prepare.cache_keys import module_fingerprint
from musicgen_lora.prepare.sources import load_split

from ..conftest import RATE, base_argv, write_tone
from .conftest import prepared_split


def args_for(tmp_path: Path, model_dir: Path, dataset: Path, *extra: str):
    return parse_config(base_argv(model_dir, dataset, tmp_path / "out", tmp_path / "cache") + list(extra)).data


def test_csv_of_paths_and_captions(tmp_path, tiny_model_dir):
    write_tone(tmp_path / "audio" / "a.wav", 1.0)
    write_tone(tmp_path / "elsewhere" / "b.flac", 1.0)
    table = tmp_path / "lists" / "songs.csv"
    table.parent.mkdir()
    table.write_text(
        f'path,caption,melody\n../audio/a.wav,"lofi, piano",../audio/a.wav\n{tmp_path / "elsewhere" / "b.flac"},jazz,'
        "../audio/a.wav\n"
    )
    split = load_split(args_for(tmp_path, tiny_model_dir, table), "train")
    assert split["text"] == ["lofi, piano", "jazz"]  # 'caption' is accepted when there is no 'text' column
    assert [Path(p).resolve() for p in split["audio"]] == [
        tmp_path / "audio" / "a.wav",
        tmp_path / "elsewhere" / "b.flac",
    ]
    melody = load_split(args_for(tmp_path, tiny_model_dir, table, "--conditional_audio_column_name", "melody"), "train")
    assert Path(melody["conditional_audio"][1]).resolve() == tmp_path / "audio" / "a.wav"
    tsv = tmp_path / "songs.tsv"
    tsv.write_text("file_name\tdescr\naudio/a.wav\tslow\n")
    assert load_split(args_for(tmp_path, tiny_model_dir, tsv, "--text_column_name", "descr"), "train")["text"] == [
        "slow"
    ]


def test_audiocraft_manifest_with_sidecar_metadata(tmp_path, tiny_model_dir):
    songs = tmp_path / "songs"
    write_tone(songs / "described.wav", 1.0)
    (songs / "described.json").write_text(json.dumps({"description": "dreamy synthwave", "genre": "synthwave"}))
    write_tone(songs / "tagged.wav", 1.0)
    (songs / "tagged.json").write_text(
        json.dumps({"genre": "rock", "moods": ["energetic", "dark"], "bpm": 128, "key": "E minor", "title": "x"})
    )
    write_tone(songs / "bare.wav", 1.0)
    write_tone(songs / "own.wav", 1.0)
    (songs / "own.json").write_text(json.dumps({"description": "ignored"}))
    lines = [
        {"path": str(songs / "described.wav"), "duration": 1.0, "sample_rate": RATE},
        {"path": "songs/tagged.wav", "duration": 1.0},
        {"path": "songs/bare.wav"},
        {"path": "songs/own.wav", "text": "from the manifest"},
    ]
    manifest = tmp_path / "data.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    split = load_split(args_for(tmp_path, tiny_model_dir, manifest, "--instance_prompt", "sks"), "train")
    assert split["text"] == ["dreamy synthwave", "rock, energetic, dark, 128 bpm, E minor", None, "from the manifest"]
    assert [Path(p).name for p in split["audio"]] == ["described.wav", "tagged.wav", "bare.wav", "own.wav"]
    packed = tmp_path / "data.jsonl.gz"
    with gzip.open(packed, "wt", encoding="utf-8") as handle:
        handle.write(manifest.read_text())
    assert load_split(args_for(tmp_path, tiny_model_dir, packed), "train")["text"] == split["text"]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("x.csv", "", "has no rows"),
        ("x.csv", "song,text\na.wav,x\n", "has no path column .*columns: song, text"),
        ("x.csv", "path,genre\na.wav,x\n", "caption column 'text' not found"),
        ("x.jsonl", '{"path": "a.wav"}\n{"file": "b.wav"}\n', "line 2 has no 'path' field"),
        ("x.jsonl", '{"path": "a.wav"}\n{oops\n', "line 2 is not valid JSON"),
        ("x.jsonl", "\n", "has no entries"),
        ("x.parquet", "PAR1", "is a file of unknown kind"),
    ],
)
def test_bad_file_sources_get_clear_errors(tmp_path, tiny_model_dir, name, content, expected):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(UserError, match=expected):
        load_split(args_for(tmp_path, tiny_model_dir, path), "train")


def test_a_file_source_has_no_named_eval_split(tmp_path, tiny_model_dir):
    table = tmp_path / "x.csv"
    table.write_text("path,text\na.wav,x\n")
    args = args_for(tmp_path, tiny_model_dir, table, "--eval_split_name", "validation")
    with pytest.raises(UserError, match="is a single file .*set eval_split_percentage"):
        load_split(args, "validation")


def test_a_single_long_file_is_chunked(tmp_path, tiny_model_dir):
    track = write_tone(tmp_path / "live" / "concert.ogg", 7.0)
    (tmp_path / "live" / "concert.txt").write_text("live jazz")
    model = AutoModelForTextToWaveform.from_pretrained(tiny_model_dir)
    fingerprint = module_fingerprint(model.audio_encoder)
    args = args_for(
        tmp_path,
        tiny_model_dir,
        track,
        "--chunk_long_tracks",
        "true",
        "--max_duration_in_seconds",
        "3",
        "--instance_prompt",
        "sks",
    )
    chunks = prepared_split(args, "train", model, fingerprint, False)
    assert [len(c[0]) for c in chunks["codes"]] == [150, 150, 150]  # 0-3, 3-6, 4-7 s (merge)
    assert chunks["offset_seconds"] == [0.0, 3.0, 4.0]
    assert set(chunks["text"]) == {"sks, live jazz"} and set(chunks["source"]) == {track.name}  # beside the file
    whole = prepared_split(
        args_for(tmp_path, tiny_model_dir, track, "--instance_prompt", "sks"), "train", model, fingerprint, False
    )
    assert [len(c[0]) for c in whole["codes"]] == [350]  # without chunking: one track, random windows in training


def test_a_column_option_is_never_silently_ignored(tmp_path, tiny_model_dir):
    folder = tmp_path / "songs"
    write_tone(folder / "a.wav", 1.0)
    write_tone(folder / "b.wav", 1.0)
    (folder / "metadata.jsonl").write_text(
        '{"file_name": "a.wav", "song": "b.wav", "text": "x", "mood": "calm"}\n'
        '{"file_name": "b.wav", "song": "a.wav", "text": "y", "mood": "dark"}\n'
    )
    chosen = load_split(args_for(tmp_path, tiny_model_dir, folder, "--audio_column_name", "song"), "train")
    assert [Path(p).name for p in chosen["audio"]] == ["b.wav", "a.wav"]  # the user's column wins over file_name
    moods = load_split(args_for(tmp_path, tiny_model_dir, folder, "--text_column_name", "mood"), "train")
    assert moods["text"] == ["calm", "dark"]
    table = tmp_path / "songs.csv"
    table.write_text("path,caption\nsongs/a.wav,lofi\n")
    bare = tmp_path / "bare"
    write_tone(bare / "c.wav", 1.0)
    refused = [
        (folder, "--audio_column_name", "track", r"audio_column_name 'track' is not a column of .*metadata.jsonl"),
        (folder, "--text_column_name", "prompt", r"text_column_name 'prompt' is not a column of .*metadata.jsonl"),
        (table, "--text_column_name", "prompt", r"text_column_name 'prompt' is not a column of .*songs.csv"),
        (table, "--audio_column_name", "track", r"audio_column_name 'track' is not a column of .*songs.csv"),
        (bare, "--text_column_name", "prompt", r"text_column_name 'prompt' names a column, but .*bare.* \.txt files"),
        (folder / "a.wav", "--audio_column_name", "x", r"audio_column_name 'x' names a column, but the single audio"),
    ]
    for dataset, option, value, message in refused:
        with pytest.raises(UserError, match=message):
            load_split(args_for(tmp_path, tiny_model_dir, dataset, option, value), "train")
