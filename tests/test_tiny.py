"""Tests for musicgen_lora.tiny: a tiny, locally built, randomly initialised MusicGen model folder."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from musicgen_lora import tiny

NUM_CODEBOOKS = 4
CODEBOOK_SIZE = 64
HOP = 640  # samples per codec frame: 32000 Hz / 50 Hz


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """The tiny model folder, built once per test session (seed 0)."""
    return tiny.save_tiny_musicgen(tmp_path_factory.mktemp("tiny") / "musicgen-tiny", seed=0)


@pytest.fixture(scope="session")
def loaded(tiny_dir):
    from transformers import AutoModelForTextToWaveform, AutoProcessor

    model = AutoModelForTextToWaveform.from_pretrained(tiny_dir).eval()
    processor = AutoProcessor.from_pretrained(tiny_dir)
    return model, processor


def _snapshot(folder):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------- layout / loading


def test_folder_contents_and_size(tiny_dir):
    names = {p.name for p in tiny_dir.iterdir()}
    for required in (
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "processor_config.json",
    ):
        assert required in names
    total = sum(p.stat().st_size for p in tiny_dir.iterdir())
    assert total < 5 * 2**20, total
    # nothing left over from the atomic write next to the folder
    assert [p.name for p in tiny_dir.parent.iterdir()] == [tiny_dir.name]


def test_loads_with_auto_classes(loaded):
    model, processor = loaded
    assert type(model).__name__ == "MusicgenForConditionalGeneration"
    assert type(processor).__name__ == "MusicgenProcessor"
    # transformers 5: T5Tokenizer is the tokenizers-backed class, T5TokenizerFast an alias of it
    assert type(processor.tokenizer).__name__ == "T5Tokenizer"
    assert type(processor.feature_extractor).__name__ == "EncodecFeatureExtractor"
    assert processor.feature_extractor.sampling_rate == 32000
    assert processor.feature_extractor.feature_size == 1


def test_config_matches_real_musicgen_conventions(loaded):
    model, _ = loaded
    cfg = model.config
    assert cfg.sampling_rate == 32000
    assert cfg.audio_encoder.frame_rate == 50
    assert cfg.audio_encoder.hop_length == HOP
    assert cfg.audio_encoder.num_quantizers == NUM_CODEBOOKS
    assert cfg.audio_encoder.codebook_size == CODEBOOK_SIZE
    assert cfg.audio_encoder.chunk_length_s is None  # generate()/forward() need exactly one codec frame
    assert cfg.decoder.num_codebooks == NUM_CODEBOOKS
    assert cfg.decoder.audio_channels == 1
    assert cfg.decoder.vocab_size == CODEBOOK_SIZE
    assert cfg.decoder.max_position_embeddings == 2048
    # special ids = codebook_size, like 2048 for the real 2048-code checkpoints
    assert cfg.decoder.pad_token_id == cfg.decoder.bos_token_id == CODEBOOK_SIZE
    assert cfg.decoder.decoder_start_token_id == CODEBOOK_SIZE
    assert cfg.decoder_start_token_id == cfg.pad_token_id == CODEBOOK_SIZE
    gen = model.generation_config
    assert gen.decoder_start_token_id == gen.pad_token_id == gen.bos_token_id == CODEBOOK_SIZE
    assert gen.do_sample is True
    assert gen.guidance_scale == 3.0
    assert gen.max_length == 1500


def test_tokenizer_is_t5_like(loaded):
    model, processor = loaded
    tok = processor.tokenizer
    assert (tok.pad_token, tok.eos_token, tok.unk_token) == ("<pad>", "</s>", "<unk>")
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert 500 <= len(tok) <= 1000
    assert model.config.text_encoder.vocab_size >= len(tok)
    for text in ["lofi piano", "Upbeat 80s synth-pop in C# major at 128 bpm", "Zxqv café 🎵 naïve!!", ""]:
        ids = tok(text).input_ids
        assert ids[-1] == tok.eos_token_id
        assert max(ids) < len(tok)
    # unknown characters map to <unk> (no byte fallback), never raise
    assert tok.unk_token_id in tok("🎵").input_ids
    assert tok.decode(tok("lofi piano").input_ids, skip_special_tokens=True) == "lofi piano"
    batch = processor(text=["lofi piano", "epic orchestral trailer with huge drums"], padding=True, return_tensors="pt")
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["input_ids"][0, -1] == tok.pad_token_id


# ---------------------------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_weights(loaded):
    model, _ = loaded
    rebuilt, _ = tiny.build_tiny_musicgen(seed=0)
    a, b = _state(model), _state(rebuilt)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == []


# ---------------------------------------------------------------------------------------------- codec


def test_codebooks_are_initialised(loaded):
    model, _ = loaded
    layers = model.audio_encoder.quantizer.layers
    assert len(layers) == NUM_CODEBOOKS
    for layer in layers:
        book = layer.codebook
        assert bool(book.inited.item())
        assert torch.equal(book.embed, book.embed_avg)
        assert book.embed.shape == (CODEBOOK_SIZE, model.config.audio_encoder.codebook_dim)
        assert torch.unique(book.embed, dim=0).shape[0] == CODEBOOK_SIZE  # all entries distinct
        assert book.cluster_size.sum() > 0


def _music_like(seconds=4.0, sr=32000):
    """Audio unseen during codebook fitting: other synthetic clips + a chord with a drum-ish pulse."""
    clips = tiny.synth_audio(np.random.default_rng(12345), 6, seconds / 2, sr).reshape(-1)
    t = np.arange(clips.shape[0]) / sr
    chord = sum(0.15 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))
    kick = np.exp(-(t % 0.5) * 30) * np.sin(2 * np.pi * 60 * t)
    return (0.6 * clips + chord + 0.3 * kick).astype(np.float32)


def test_varied_audio_uses_many_codes(loaded):
    model, processor = loaded
    audio = _music_like()
    inputs = processor(audio=audio, sampling_rate=32000, return_tensors="pt")
    with torch.no_grad():
        codes = model.audio_encoder.encode(inputs["input_values"]).audio_codes
    assert codes.shape == (1, 1, NUM_CODEBOOKS, math.ceil(audio.shape[0] / HOP))
    assert int(codes.min()) >= 0 and int(codes.max()) < CODEBOOK_SIZE
    distinct = [len(torch.unique(codes[0, 0, q])) for q in range(NUM_CODEBOOKS)]
    assert distinct[0] >= 16, distinct
    assert min(distinct) >= 8, distinct


@pytest.mark.parametrize("num_samples", [640, 641, 12345, 32000, 32001])
def test_encode_decode_lengths(loaded, num_samples):
    model, _ = loaded
    codec = model.audio_encoder
    x = torch.from_numpy(np.random.default_rng(num_samples).standard_normal(num_samples).astype(np.float32))
    x = 0.1 * x[None, None, :]
    with torch.no_grad():
        enc = codec.encode(x)
        # EnCodec (non-causal, no chunking) pads to whole frames: ceil(samples / 640) frames ...
        frames = math.ceil(num_samples / HOP)
        assert enc.audio_codes.shape == (1, 1, NUM_CODEBOOKS, frames)
        # ... and decode() returns frames * 640 samples, trimmed only when a padding_mask is given
        dec = codec.decode(enc.audio_codes, enc.audio_scales).audio_values
        assert dec.shape == (1, 1, frames * HOP)
        trimmed = codec.decode(enc.audio_codes, enc.audio_scales, padding_mask=torch.ones_like(x)).audio_values
        assert trimmed.shape == (1, 1, num_samples)
    assert torch.isfinite(dec).all()


# ---------------------------------------------------------------------------------------------- decoder / generate


def test_forward_with_labels_gives_finite_loss(loaded):
    model, processor = loaded
    inputs = processor(text=["lofi piano", "epic orchestral trailer with drums"], padding=True, return_tensors="pt")
    steps = 25
    labels = torch.randint(0, CODEBOOK_SIZE, (2, steps, NUM_CODEBOOKS), generator=torch.Generator().manual_seed(0))
    labels[1, -5:] = -100  # ignored positions
    # labels are used as given (no delay pattern is applied); decoder inputs = labels shifted right with
    # config.decoder.decoder_start_token_id, hence that attribute must be set
    with torch.no_grad():
        out = model(**inputs, labels=labels)
    assert torch.isfinite(out.loss)
    assert 0 < out.loss.item() < 2 * math.log(CODEBOOK_SIZE)
    assert out.logits.shape == (2 * NUM_CODEBOOKS, steps, CODEBOOK_SIZE)  # (bsz * codebooks, steps, vocab)


def test_generate_returns_audio(loaded):
    model, processor = loaded
    inputs = processor(text=["lofi piano", "happy jazz with saxophone"], padding=True, return_tensors="pt")
    torch.manual_seed(0)
    n = 64
    with torch.no_grad():
        audio = model.generate(**inputs, do_sample=True, guidance_scale=3, max_new_tokens=n)
    # generate() returns decoded audio (bsz, channels, samples), not codes. Sequences are
    # 1 (start token) + n long and the delay pattern shifts codebook k by k steps, so after the padded
    # positions are filtered out each codebook keeps n - (num_codebooks - 1) frames: (64 - 3) * 640 samples.
    assert audio.shape == (2, 1, (n - NUM_CODEBOOKS + 1) * HOP)
    assert torch.isfinite(audio).all()
    # quirk: the delay pattern is only built when 1 + n >= 2 * num_codebooks - 1 (n >= 6 here); for shorter
    # runs nothing is delayed and all n frames are decoded
    with torch.no_grad():
        short = model.generate(**inputs, do_sample=True, guidance_scale=3, max_new_tokens=5)
    assert short.shape == (2, 1, 5 * HOP)
    # processor.batch_decode strips nothing without a padding mask and gives one (channels, samples) array each
    decoded = processor.batch_decode(audio)
    assert len(decoded) == 2 and decoded[0].shape == (1, audio.shape[-1])


# ---------------------------------------------------------------------------------------------- save / CLI


def test_second_save_is_idempotent_and_force_rebuilds(tiny_dir, tmp_path, capsys, loaded):
    from transformers import AutoModelForTextToWaveform

    model_dir = tmp_path / "copy"
    shutil.copytree(tiny_dir, model_dir)
    before = _snapshot(model_dir)

    assert tiny.save_tiny_musicgen(model_dir) == model_dir
    assert tiny.main([str(model_dir), "--seed", "3"]) == model_dir
    assert "exists" in capsys.readouterr().out
    assert _snapshot(model_dir) == before  # untouched: same bytes and mtimes

    assert tiny.main([str(model_dir), "--force", "--seed", "1"]) == model_dir
    assert json.loads((model_dir / "tiny_musicgen.json").read_text())["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]  # no temp / old folders left
    other = _state(AutoModelForTextToWaveform.from_pretrained(model_dir))
    seed0 = _state(loaded[0])
    assert other.keys() == seed0.keys()
    assert not torch.equal(other["decoder.lm_heads.0.weight"], seed0["decoder.lm_heads.0.weight"])
    codebook = "audio_encoder.quantizer.layers.0.codebook.embed"
    assert not torch.equal(other[codebook], seed0[codebook])


def test_non_model_folder_is_not_clobbered(tmp_path):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        tiny.save_tiny_musicgen(target)
    assert (target / "notes.txt").read_text() == "keep me"


class _FailingProcessor:
    def save_pretrained(self, path):
        raise KeyboardInterrupt  # simulate an interrupted build half-way through writing


class _PartialModel:
    def save_pretrained(self, path):
        (path / "config.json").write_text("{}")


def test_interrupted_build_leaves_no_half_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(tiny, "build_tiny_musicgen", lambda seed=0: (_PartialModel(), _FailingProcessor()))
    with pytest.raises(KeyboardInterrupt):
        tiny.save_tiny_musicgen(tmp_path / "fresh")
    assert list(tmp_path.iterdir()) == []

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "config.json").write_text('{"old": true}')
    with pytest.raises(KeyboardInterrupt):
        tiny.save_tiny_musicgen(existing, force=True)
    assert (existing / "config.json").read_text() == '{"old": true}'  # previous folder restored
    assert [p.name for p in tmp_path.iterdir()] == ["existing"]


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exc:
        tiny.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "OUT_DIR" in out and "--seed" in out and "--force" in out
