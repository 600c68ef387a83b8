"""Samples during training: base / step-N / final renders, logged as audio, and no effect on the training itself."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForTextToWaveform, AutoProcessor

from musicgen_lora.audio.io import write_wav
from musicgen_lora.config.parsing import parse_config
from musicgen_lora.errors import UserError
from musicgen_lora.generate.render import generate_audio

from ..conftest import RATE, base_argv

PROMPTS = ["lofi hip hop, piano", "techno, 128 bpm"]
SECONDS = 0.5
FRAMES = int(SECONDS * RATE)
PCM16_STEP = 1 / 32768  # WAV files are 16-bit: one quantisation step, plus rounding on the way in
SAMPLE_ARGS = ["--sample_prompts", *PROMPTS, "--sample_duration_in_seconds", str(SECONDS)]


def training_args(model_dir: Path, corpus: Path, out: Path, cache: Path, steps: int = 4) -> list[str]:
    """A short run that draws random numbers everywhere: shuffling, 1 s crops of 3 s clips, text and LoRA dropout."""
    return base_argv(model_dir, corpus, out, cache) + [
        "--max_steps",
        str(steps),
        "--max_train_samples",
        "4",
        "--per_device_train_batch_size",
        "2",
        "--max_duration_in_seconds",
        "1",
        "--learning_rate",
        "3e-3",
        "--text_dropout_prob",
        "0.3",
        "--lora_dropout",
        "0.1",
    ]


def read(path: Path) -> np.ndarray:
    data, rate = sf.read(str(path), dtype="float32")
    assert rate == RATE
    return data


def adapter_weights(output_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(output_dir) / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def sampled_run(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path_factory) -> dict:
    """4 steps, samples every 2 steps, logged to TensorBoard (in OUTPUT_DIR/runs/)."""
    from finetune_musicgen import main

    out = tmp_path_factory.mktemp("samples") / "run"
    argv = (
        training_args(tiny_model_dir, corpus_dir, out, data_cache_dir)
        + SAMPLE_ARGS
        + [
            "--sample_every_steps",
            "2",
            "--report_to",
            "tensorboard",
        ]
    )
    result = main(argv)
    result["out"] = out
    return result


def test_samples_are_rendered_before_during_and_after_training(sampled_run):
    samples = sampled_run["out"] / "samples"
    assert sorted(p.name for p in samples.iterdir()) == ["base", "final", "step-2", "step-4"]
    for folder in samples.iterdir():
        assert sorted(p.name for p in folder.iterdir()) == ["0.wav", "1.wav", "prompts.txt"]
        assert (folder / "prompts.txt").read_text(
            encoding="utf-8"
        ) == "0.wav\tlofi hip hop, piano\n1.wav\ttechno, 128 bpm\n"
        for wav in ("0.wav", "1.wav"):
            info = sf.info(str(folder / wav))
            assert (info.samplerate, info.channels, info.frames) == (RATE, 1, FRAMES)
    assert sampled_run["samples"] == [str(samples / "final" / "0.wav"), str(samples / "final" / "1.wav")]


def as_written(audio: np.ndarray, tmp_path: Path) -> np.ndarray:
    """``audio`` (channels, samples) after the same 16-bit WAV round trip as the samples."""
    write_wav(tmp_path / "expected.wav", audio, RATE)
    return read(tmp_path / "expected.wav")


def test_base_samples_are_the_untrained_model_and_final_samples_the_trained_one(sampled_run, tiny_model_dir, tmp_path):
    samples = sampled_run["out"] / "samples"
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    base_model = AutoModelForTextToWaveform.from_pretrained(tiny_model_dir)
    expected_base = generate_audio(base_model, processor, PROMPTS, seconds=SECONDS, guidance_scale=3.0, seed=0)
    trained = PeftModel.from_pretrained(AutoModelForTextToWaveform.from_pretrained(tiny_model_dir), sampled_run["out"])
    expected_final = generate_audio(trained, processor, PROMPTS, seconds=SECONDS, guidance_scale=3.0, seed=0)
    for index in range(len(PROMPTS)):
        base = read(samples / "base" / f"{index}.wav")
        final = read(samples / "final" / f"{index}.wav")
        # bit for bit what a fresh base model, and the saved adapter over it, render with the same seed
        assert np.array_equal(base, as_written(expected_base[index], tmp_path))
        assert np.array_equal(final, as_written(expected_final[index], tmp_path))
        # (the tiny model's codec turns different codes into nearly the same waveform: the differences are small)
        assert not np.array_equal(final, base)
        # same weights, same seed: the last step's render and the final one are identical
        assert np.array_equal(read(samples / "step-4" / f"{index}.wav"), final)
    assert not np.array_equal(read(samples / "step-2" / "0.wav"), read(samples / "step-4" / "0.wav"))


def test_samples_are_logged_to_tensorboard(sampled_run):
    from tensorboard.backend.event_processing.event_accumulator import AUDIO, TENSORS, EventAccumulator

    (event_file,) = sampled_run["out"].glob("runs/*/events.out.tfevents.*")
    events = EventAccumulator(str(event_file), size_guidance={AUDIO: 0, TENSORS: 0})
    events.Reload()
    expected_steps = {"base": [0], "step": [2, 4], "final": [4]}
    assert set(events.Tags()["audio"]) == {f"samples/{kind}/{i}" for kind in expected_steps for i in range(2)}
    for kind, steps in expected_steps.items():
        for index in range(len(PROMPTS)):
            entries = events.Audio(f"samples/{kind}/{index}")
            assert [e.step for e in entries] == steps
            for entry in entries:
                assert (entry.sample_rate, entry.length_frames, entry.content_type) == (RATE, FRAMES, "audio/wav")
    # the logged audio is the rendered audio
    logged, rate = sf.read(io.BytesIO(events.Audio("samples/base/1")[0].encoded_audio_string), dtype="float32")
    np.testing.assert_allclose(logged, read(sampled_run["out"] / "samples" / "base" / "1.wav"), atol=2 * PCM16_STEP)
    # TensorBoard audio has no caption: the prompts are logged as text
    (prompts,) = events.Tensors("samples/prompts/text_summary")
    text = prompts.tensor_proto.string_val[0].decode()
    assert all(prompt in text for prompt in PROMPTS)


def test_rendering_samples_does_not_change_training(
    sampled_run, tiny_model_dir, corpus_dir, data_cache_dir, tmp_path, monkeypatch
):
    """Same weights with and without samples; without the RNG guard the renders would change them (control)."""
    from finetune_musicgen import main
    from musicgen_lora.train import samples

    plain = main(training_args(tiny_model_dir, corpus_dir, tmp_path / "plain", data_cache_dir))
    assert plain["samples"] == [] and not (tmp_path / "plain" / "samples").exists()  # no prompts: nothing rendered
    with_samples, without = adapter_weights(sampled_run["out"]), adapter_weights(tmp_path / "plain")
    assert with_samples.keys() == without.keys()
    assert all(torch.equal(with_samples[name], without[name]) for name in without)

    # Control: the same run with the RNG guard disabled ends with other weights, so the check above can fail.
    monkeypatch.setattr(samples, "preserved_rng", contextlib.nullcontext)
    argv = training_args(tiny_model_dir, corpus_dir, tmp_path / "unguarded", data_cache_dir)
    main(argv + SAMPLE_ARGS + ["--sample_every_steps", "2"])
    unguarded = adapter_weights(tmp_path / "unguarded")
    assert not all(torch.equal(unguarded[name], without[name]) for name in without)


def test_a_resumed_lora_run_renders_the_true_base(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path):
    from finetune_musicgen import main

    out = tmp_path / "run"
    argv = training_args(tiny_model_dir, corpus_dir, out, data_cache_dir, steps=2) + SAMPLE_ARGS
    main(argv + ["--save_strategy", "steps", "--save_steps", "2"])
    first = out / "samples"
    shutil.move(first, tmp_path / "first")
    main([*argv, "--max_steps", "4", "--resume_from_checkpoint", str(out / "checkpoint-2")])
    for index in range(len(PROMPTS)):
        base_again = read(out / "samples" / "base" / f"{index}.wav")
        assert np.array_equal(base_again, read(tmp_path / "first" / "base" / f"{index}.wav"))
        # the weights it resumed from render differently, so the adapter really was switched off for the base
        assert not np.array_equal(base_again, read(tmp_path / "first" / "final" / f"{index}.wav"))
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["base", "final"]


def test_samples_are_logged_to_wandb_offline(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb", reason="wandb is not installed (pip install -r requirements-dev.txt)")
    from finetune_musicgen import main

    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_PROJECT", "musicgen-lora-tests")
    argv = training_args(tiny_model_dir, corpus_dir, tmp_path / "run", data_cache_dir, steps=2)
    try:
        main(argv + SAMPLE_ARGS + ["--sample_every_steps", "2", "--report_to", "wandb"])
    finally:
        wandb.finish()  # WandbCallback leaves the run open
    (run_dir,) = (tmp_path / "WANDB_DIR" / "wandb").glob("offline-run-*")
    media = run_dir / "files" / "media" / "audio" / "samples"
    logged = sorted(str(p.relative_to(media).parent) + "/" + p.name.split("_")[0] for p in media.rglob("*.wav"))
    assert logged == ["base/0", "base/1", "final/0", "final/1", "step/0", "step/1"]
    assert all(sf.info(str(p)).frames == FRAMES for p in media.rglob("*.wav"))
    (history,) = run_dir.glob("run-*.wandb")
    records = wandb_log_payload(history.read_bytes())
    assert all(prompt.encode() in records for prompt in PROMPTS)  # the captions


def wandb_log_payload(raw: bytes, block: int = 32768, header: int = 7) -> bytes:
    """The records of a ``.wandb`` file joined, without the framing: it is a LevelDB-style log (a 7-byte file header,
    then 32 KiB blocks of records, each with a 7-byte header: crc32, length, type), so a caption can be split by a
    block boundary in the raw bytes."""
    payload, position = bytearray(), header
    while position + header <= len(raw):
        if block - position % block < header:  # too little room left in the block: zero padding
            position += block - position % block
            continue
        _crc, length, _kind = struct.unpack("<IHB", raw[position : position + header])
        payload += raw[position + header : position + header + length]
        position += header + length
    return bytes(payload)


def test_samples_are_logged_to_trackio(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path, monkeypatch):
    if importlib.util.find_spec("trackio") is None:
        pytest.skip("trackio is not installed (optional backend, not in requirements-dev.txt)")
    if "trackio" in sys.modules:
        pytest.skip("trackio was imported before this test: its data folder (TRACKIO_DIR) is fixed at import")
    from finetune_musicgen import main

    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))  # before trackio is imported
    argv = training_args(tiny_model_dir, corpus_dir, tmp_path / "run", data_cache_dir, steps=2)
    main(argv + SAMPLE_ARGS + ["--sample_every_steps", "2", "--report_to", "trackio", "--project", "samples-test"])
    wavs = list((tmp_path / "trackio" / "media").rglob("*.wav"))
    assert len(wavs) == 6  # base, step-2 and final, two prompts each
    assert all(sf.info(str(p)).frames == FRAMES for p in wavs)


def test_sample_every_steps_must_not_be_negative(tmp_path):
    with pytest.raises(UserError, match=r"sample_every_steps must be >= 0.*got -1"):
        parse_config(
            [
                "--model_name_or_path",
                "m",
                "--dataset_name",
                "d",
                "--output_dir",
                str(tmp_path),
                "--sample_every_steps",
                "-1",
            ]
        )
