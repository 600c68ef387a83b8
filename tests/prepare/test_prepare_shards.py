"""Preparation in resumable shards, worker processes, reuse of prepared_data by training, and streaming."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest

from musicgen_lora.config.parsing import parse_config
from musicgen_lora.errors import UserError
from musicgen_lora.models.loading import load_model_and_processor
from musicgen_lora.prepare import cache_keys, encoding, pipeline
from musicgen_lora.prepare.cli import main as prepare_main
from musicgen_lora.prepare.pipeline import load_or_prepare
from musicgen_lora.prepare.reuse import FINGERPRINT_NAME, PREPARED_DIR_NAME
from musicgen_lora.train.output_dir import check_output_dir

from ..conftest import base_argv


def prepared_train(output_dir: Path) -> datasets.Dataset:
    return datasets.load_from_disk(str(output_dir / PREPARED_DIR_NAME / "train"))


def count_encoder_calls(monkeypatch, fail_at: int | None = None) -> list[int]:
    calls: list[int] = []
    original = encoding.encode_clip

    def counting(*args, **kwargs):
        calls.append(1)
        if len(calls) == fail_at:
            raise RuntimeError("power cut")
        return original(*args, **kwargs)

    monkeypatch.setattr(encoding, "encode_clip", counting)
    return calls


def test_interrupted_prepare_resumes_its_shards_and_workers_give_the_same_data(
    tiny_model_dir, corpus_dir, tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(encoding, "CLIPS_PER_SHARD", 3)  # 8 clips: shards of 3, 3 and 2
    argv = base_argv(tiny_model_dir, corpus_dir, tmp_path / "out", tmp_path / "cache") + [
        "--max_duration_in_seconds",
        "2",
    ]
    calls = count_encoder_calls(monkeypatch, fail_at=5)  # dies in the second shard
    with pytest.raises(RuntimeError, match="power cut"):
        prepare_main(argv)
    assert len(list((tmp_path / "cache").glob("codes-*"))) == 1  # the first shard landed, nothing half-written
    assert not (tmp_path / "out" / PREPARED_DIR_NAME / FINGERPRINT_NAME).exists()
    calls = count_encoder_calls(monkeypatch)
    prepare_main(argv)
    assert len(calls) == 8 - 3  # the finished shard is not encoded again
    resumed = prepared_train(tmp_path / "out")

    monkeypatch.undo()  # worker processes encode with the real encoder anyway
    monkeypatch.setattr(encoding, "CLIPS_PER_SHARD", 3)
    in_one_go = base_argv(tiny_model_dir, corpus_dir, tmp_path / "once", tmp_path / "cache-once")
    prepare_main(in_one_go + ["--max_duration_in_seconds", "2"])
    assert prepared_train(tmp_path / "once")["codes"] == resumed["codes"]  # resuming changes no code
    caplog.set_level(logging.INFO, logger="musicgen_lora")
    reference = base_argv(tiny_model_dir, corpus_dir, tmp_path / "ref", tmp_path / "cache-ref")
    prepare_main(reference + ["--max_duration_in_seconds", "2", "--preprocessing_num_workers", "2"])
    assert "Encoding with 2 worker processes" in caplog.text
    assert len(list((tmp_path / "cache-ref").glob("codes-*"))) == 3
    uninterrupted = prepared_train(tmp_path / "ref")
    assert len(resumed) == len(uninterrupted) == 8 and resumed["text"] == uninterrupted["text"]
    # workers run with a share of the threads: floating-point rounding may tip a rare frame to a neighbouring
    # codebook entry (measured: at most 4 codes in 1,500), never more
    pairs = [(np.asarray(a), np.asarray(b)) for a, b in zip(resumed["codes"], uninterrupted["codes"], strict=False)]
    assert all(a.shape == b.shape for a, b in pairs)
    assert sum(int((a != b).sum()) for a, b in pairs) <= 0.01 * sum(a.size for a, _ in pairs)


def test_training_reuses_prepared_data_until_an_option_or_a_caption_changes(
    tiny_model_dir, corpus_dir, tmp_path, monkeypatch, caplog
):
    songs = tmp_path / "songs"
    shutil.copytree(corpus_dir, songs)
    out = tmp_path / "out"
    argv = base_argv(tiny_model_dir, songs, out, tmp_path / "cache") + ["--max_train_samples", "3"]
    prepare_main(argv)
    check_output_dir(str(out), None, overwrite=False, resuming=False)  # prepared_data alone is not a previous run
    parsed = parse_config(argv)
    model, processor = load_model_and_processor(parsed.model)
    caplog.set_level(logging.INFO, logger="musicgen_lora")

    def prepare_split_spy(*args, **kwargs):
        prepared.append(1)
        return original(*args, **kwargs)

    prepared: list[int] = []
    original = pipeline.prepare_split
    monkeypatch.setattr(pipeline, "prepare_split", prepare_split_spy)
    train, evaluation = load_or_prepare(parsed, model, processor)
    assert not prepared and evaluation is None and "Using the prepared data" in caplog.text
    assert train["codes"] == prepared_train(out)["codes"] and len(train) == 3

    caplog.clear()
    train, _ = load_or_prepare(parse_config(argv + ["--instance_prompt", "sks"]), model, processor)
    assert prepared == [1] and "instance_prompt changed since it was prepared" in caplog.text
    assert all(text.startswith("sks, ") for text in train["text"]) and prepared_train(out)["text"] == train["text"]

    caplog.clear()
    rows = [json.loads(line) for line in (songs / "metadata.jsonl").read_text().splitlines()]
    rows[0]["text"] = "a new caption"
    (songs / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    train, _ = load_or_prepare(parse_config(argv + ["--instance_prompt", "sks"]), model, processor)
    assert prepared == [1, 1] and "source files or captions changed" in caplog.text
    assert train["text"][0] == "sks, a new caption"

    shutil.rmtree(out / PREPARED_DIR_NAME / "train")
    load_or_prepare(parse_config(argv + ["--instance_prompt", "sks"]), model, processor)
    assert prepared == [1, 1, 1] and "its train split is missing" in caplog.text


def test_streaming_keeps_only_codes_matches_the_folder_and_resumes(tiny_model_dir, corpus_dir, tmp_path, monkeypatch):
    # a local folder in the layout of a Hub dataset (Parquet with audio bytes), read through the same
    # load_dataset(..., streaming=True) call as a Hub id
    rows = [json.loads(line) for line in (corpus_dir / "metadata.jsonl").read_text().splitlines()][:4]
    hub = tmp_path / "hub-layout"
    (hub / "data").mkdir(parents=True)
    datasets.Dataset.from_dict(
        {
            "audio": [
                {"path": row["file_name"], "bytes": (corpus_dir / row["file_name"]).read_bytes()} for row in rows
            ],
            "text": [row["text"] for row in rows],
        }
    ).cast_column("audio", datasets.Audio()).to_parquet(str(hub / "data" / "train-00000-of-00001.parquet"))
    common = ["--max_train_samples", "3", "--max_duration_in_seconds", "2", "--cache_dir", str(tmp_path / "hf-cache")]
    streamed_argv = (
        base_argv(tiny_model_dir, hub, tmp_path / "streamed", tmp_path / "cache") + common + ["--streaming", "true"]
    )
    monkeypatch.setattr(encoding, "CLIPS_PER_SHARD", 2)  # 3 streamed clips: shards of 2 and 1
    prepare_main(streamed_argv)
    prepare_main(base_argv(tiny_model_dir, corpus_dir, tmp_path / "folder", tmp_path / "cache") + common)
    streamed, folder = prepared_train(tmp_path / "streamed"), prepared_train(tmp_path / "folder")
    assert len(streamed) == 3 and streamed["codes"] == folder["codes"] and streamed["text"] == folder["text"]
    assert not list((tmp_path / "hf-cache").rglob("*.arrow"))  # the audio was never stored

    # as if interrupted in the second shard: the stream is read again, only the unfinished shard is encoded
    (tmp_path / "streamed" / "prepared_data" / "fingerprint.json").unlink()  # an interrupted run never writes it
    (manifest,) = (tmp_path / "cache").glob("stream-*.json")
    manifest.unlink()
    (second,) = (tmp_path / "cache").glob("codes-*-00001")
    shutil.rmtree(second)
    calls = count_encoder_calls(monkeypatch)
    prepare_main(streamed_argv)
    assert len(calls) == 1 and prepared_train(tmp_path / "streamed")["codes"] == folder["codes"]

    def no_stream(*args, **kwargs):
        raise AssertionError("streamed again")

    monkeypatch.setattr(encoding, "open_stream", no_stream)  # a finished stream is read from its cached codes
    assert prepare_main(streamed_argv)["splits"]["train"]["examples"] == 3
    with pytest.raises(UserError, match="streaming .* cannot be combined with eval_split_percentage; unset it"):
        parse_config(streamed_argv + ["--eval_split_percentage", "20"])


def test_new_weights_at_the_same_path_or_a_new_push_target_make_prepared_data_stale(
    tiny_model_dir, corpus_dir, tmp_path
):
    from musicgen_lora.models.spec import AudioSpec
    from musicgen_lora.prepare.reuse import prepared_fingerprint, stale_reason

    weights = tmp_path / "clap"
    weights.mkdir()
    (weights / "config.json").write_text("{}")  # checked for at parsing; the weights are never loaded here
    (weights / "model.safetensors").write_bytes(b"old")
    argv = base_argv(tiny_model_dir, corpus_dir, tmp_path / "out", tmp_path / "cache")
    spec = AudioSpec(sampling_rate=32000, channels=1, frame_rate=50.0)

    def fingerprint(extra: list[str]) -> dict:
        return prepared_fingerprint(parse_config(argv + extra), "codec", spec)

    folder = tmp_path / "prepared"
    folder.mkdir()
    (folder / FINGERPRINT_NAME).write_text(json.dumps(fingerprint(["--clap_model_name_or_path", str(weights)])))
    assert stale_reason(folder, fingerprint(["--clap_model_name_or_path", str(weights)])) is None
    (weights / "model.safetensors").write_bytes(b"new weights")
    reason = stale_reason(folder, fingerprint(["--clap_model_name_or_path", str(weights)]))
    assert reason == "files of clap_model_name_or_path changed since it was prepared"
    (folder / FINGERPRINT_NAME).write_text(json.dumps(fingerprint([])))
    assert stale_reason(folder, fingerprint(["--push_metadata_repo_id", "me/captions"])) == (
        "push_metadata_repo_id changed since it was prepared"
    )
    # captions measured by another version of the tempo and key estimators (ANALYSIS_VERSION) are prepared again
    measured = fingerprint(["--add_metadata", "true"])
    older = json.loads(json.dumps(measured))
    older["options"]["version of the tempo and key estimators"] -= 1
    (folder / FINGERPRINT_NAME).write_text(json.dumps(older))
    assert stale_reason(folder, measured) == "version of the tempo and key estimators changed since it was prepared"
    assert "version of the tempo and key estimators" not in fingerprint([])["options"]


def test_a_rerun_with_nothing_to_prepare_does_not_load_the_model(tiny_model_dir, corpus_dir, tmp_path, monkeypatch):
    import os

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    argv = base_argv(model_dir, corpus_dir, tmp_path / "out", tmp_path / "cache") + ["--max_train_samples", "3"]
    first = prepare_main(argv)
    model, _ = load_model_and_processor(parse_config(argv).model)
    remembered = cache_keys.remembered_codec_fingerprint(parse_config(argv).model, tmp_path / "cache")
    assert remembered == cache_keys.module_fingerprint(model.audio_encoder)  # remembered by the model files' identity

    loads: list[int] = []
    original = pipeline.load_model_and_processor

    def counting_load(*args, **kwargs):
        loads.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline, "load_model_and_processor", counting_load)
    fingerprint = tmp_path / "out" / PREPARED_DIR_NAME / FINGERPRINT_NAME
    written = fingerprint.stat().st_mtime_ns
    assert prepare_main(argv) == first and loads == []  # nothing loaded, nothing rewritten
    assert fingerprint.stat().st_mtime_ns == written

    prepare_main(argv + ["--instance_prompt", "in the style of qzx"])  # a data option changed: prepared again
    assert len(loads) == 1
    prepare_main(argv + ["--instance_prompt", "in the style of qzx"])
    assert len(loads) == 1

    weights = next(model_dir.glob("*.safetensors"))
    os.utime(weights, ns=(written, written + 10**9))  # the model files changed (same bytes): fingerprinted again
    calls = count_encoder_calls(monkeypatch)
    prepare_main(argv)
    assert len(loads) == 2 and calls == []  # same weights, so the cached codes still serve
    assert cache_keys.remembered_codec_fingerprint(parse_config(argv).model, tmp_path / "cache") == remembered
