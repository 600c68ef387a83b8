"""The generation CLI: exact lengths past the window by continuation, seams, melody, stereo, MP3, merge and blend."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoModelForTextToWaveform, AutoProcessor, pipeline
from transformers.models.musicgen_melody.processing_musicgen_melody import MusicgenMelodyProcessor

from musicgen_lora.generate.cli import GenerateArguments, main
from musicgen_lora.generate.long_form import generate_long
from musicgen_lora.generate.render import generate_audio
from musicgen_lora.models.codec import encode_clip
from musicgen_lora.models.processors import load_processor

from ..conftest import RATE

HOP = 640  # samples per 50 Hz frame
PROMPTS = ["lofi hip hop, piano", "techno, 128 bpm"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model = AutoModelForTextToWaveform.from_pretrained(tiny_model_dir).eval()
    return model, AutoProcessor.from_pretrained(tiny_model_dir)


class GenerateSpy:
    """Wraps ``model.generate`` to record what each window asked for."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls: list[dict] = []
        self.outputs: list[np.ndarray] = []
        self._generate = model.generate
        model.generate = self

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        audio = self._generate(**kwargs)
        self.outputs.append(audio.numpy())
        return audio


def frame_rms(audio: np.ndarray) -> np.ndarray:
    """RMS of each 10 ms block of (channels, samples) audio."""
    blocks = audio[..., : audio.shape[-1] // 320 * 320].reshape(*audio.shape[:-1], -1, 320)
    return np.sqrt((blocks**2).mean(axis=-1))


def merged_weights(base: Path, tmp_path: Path, *extra: str) -> dict[str, torch.Tensor]:
    """The weights `generate --merge` writes for the base and the adapter options `extra` (a new folder per call)."""
    folder = tmp_path / f"merged-{len(list(tmp_path.iterdir()))}"
    main(["--base_model", str(base), *extra, "--merge", str(folder)])
    return load_file(str(folder / "model.safetensors"))


def test_long_audio_is_exact_length_with_each_window_continuing_the_last(tiny):
    model, processor = tiny
    spy = GenerateSpy(model)
    try:
        audio = generate_long(model, processor, PROMPTS, 2.51, seed=0, window_seconds=1.0, overlap_seconds=0.4)
    finally:
        del model.generate
    assert audio.shape == (2, 1, round(2.51 * RATE))  # to the sample, not only the frame
    # windows: 50 frames from text, then 30 new frames after 20 frames of prompt each time, then the 16 still missing
    assert [c["max_new_tokens"] - 3 for c in spy.calls] == [50, 30, 30, 16]
    assert "decoder_input_ids" not in spy.calls[0]
    produced = 50
    for call, output, new in zip(spy.calls[1:], spy.outputs[1:], (30, 30, 16), strict=False):
        # the prompt is the EnCodec code of the last 0.4 s (20 frames) generated so far, for each prompt of the batch
        tail = audio[..., (produced - 20) * HOP : produced * HOP]
        expected = torch.cat(
            [torch.from_numpy(encode_clip(model.audio_encoder, clip).astype(np.int64)) for clip in tail]
        )
        assert torch.equal(call["decoder_input_ids"], expected)  # (bsz * 4 codebooks, 20 frames)
        assert output.shape[-1] == (20 + new) * HOP  # generate() returns the prompt too; it is dropped
        assert np.array_equal(
            audio[..., produced * HOP : (produced + new) * HOP],
            output[..., 20 * HOP :][..., : audio.shape[-1] - produced * HOP],
        )
        produced += new
    # no silence and no padding at the seams (0.02 s either side of each window boundary)
    rms = frame_rms(audio)
    typical = np.median(rms)
    for seam in (50, 80, 110):
        around = rms[..., seam * 2 - 2 : seam * 2 + 2]
        assert (around > 0.5 * typical).all()


def test_within_the_window_it_equals_the_training_samples(tiny):
    model, processor = tiny
    expected = generate_audio(model, processor, PROMPTS, 0.6, guidance_scale=3.0, seed=3)
    assert np.array_equal(generate_long(model, processor, PROMPTS, 0.6, seed=3), expected)


def test_overlap_and_window_are_checked(tiny):
    from musicgen_lora.errors import UserError

    model, processor = tiny
    with pytest.raises(UserError, match="--overlap must be between"):
        generate_long(model, processor, PROMPTS[:1], 2.0, window_seconds=1.0, overlap_seconds=1.0)
    with pytest.raises(UserError, match="--window must be in"):
        generate_long(model, processor, PROMPTS[:1], 2.0, window_seconds=31)


def test_stereo_continuation_keeps_both_channels(stereo_model_dir):
    model = AutoModelForTextToWaveform.from_pretrained(stereo_model_dir).eval()
    processor = AutoProcessor.from_pretrained(stereo_model_dir)
    audio = generate_long(model, processor, PROMPTS[:1], 1.3, window_seconds=0.8, overlap_seconds=0.3)
    assert audio.shape == (1, 2, round(1.3 * RATE))
    assert (frame_rms(audio) > 0.5 * np.median(frame_rms(audio))).all()


def test_melody_cli_conditions_each_window_on_its_part_of_the_melody(melody_model_dir, tmp_path, monkeypatch):
    melody = tmp_path / "hum.wav"
    t = np.arange(int(1.5 * RATE)) / RATE
    sf.write(melody, 0.3 * np.sin(2 * np.pi * np.where(t < 0.75, 220, 330) * t), RATE)
    segments: list[int] = []
    from transformers.models.musicgen_melody.processing_musicgen_melody import MusicgenMelodyProcessor

    original = MusicgenMelodyProcessor.__call__

    def spy(self, *args, audio=None, **kwargs):
        segments.append(len(audio[0]))
        return original(self, *args, audio=audio, **kwargs)

    monkeypatch.setattr(MusicgenMelodyProcessor, "__call__", spy)
    result = main(
        [
            "--base_model",
            str(melody_model_dir),
            "--prompt",
            PROMPTS[0],
            "--duration",
            "1.5",
            "--window",
            "1.0",
            "--overlap",
            "0.4",
            "--melody",
            str(melody),
            "--out_dir",
            str(tmp_path / "out"),
        ]
    )
    (wav,) = result["files"]
    assert sf.info(wav).frames == round(1.5 * RATE)
    assert segments == [50 * HOP, (20 + 25) * HOP]  # window 1: 0-1 s; window 2: 0.6-1.5 s (prompt + new)


def test_melody_needs_a_melody_model(tiny_model_dir, tmp_path, capsys):
    sf.write(tmp_path / "hum.wav", np.zeros(RATE), RATE)
    with pytest.raises(SystemExit):
        main(["--base_model", str(tiny_model_dir), "--prompt", "x", "--melody", str(tmp_path / "hum.wav")])
    assert "--melody needs a melody model" in capsys.readouterr().err


def test_cli_writes_wav_and_mp3_for_batched_prompts_with_the_adapter_base(trained_run, tmp_path):
    out = tmp_path / "out"
    result = main(
        [
            "--adapter",
            trained_run["output_dir"],
            "--prompt",
            PROMPTS[0],
            "--prompt",
            PROMPTS[1],
            "--prompt",
            "jazz",
            "--batch_size",
            "2",
            "--duration",
            "0.5",
            "--format",
            "both",
            "--out_dir",
            str(out),
        ]
    )  # base model from adapter_config.json
    assert sorted(Path(f).name for f in result["files"]) == ["0.mp3", "0.wav", "1.mp3", "1.wav", "2.mp3", "2.wav"]
    for name in ("0.wav", "2.mp3"):
        info = sf.info(str(out / name))
        assert (info.samplerate, info.channels) == (RATE, 1)
        assert abs(info.frames - 0.5 * RATE) <= (0 if name.endswith(".wav") else 1152)  # MP3: one frame of slack
    assert (out / "prompts.txt").read_text() == f"0\t{PROMPTS[0]}\n1\t{PROMPTS[1]}\n2\tjazz\n"
    assert json.loads((out / "generation_config.json").read_text())["seed"] == 0


def test_merged_export_loads_with_pipeline_and_matches_the_adapter(trained_run, tiny_model_dir, tmp_path):
    merged_dir = tmp_path / "merged"
    result = main(
        ["--base_model", str(tiny_model_dir), "--adapter", trained_run["output_dir"], "--merge", str(merged_dir)]
    )
    assert result["merged"] == str(merged_dir) and result["files"] == []
    assert not (merged_dir / "adapter_config.json").exists()
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    adapter = PeftModel.from_pretrained(
        AutoModelForTextToWaveform.from_pretrained(tiny_model_dir), trained_run["output_dir"]
    )
    expected = generate_audio(adapter, processor, PROMPTS[:1], 1.0, guidance_scale=3.0, seed=5)[0, 0]
    base = generate_audio(
        AutoModelForTextToWaveform.from_pretrained(tiny_model_dir), processor, PROMPTS[:1], 1.0, seed=5
    )[0, 0]
    assert not np.array_equal(expected, base)  # the adapter matters
    merged = AutoModelForTextToWaveform.from_pretrained(merged_dir)
    assert type(merged).__name__ == "MusicgenForConditionalGeneration"
    music = pipeline("text-to-audio", model=str(merged_dir))
    torch.manual_seed(5)
    out = music(PROMPTS[0], forward_params={"do_sample": True, "guidance_scale": 3.0, "max_new_tokens": 53})
    assert out["sampling_rate"] == RATE
    np.testing.assert_allclose(out["audio"], expected, atol=1e-4)


def test_blending_two_adapters_adds_their_weight_updates(trained_run, tiny_model_dir, tmp_path):
    first = Path(trained_run["output_dir"])
    second = tmp_path / "second"
    second.mkdir()
    shutil.copy(first / "adapter_config.json", second)
    generator = torch.Generator().manual_seed(0)
    weights = load_file(str(first / "adapter_model.safetensors"))
    save_file(
        {k: v + 0.05 * torch.randn(v.shape, generator=generator) for k, v in weights.items()},
        str(second / "adapter_model.safetensors"),
    )

    def merged(*extra: str) -> dict[str, torch.Tensor]:
        return merged_weights(tiny_model_dir, tmp_path, *extra)

    only_first, only_second = merged("--adapter", str(first)), merged("--adapter", str(second))
    blend = merged("--adapter", str(first), "--adapter", str(second), "--adapter_weights", "0.7", "0.3")
    base = AutoModelForTextToWaveform.from_pretrained(tiny_model_dir).state_dict()
    changed = [k for k in blend if not torch.equal(only_first[k], base[k])]
    assert any("lm_heads" in k for k in changed) and any("layers.0.self_attn.q_proj" in k for k in changed)
    for key in changed:  # W_blend = W + 0.7 dW_first + 0.3 dW_second, exactly as asked
        expected = base[key] + 0.7 * (only_first[key] - base[key]) + 0.3 * (only_second[key] - base[key])
        torch.testing.assert_close(blend[key], expected, atol=1e-5, rtol=1e-4)
    same_as_first = merged("--adapter", str(first), "--adapter", str(second), "--adapter_weights", "1", "0")
    for key in changed:
        torch.testing.assert_close(same_as_first[key], only_first[key], atol=1e-5, rtol=1e-4)


def test_cli_errors_are_one_line(tiny_model_dir, tmp_path, capsys):
    for argv, message in [
        (["--base_model", str(tiny_model_dir)], "nothing to do; give --prompt"),
        (
            ["--base_model", str(tiny_model_dir), "--prompt", "x", "--duration", "0"],
            "--duration must be between 0.02 s",
        ),
        (["--base_model", str(tmp_path / "missing"), "--prompt", "x"], "model folder"),
        (["--base_model", str(tiny_model_dir), "--adapter", str(tmp_path), "--prompt", "x"], "cannot load adapter"),
        (["--prompt", "x"], "--base_model is not set"),
        (["--base_model", str(tiny_model_dir), "--merge", str(tmp_path / "m")], "--merge needs at least one --adapter"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
        assert line.startswith("error: ") and message in line, line


def test_the_same_prompts_seed_and_batch_give_the_same_audio(trained_run, tmp_path):
    def render(name: str, seed: str) -> list[np.ndarray]:
        result = main(
            ["--adapter", trained_run["output_dir"], "--prompt", PROMPTS[0], "--prompt", PROMPTS[1]]
            + ["--batch_size", "2", "--duration", "0.4", "--seed", seed, "--out_dir", str(tmp_path / name)]
        )
        return [sf.read(path)[0] for path in result["files"]]

    first, again, other_seed = render("a", "7"), render("b", "7"), render("c", "8")
    assert all(np.array_equal(x, y) for x, y in zip(first, again, strict=True))
    assert not any(np.array_equal(x, y) for x, y in zip(first, other_seed, strict=True))  # the seed matters


def test_a_melody_shorter_than_the_clip_repeats(melody_model_dir, tmp_path, monkeypatch):
    rate = load_processor(melody_model_dir).feature_extractor.sampling_rate  # (AutoProcessor needs torchaudio)
    t = np.arange(int(0.3 * rate)) / rate
    tune = (0.3 * np.sin(2 * np.pi * np.where(t < 0.15, 220, 330) * t)).astype(np.float32)
    sf.write(tmp_path / "hum.wav", tune, rate, subtype="FLOAT")
    segments: list[np.ndarray] = []
    original = MusicgenMelodyProcessor.__call__

    def spy(self, *args, audio=None, **kwargs):
        segments.append(np.asarray(audio[0]))
        return original(self, *args, audio=audio, **kwargs)

    monkeypatch.setattr(MusicgenMelodyProcessor, "__call__", spy)
    main(["--base_model", str(melody_model_dir), "--prompt", PROMPTS[0], "--duration", "1.0"]
         + ["--melody", str(tmp_path / "hum.wav"), "--out_dir", str(tmp_path / "out")])  # fmt: skip
    (segment,) = segments  # one window of 1 s: the 0.3 s tune three times and a bit
    assert len(segment) == round(1.0 * rate)
    np.testing.assert_array_equal(segment, np.resize(tune, len(segment)))


def test_blend_cat_is_exact_for_adapters_of_different_ranks(trained_run, tiny_model_dir, tmp_path, capsys):
    first = Path(trained_run["output_dir"])
    config = json.loads((first / "adapter_config.json").read_text())
    rank = config["r"] // 4
    second = tmp_path / "low-rank"  # the first adapter's leading directions at a quarter of its rank
    second.mkdir()
    (second / "adapter_config.json").write_text(
        json.dumps({**config, "r": rank, "lora_alpha": config["lora_alpha"] / 4})
    )
    weights = load_file(str(first / "adapter_model.safetensors"))
    # A matrices (lora_A, lora_embedding_A) are (rank, in): their first rows; B matrices (out, rank): first columns
    low = {k: v[:rank].clone() if "_A" in k else v[:, :rank].clone() for k, v in weights.items()}
    save_file(low, str(second / "adapter_model.safetensors"))

    def merged(*extra: str) -> dict[str, torch.Tensor]:
        return merged_weights(tiny_model_dir, tmp_path, *extra)

    only_first, only_second = merged("--adapter", str(first)), merged("--adapter", str(second))
    blend = merged("--adapter", str(first), "--adapter", str(second), "--adapter_weights", "0.7", "0.3")
    base = AutoModelForTextToWaveform.from_pretrained(tiny_model_dir).state_dict()
    changed = [k for k in blend if not torch.equal(only_second[k], base[k])]
    assert changed and all(not torch.equal(only_first[k], only_second[k]) for k in changed)  # two different updates
    for key in changed:  # W_blend = W + 0.7 dW_first + 0.3 dW_second, whatever the ranks
        expected = base[key] + 0.7 * (only_first[key] - base[key]) + 0.3 * (only_second[key] - base[key])
        torch.testing.assert_close(blend[key], expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(SystemExit):  # linear needs equal ranks: one line that points to cat
        main(["--base_model", str(tiny_model_dir), "--adapter", str(first), "--adapter", str(second)]
             + ["--blend", "linear", "--merge", str(tmp_path / "linear")])  # fmt: skip
    assert "try --blend cat" in capsys.readouterr().err


@pytest.mark.slow
def test_the_shortest_clips_have_their_length_and_the_settings_name_the_base_used(trained_run, tmp_path, capsys):
    """TB8, UC20, UC18 (2026-12-07): 0.02 s (the range's lower end) and 0.03 s generate; generation_config.json holds
    every option of GenerateArguments (one definition) and the base taken from the adapter; no progress bar is drawn
    into output that is not a terminal (pytest's)."""
    for seconds in (0.02, 0.03):
        out = tmp_path / str(seconds)
        main(["--adapter", trained_run["output_dir"], "--prompt", "lofi", "--duration", str(seconds), "--out_dir",
              str(out)])  # fmt: skip
        assert sf.info(str(out / "0.wav")).frames == round(seconds * RATE)
    settings = json.loads((out / "generation_config.json").read_text())
    recorded = json.loads((Path(trained_run["output_dir"]) / "adapter_config.json").read_text())
    assert settings["base_model"] == recorded["base_model_name_or_path"] is not None
    assert set(settings) == {field.name for field in dataclasses.fields(GenerateArguments)} - {"debug"}
    assert "Loading weights" not in capsys.readouterr().err


def test_a_clip_shorter_than_the_delay_pattern_is_the_music_not_undelayed_tokens(tiny):
    """MusicGen applies the delay pattern only to sequences of 2K-1 steps or more: one frame is asked for as K-1."""
    model, processor = tiny
    assert generate_audio(model, processor, ["lofi"], 0.02).shape[-1] == HOP
    short = generate_long(model, processor, ["lofi"], 0.02)
    longer = generate_long(model, processor, ["lofi"], 3 * HOP / RATE)  # the same seed: the same first frame
    np.testing.assert_allclose(short, longer[..., :HOP], atol=1e-5)
