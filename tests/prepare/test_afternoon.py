"""Preparation defects of the new user's afternoon (2026-12-07) that end in a warning rather than an error: paths in
captions.jsonl, links, files the metadata does not list, doubled trigger words, hidden characters, captions longer
than the text encoder reads, the listing read once; and what a failed preparation or run leaves behind."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from pathlib import Path

import datasets
import pytest

from finetune_musicgen import main as train_main
from musicgen_lora.config.parsing import parse_config
from musicgen_lora.errors import UserError
from musicgen_lora.models.loading import load_model_and_processor
from musicgen_lora.prepare import sources
from musicgen_lora.prepare.captions import caption_of, fit_text_encoder, track_fields
from musicgen_lora.prepare.cli import main as prepare_main
from musicgen_lora.prepare.pipeline import load_or_prepare
from musicgen_lora.prepare.report import ScreenReport, files_report
from musicgen_lora.prepare.screening import screen_split
from musicgen_lora.prepare.sources import list_source

from ..conftest import base_argv, write_tone


def _args(tmp_path: Path, folder: Path, *extra: str):
    return parse_config(base_argv(tmp_path, folder, tmp_path / "out", tmp_path / "cache") + list(extra)).data


def test_links_are_followed_once_and_a_broken_one_is_reported(tmp_path, caplog):
    outside = tmp_path / "outside"
    write_tone(outside / "far.wav", 1.0)
    folder = tmp_path / "songs"
    write_tone(folder / "clip.wav", 1.0)
    (folder / "outside").symlink_to(outside, target_is_directory=True)  # a linked subfolder: scanned
    (folder / "loop").symlink_to(folder, target_is_directory=True)  # a link back up: scanned once
    (folder / "dup_link.wav").symlink_to(folder / "clip.wav")  # the same audio under another name: left out
    (folder / "gone.wav").symlink_to(tmp_path / "nowhere.wav")  # broken: listed, so screening reports it
    listing = list_source(_args(tmp_path, folder), "train")
    names = [os.path.relpath(p, folder) for p in listing.tracks["audio"]]
    assert names == ["clip.wav", "gone.wav", "outside/far.wav"]
    assert listing.duplicates == (
        {"path": str(folder / "dup_link.wav"), "reason": f"duplicate: a link to {folder}/clip.wav"},
    )
    assert "dup_link.wav' is a link to" in caplog.text
    kept, screened = screen_split(listing.tracks, str(folder), "train", tmp_path / "cache", False)
    assert len(kept) == 2 and screened.skipped == [
        {"path": str(folder / "gone.wav"), "reason": "missing: file not found"}
    ]


def test_a_link_in_metadata_to_a_listed_file_is_the_same_track(tmp_path):
    folder = tmp_path / "songs"
    write_tone(folder / "clip.wav", 1.0)
    (folder / "dup_link.wav").symlink_to(folder / "clip.wav")
    rows = [{"file_name": "clip.wav", "text": "x, c 000"}, {"file_name": "dup_link.wav", "text": "x"}]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(UserError, match="lists 'dup_link.wav' twice .* with different captions"):
        list_source(_args(tmp_path, folder), "train")


def test_audio_files_the_metadata_does_not_list_are_named_and_counted(tmp_path, caplog):
    folder = tmp_path / "songs"
    for name in ("a.wav", "b.wav", "c.wav", "sub/d.wav"):
        write_tone(folder / name, 1.0)
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "a.wav", "text": "x"}) + "\n")
    listing = list_source(_args(tmp_path, folder), "train")
    assert len(listing.tracks) == 1 and listing.not_listed == ("b.wav", "c.wav", "sub/d.wav")
    assert "3 audio file(s) in" in caplog.text and "not listed in metadata.jsonl" in caplog.text
    report = files_report(ScreenReport(found=1, read=1, not_listed=listing.not_listed), [])
    assert report["not_listed"] == 3 and report["not_listed_files"] == ["b.wav", "c.wav", "sub/d.wav"]


def test_a_reviewed_caption_copied_back_does_not_get_the_trigger_word_again():
    fields = track_fields("sks, orig 1, 130 bpm, E minor", "sks", {"metadata": {"bpm": 130, "key": "E minor"}})
    assert fields["prompt"] == "" and fields["bpm"] == "" and fields["key"] == ""
    assert track_fields("orig 1", "sks", {})["prompt"] == "sks"


def test_hidden_characters_are_left_out_of_captions_with_a_warning(caplog):
    assert caption_of("lofi\x00 piano\x07\u200b", "metadata.jsonl line 3") == "lofi piano"
    assert "metadata.jsonl line 3: the caption holds control or invisible characters (U+0000, U+0007, U+200B)" in (
        caplog.text
    )
    assert caption_of("\u200b\u200c\ufeff ", "x") is None  # nothing visible: no caption
    assert caption_of("caf\u00e9 \u266a", "x") == "caf\u00e9 \u266a"


def test_captions_longer_than_the_text_encoder_reads_are_cut_with_a_warning(tiny_model_dir, caplog):
    model_args = parse_config(["--model_name_or_path", str(tiny_model_dir), "--dataset_name", "d", "--output_dir", "o"])
    _, processor = load_model_and_processor(model_args.model)
    tokenizer = processor.tokenizer
    huge = "guitar " * 150_000
    fitted = fit_text_encoder(["lofi piano", huge], ["a.wav", "clip_000.wav"], tokenizer)
    assert fitted[0] == "lofi piano" and huge.startswith(fitted[1]) and len(fitted[1]) < 10_000
    limit = tokenizer.model_max_length if tokenizer.model_max_length <= 100_000 else 512
    assert len(tokenizer(fitted[1])["input_ids"]) <= limit
    assert "The caption of 'clip_000.wav' (1050000 characters) is longer than the" in caplog.text


def test_the_listing_is_read_once_per_training_start(tiny_model_dir, tmp_path, caplog, monkeypatch):
    folder = tmp_path / "songs"
    write_tone(folder / "a.wav", 1.5, 220.0)
    write_tone(folder / "b.wav", 1.5, 330.0)
    rows = [{"file_name": "a.wav", "text": "low"}, {"file_name": "b.wav", "text": "high"}] * 2
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    parsed = parse_config(base_argv(tiny_model_dir, folder, tmp_path / "out", tmp_path / "cache"))
    model, processor = load_model_and_processor(parsed.model)
    reads: list[int] = []
    original = sources._read_metadata
    monkeypatch.setattr(sources, "_read_metadata", lambda f: (reads.append(1), original(f))[1])
    caplog.set_level(logging.WARNING)
    train, _ = load_or_prepare(parsed, model, processor)
    assert len(train) == 2 and len(reads) == 1
    assert caplog.text.count("lists 'a.wav' twice (lines 1 and 3): the repeat is ignored") == 1


@pytest.mark.slow
def test_captions_jsonl_names_files_beside_the_folder_as_its_metadata_would(tiny_model_dir, tmp_path, caplog):
    folder, other = tmp_path / "DATA", tmp_path / "other"
    write_tone(folder / "a.wav", 1.5, 220.0)
    write_tone(other / "clip_010.wav", 1.5, 330.0)
    rows = [{"file_name": "a.wav", "text": "low"}, {"file_name": "../other/clip_010.wav", "text": "high"}]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = base_argv(tiny_model_dir, folder, tmp_path / "out", tmp_path / "cache") + ["--instance_prompt", "sks"]
    prepare_main(argv)
    captions = tmp_path / "out" / "prepared_data" / "captions.jsonl"
    names = [json.loads(line)["file_name"] for line in captions.read_text().splitlines()]
    assert names == ["a.wav", "../other/clip_010.wav"]
    shutil.copy(captions, folder / "metadata.jsonl")  # the README's review round trip
    report = prepare_main(argv)
    assert report["splits"]["train"]["tracks"] == 2 and "not found" not in caplog.text
    train = datasets.load_from_disk(str(tmp_path / "out" / "prepared_data" / "train"))
    assert sorted(train["text"]) == ["sks, high", "sks, low"]  # taken as written: no second trigger word


def test_a_full_disk_leaves_no_partial_prepared_data(tiny_model_dir, tmp_path, monkeypatch):
    folder = tmp_path / "songs"
    write_tone(folder / "a.wav", 1.5, 220.0)
    argv = base_argv(tiny_model_dir, folder, tmp_path / "out", tmp_path / "cache") + ["--instance_prompt", "x"]
    save = datasets.Dataset.save_to_disk

    def full(dataset, path, *args, **kwargs):
        if "prepared_data" in str(path):
            Path(path).mkdir(parents=True, exist_ok=True)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return save(dataset, path, *args, **kwargs)

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", full)
    with pytest.raises(SystemExit) as stopped:
        prepare_main(argv)
    assert stopped.value.code == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []  # no prepared_data, no staging, no lock


def test_a_run_failing_on_its_config_leaves_no_config_in_a_new_output_dir(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(SystemExit):
        train_main(base_argv(tiny_model_dir, tmp_path / "no-such-data", out, tmp_path / "cache") + ["--max_steps", "1"])
    assert not (out / "finetune_config.json").exists()
