"""Stereo and melody MusicGen: data layout, delay pattern, chroma conditioning, training, reload and generation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from peft import PeftModel
from transformers import AutoModelForTextToWaveform

from finetune_musicgen import main
from musicgen_lora.generate.render import generate_audio
from musicgen_lora.models.codec import encode_clip
from musicgen_lora.models.processors import load_processor
from musicgen_lora.models.spec import AudioSpec
from musicgen_lora.prepare.encoding import chroma_of
from musicgen_lora.train.collator import MusicgenCollator, delay_pattern_labels, shift_right

from ..conftest import base_argv, tone


def train_briefly(model_dir: Path, dataset: Path, out: Path, cache: Path, *extra: str) -> dict:
    return main(
        base_argv(model_dir, dataset, out, cache)
        + [
            "--max_steps",
            "3",
            "--max_train_samples",
            "4",
            "--per_device_train_batch_size",
            "2",
            "--learning_rate",
            "1e-2",
            "--logging_steps",
            "1",
            *extra,
        ]
    )


def assert_reload_parity(result: dict, model_dir: Path, batch: dict) -> None:
    reloaded = PeftModel.from_pretrained(AutoModelForTextToWaveform.from_pretrained(model_dir), result["output_dir"])
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval()(**batch).logits, result["model"].eval()(**batch).logits)


# ------------------------------------------------------------------------------------------------ stereo


def test_stereo_codes_interleave_left_and_right(stereo_model_dir):
    model = AutoModelForTextToWaveform.from_pretrained(stereo_model_dir).eval()
    stereo = np.stack([tone(1.0, 220, tremolo_hz=3), tone(1.0, 1760, tremolo_hz=3)])  # different content left and right
    codes = encode_clip(model.audio_encoder, stereo)  # (8, frames)
    with torch.no_grad():
        left = model.audio_encoder.encode(torch.from_numpy(stereo[:1])[None]).audio_codes[0, 0]
        right = model.audio_encoder.encode(torch.from_numpy(stereo[1:])[None]).audio_codes[0, 0]
    assert codes.shape == (8, 50)
    assert np.array_equal(codes[0::2], left.numpy()) and np.array_equal(codes[1::2], right.numpy())
    assert not np.array_equal(codes[0::2], codes[1::2])
    assert AudioSpec.of(model).channels == 2


def test_stereo_labels_match_the_delay_pattern_generate_builds(stereo_model_dir):
    model = AutoModelForTextToWaveform.from_pretrained(stereo_model_dir)
    pad = model.generation_config.pad_token_id
    codes = torch.randint(0, pad, (8, 6))
    labels = delay_pattern_labels(codes, audio_channels=2)
    assert labels.shape == (6 + 4 - 1, 8)  # left/right pairs share a delay: 4 delays, not 8
    inputs = shift_right(labels[None], pad, pad)  # (8, 9)
    _, mask = model.decoder.build_delay_pattern_mask(torch.full((8, 1), pad), pad_token_id=pad, max_length=6 + 4)
    mask = mask[:, : inputs.shape[1]]
    forced = mask != -1
    assert torch.equal(inputs[forced], mask[forced]) and (inputs[~forced] != pad).all()


def test_stereo_trains_reloads_and_generates_two_channels(stereo_model_dir, tmp_path):
    songs = tmp_path / "stereo-songs"
    songs.mkdir()
    for index in range(4):
        audio = np.stack([tone(1.5, 200 + 40 * index, tremolo_hz=3), tone(1.5, 900 + 60 * index, tremolo_hz=3)], axis=1)
        sf.write(songs / f"{index}.wav", audio, 32000)
        (songs / f"{index}.txt").write_text(f"stereo tones {index}")
    result = train_briefly(stereo_model_dir, songs, tmp_path / "out", tmp_path / "cache")
    processor = load_processor(result["output_dir"])
    text = processor(text=["stereo tones"], return_tensors="pt")
    batch = {**text, "decoder_input_ids": torch.randint(0, 64, (8, 12))}
    assert_reload_parity(result, stereo_model_dir, batch)
    audio = generate_audio(result["model"], processor, ["stereo tones", "tones"], seconds=0.6, seed=0)
    assert audio.shape == (2, 2, int(0.6 * 32000))


# ------------------------------------------------------------------------------------------------ melody


@pytest.fixture(scope="module")
def melody_songs(tmp_path_factory) -> Path:
    """Clips with captions and, for each, a separate 'hummed' melody file in a metadata column."""
    folder = tmp_path_factory.mktemp("melody-songs")
    rows = []
    for index in range(4):
        sf.write(
            folder / f"{index}.wav",
            tone(2.0, 110 * (index + 1), tremolo_hz=3) + tone(2.0, 3000, tremolo_hz=3) * 0.2,
            32000,
        )
        sf.write(folder / f"hum{index}.wav", tone(2.0, 261.6 * 2 ** (index / 12), tremolo_hz=3), 32000)
        rows.append({"file_name": f"{index}.wav", "text": f"song {index}", "hum": f"hum{index}.wav"})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_melody_trains_on_its_own_chroma_and_reloads(melody_model_dir, melody_songs, tmp_path):
    result = train_briefly(melody_model_dir, melody_songs, tmp_path / "out", tmp_path / "cache")
    losses = [r["loss"] for r in result["log_history"] if "loss" in r]
    assert len(losses) == 3 and all(np.isfinite(losses))
    processor = load_processor(result["output_dir"])
    inputs = processor(text=["song 1"], audio=[tone(2.0, 220, tremolo_hz=3)], sampling_rate=32000, return_tensors="pt")
    batch = {**inputs, "decoder_input_ids": torch.randint(0, 64, (4, 12))}
    assert_reload_parity(result, melody_model_dir, batch)
    with_melody = generate_audio(
        result["model"], processor, ["song"], seconds=0.5, seed=0, melody=tone(2.0, 330, tremolo_hz=3)
    )
    text_only = generate_audio(result["model"], processor, ["song"], seconds=0.5, seed=0)
    assert with_melody.shape == text_only.shape == (1, 1, 16000)


def test_chroma_comes_from_the_conditional_audio_column(melody_model_dir, melody_songs, tmp_path):
    from musicgen_lora.config.parsing import parse_config
    from musicgen_lora.prepare.cache_keys import module_fingerprint

    from ..prepare.conftest import prepared_split

    model = AutoModelForTextToWaveform.from_pretrained(melody_model_dir)
    extractor = load_processor(melody_model_dir).feature_extractor
    fingerprint = module_fingerprint(model.audio_encoder)

    def chroma(*extra: str) -> list:
        args = parse_config(
            base_argv(melody_model_dir, melody_songs, tmp_path / "o", tmp_path / "c") + list(extra)
        ).data
        return prepared_split(args, "train", model, fingerprint, False, extractor)["chroma"]

    own, hummed = chroma(), chroma("--conditional_audio_column_name", "hum")
    expected = chroma_of(extractor, tone(2.0, 261.6, tremolo_hz=3))  # the first hum, whole clip
    assert np.array_equal(np.array(hummed[0], dtype=np.float16), expected)
    assert not np.array_equal(np.array(own[0]), np.array(hummed[0]))
    # one-hot chroma at 32000 / 4096 frames per second, over the whole clip (not cut or padded to 30 s)
    assert expected.shape == (1 + 64000 // 4096, 12) and (expected.sum(axis=1) == 1).all()


def test_collator_crops_chroma_with_the_codes_and_drops_it_to_the_null_melody(melody_model_dir):
    processor = load_processor(melody_model_dir)
    ratio = 32000 / 4096 / 50  # chroma frames per codec frame
    chroma = np.eye(12)[np.arange(100) % 12].tolist()  # frame i: one-hot on bin i % 12
    feature = {"codes": torch.randint(0, 64, (4, 600)).tolist(), "text": "x", "chroma": chroma}
    collator = MusicgenCollator(processor.tokenizer, 64, 64, max_frames=100, random_crop=True, chroma_per_frame=ratio)
    starts = set()
    for _ in range(5):
        probe = dataclasses.replace(collator)  # same seed and batch counter: draws the window the collator will
        start = probe.window_start(600, probe.next_generator())
        starts.add(start)
        batch = collator([feature])
        first_bin = int(batch["input_features"][0, 0].argmax())
        assert first_bin == int(start * ratio) % 12  # the chroma window starts where the code window starts
        assert batch["input_features"].shape[1] == int(np.ceil(100 * ratio))
    assert len(starts) > 1
    always = MusicgenCollator(
        processor.tokenizer, 64, 64, max_frames=100, chroma_per_frame=ratio, chroma_dropout_prob=0.999999
    )
    dropped = always([feature])["input_features"][0]
    assert (dropped[:, 0] == 1).all() and (dropped[:, 1:] == 0).all()
    assert always.for_evaluation().chroma_dropout_prob == 0.0


def test_dropped_chroma_is_the_melody_models_own_null_condition(melody_model_dir):
    model = AutoModelForTextToWaveform.from_pretrained(melody_model_dir).eval()
    processor = load_processor(melody_model_dir)
    ratio = 32000 / 4096 / 50
    feature = {"codes": torch.randint(0, 64, (4, 30)).tolist(), "text": "song", "chroma": np.eye(12)[[3] * 5].tolist()}
    kept = MusicgenCollator(processor.tokenizer, 64, 64, max_frames=100, chroma_per_frame=ratio)([feature])
    dropped = MusicgenCollator(
        processor.tokenizer, 64, 64, max_frames=100, chroma_per_frame=ratio, chroma_dropout_prob=0.999999
    )([feature])
    for batch in (kept, dropped):
        batch.pop("labels")
    no_melody = {k: v for k, v in dropped.items() if k != "input_features"}
    with torch.no_grad():
        torch.testing.assert_close(model(**dropped).logits, model(**no_melody).logits)
        assert not torch.allclose(model(**kept).logits, model(**dropped).logits, atol=1e-5)


def test_melody_options_on_a_model_without_melody_are_refused_or_flagged(
    tiny_model_dir, corpus_dir, data_cache_dir, tmp_path, capsys, caplog
):
    out = tmp_path / "run"
    argv = base_argv(tiny_model_dir, corpus_dir, out, data_cache_dir) + ["--max_steps", "1"]
    with pytest.raises(SystemExit) as stopped:
        main(argv + ["--conditional_audio_column_name", "melody"])
    error = capsys.readouterr().err.strip()
    assert stopped.value.code == 2 and error.count("\n") == 0
    assert "conditional_audio_column_name is set but" in error and "is not a melody model" in error
    assert not (out / "prepared_data").exists()  # refused before any data was prepared
    with caplog.at_level("WARNING"):
        main(argv + ["--chroma_dropout_prob", "0.2", "--max_train_samples", "2", "--per_device_train_batch_size", "2"])
    assert "chroma_dropout_prob has no effect" in caplog.text
