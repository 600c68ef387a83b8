"""The caption review loop: prepare writes captions.jsonl (final captions, estimates and confidences), leaves
low-confidence fields out and lists them, every example keeps its source file, and a corrected captions.jsonl copied
in as metadata.jsonl is trained on as written without decoding or encoding anything again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

from musicgen_lora.prepare.cli import main as prepare_main
from musicgen_lora.prepare.report import summary

from ..conftest import base_argv


@pytest.fixture(scope="module")
def review_run(tmp_path_factory) -> dict:
    """Three synthetic songs (one in a subfolder) and 4 s of white noise, prepared with add_metadata."""
    from musicgen_lora.demo.synth import synthesize_corpus

    root = tmp_path_factory.mktemp("review")
    corpus = root / "corpus"
    rows = synthesize_corpus(corpus, clips=3, seconds=6.0, seed=11)
    folder = root / "songs"
    (folder / "sub").mkdir(parents=True)
    for index, row in enumerate(rows):
        shutil.copy(corpus / row["file_name"], folder / ("sub" if index == 2 else "") / row["file_name"])
    noise = np.random.default_rng(0).normal(0, 0.1, 4 * 32000).astype(np.float32)
    sf.write(folder / "noise.wav", noise, 32000)
    return {"root": root, "folder": folder, "rows": rows}


def _argv(tiny_model_dir, run: dict, out: str) -> list[str]:
    root = run["root"]
    return base_argv(tiny_model_dir, run["folder"], root / out, root / "cache") + [
        "--add_metadata",
        "true",
        "--instance_prompt",
        "sks",
        "--max_duration_in_seconds",
        "2",
        "--chunk_long_tracks",
        "true",
        "--tail_policy",
        "drop",
    ]


@pytest.fixture(scope="module")
def prepared(review_run, tiny_model_dir) -> dict:
    report = prepare_main(_argv(tiny_model_dir, review_run, "out"))
    out = review_run["root"] / "out" / "prepared_data"
    lines = (out / "captions.jsonl").read_text(encoding="utf-8").splitlines()
    return {"report": report, "out": out, "rows": {r["file_name"]: r for r in map(json.loads, lines)}}


def test_captions_jsonl_has_every_track_its_caption_and_confidences(prepared, review_run):
    rows = prepared["rows"]
    names = [r["file_name"] for r in review_run["rows"]]
    assert sorted(rows) == sorted([names[0], names[1], f"sub/{names[2]}", "noise.wav"])  # relative to the folder
    train = datasets.load_from_disk(str(prepared["out"] / "train"))
    by_source = dict(zip(train["source"], train["text"], strict=True))  # every chunk names its file
    for name, row in rows.items():
        assert row["text"] == by_source[name] and row["caption_is_final"] is True and row["split"] == "train"
        for field in ("bpm", "key"):
            assert 0.0 <= row[f"{field}_confidence"] <= 1.0, row
    song = rows[names[0]]
    assert song["text"] == f"sks, {song['bpm']} bpm, {song['key']}"  # confident estimates are in the caption
    assert "left_out_low_confidence" not in song


def test_low_confidence_fields_are_left_out_counted_and_listed(prepared):
    noise = prepared["rows"]["noise.wav"]
    # white noise has no tempo or key: the estimates exist, but below the thresholds, so no word is trained
    assert noise["text"] == "sks" and noise["left_out_low_confidence"] == ["bpm", "key"]
    left = prepared["report"]["splits"]["train"]["captions"]["left_out_low_confidence"]
    assert left["bpm"] == 1 and left["key"] == 1
    assert left["tracks"] == [{"source": "noise.wav", "bpm": noise["bpm_confidence"], "key": noise["key_confidence"]}]
    text = summary(prepared["report"])
    assert "low confidence, left out of the caption: tempo 1, key 1: noise.wav (bpm 0." in text
    assert "captions.jsonl" in text


def test_corrected_captions_win_without_decoding_or_encoding_again(prepared, review_run, tiny_model_dir, monkeypatch):
    rows = prepared["rows"]
    name = review_run["rows"][0]["file_name"]
    corrected = {**rows[name], "text": "sks, dusty lofi, 90 bpm, A minor", "bpm": 90, "key": "A minor"}
    lines = [corrected if row["file_name"] == name else row for row in rows.values()]
    metadata = review_run["folder"] / "metadata.jsonl"
    metadata.write_text("".join(json.dumps(row) + "\n" for row in lines), encoding="utf-8")

    def boom(*args, **kwargs):
        raise AssertionError("decoded or encoded again")

    for target in (
        "musicgen_lora.prepare.encoding.encode_clip",
        "musicgen_lora.prepare.encoding.decode_audio",
        "musicgen_lora.prepare.measurements.decode_audio",
        "musicgen_lora.prepare.screening.probe_audio",
    ):
        monkeypatch.setattr(target, boom)
    try:
        report = prepare_main(_argv(tiny_model_dir, review_run, "out"))
    finally:
        metadata.unlink()  # the folder stays as the other tests expect it
    train = datasets.load_from_disk(str(prepared["out"] / "train"))
    texts = dict(zip(train["source"], train["text"], strict=True))
    assert texts[name] == "sks, dusty lofi, 90 bpm, A minor"  # as written: no template, no second "sks"
    assert all(texts[row["file_name"]] == row["text"] for row in lines)
    assert report["splits"]["train"]["captions"]["tracks_with_final_caption"] == 4
    again = json.loads(Path(prepared["out"] / "captions.jsonl").read_text().splitlines()[0])
    assert again["caption_is_final"] is True and "bpm_confidence" not in again  # nothing was measured


def test_final_flag_must_be_true_or_false(review_run, tiny_model_dir, tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    shutil.copy(review_run["folder"] / "noise.wav", folder / "noise.wav")
    (folder / "metadata.jsonl").write_text('{"file_name": "noise.wav", "text": "x", "caption_is_final": "yes"}\n')
    argv = base_argv(tiny_model_dir, folder, tmp_path / "out", tmp_path / "cache")
    with pytest.raises(SystemExit):
        prepare_main(argv)
    assert "'caption_is_final' is \"yes\"; write true or false" in capsys.readouterr().err
