"""Tests for musicgen_lora.tiny: a tiny, locally built, randomly initialised MusicGen model folder.

The mono variant (facebook/musicgen-small's structure) is tested first, then the stereo
(facebook/musicgen-stereo-small) and melody (facebook/musicgen-melody) variants, each built once per module.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from musicgen_lora.demo import tiny
from musicgen_lora.models.processors import load_processor

NUM_CODEBOOKS = 4
CODEBOOK_SIZE = 64
HOP = 640  # samples per codec frame: 32000 Hz / 50 Hz


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One intra-op thread for this module's tiny tensors: faster, and on a shared 2-core machine it avoids
    OpenMP spin-waits that made these tests several times slower (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """The tiny mono model folder, built once for this module (seed 0)."""
    return tiny.save_tiny_musicgen(tmp_path_factory.mktemp("tiny") / "musicgen-tiny", seed=0)


@pytest.fixture(scope="module")
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
    monkeypatch.setattr(
        tiny, "build_tiny_musicgen", lambda seed=0, variant="mono": (_PartialModel(), _FailingProcessor())
    )
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
    assert "--variant" in out and "{mono,stereo,melody}" in out


def test_unknown_variant_and_variant_mismatch_are_refused(tiny_dir, tmp_path):
    with pytest.raises(ValueError, match="variant"):
        tiny.save_tiny_musicgen(tmp_path / "x", variant="surround")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SystemExit):
        tiny.main([str(tmp_path / "x"), "--variant", "surround"])
    # a folder built here for another variant is not silently handed back as the requested one
    model_dir = tmp_path / "mono"
    shutil.copytree(tiny_dir, model_dir)
    with pytest.raises(FileExistsError, match="'mono', not 'stereo'"):
        tiny.main([str(model_dir), "--variant", "stereo"])


# ============================================================================================== stereo variant
# facebook/musicgen-stereo-small: the same MusicgenForConditionalGeneration / MusicgenProcessor classes; the
# decoder has audio_channels=2 and 2 * 4 = 8 codebooks, the EnCodec is the mono 4-codebook one (each channel is
# encoded on its own) and the EnCodec feature extractor takes (2, samples) clips (feature_size=2).

STEREO_CODEBOOKS = 2 * NUM_CODEBOOKS


@pytest.fixture(scope="module")
def stereo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-stereo") / "musicgen-stereo-tiny"
    return tiny.main([str(out), "--variant", "stereo"])  # through the CLI


@pytest.fixture(scope="module")
def stereo(stereo_dir):
    from transformers import AutoModelForTextToWaveform, AutoProcessor

    return AutoModelForTextToWaveform.from_pretrained(stereo_dir).eval(), AutoProcessor.from_pretrained(stereo_dir)


def _stereo_clip(seconds=1.0, sr=32000):
    """(2, samples): different material left and right."""
    left, right = tiny.synth_audio(np.random.default_rng(7), 2, seconds, sr)
    return np.stack([left, right])


def test_stereo_loads_and_mirrors_musicgen_stereo_small(stereo_dir, stereo):
    model, processor = stereo
    assert type(model).__name__ == "MusicgenForConditionalGeneration"
    assert type(processor).__name__ == "MusicgenProcessor"
    fe = processor.feature_extractor
    assert type(fe).__name__ == "EncodecFeatureExtractor"
    assert (fe.feature_size, fe.sampling_rate, fe.padding_side) == (2, 32000, "left")  # as the real stereo ones
    cfg = model.config
    assert cfg.decoder.audio_channels == 2
    assert cfg.decoder.num_codebooks == STEREO_CODEBOOKS
    assert cfg.audio_encoder.audio_channels == 1  # the codec is mono: facebook/encodec_32khz
    assert cfg.audio_encoder.num_quantizers == NUM_CODEBOOKS
    assert cfg.decoder.pad_token_id == cfg.decoder.bos_token_id == cfg.decoder.decoder_start_token_id == CODEBOOK_SIZE
    assert model.generation_config.decoder_start_token_id == model.generation_config.pad_token_id == CODEBOOK_SIZE
    assert len(model.decoder.lm_heads) == len(model.decoder.model.decoder.embed_tokens) == STEREO_CODEBOOKS
    record = json.loads((stereo_dir / "tiny_musicgen.json").read_text())
    assert record["variant"] == "stereo" and record["mirrors"] == "facebook/musicgen-stereo-small"
    assert sum(p.stat().st_size for p in stereo_dir.iterdir()) < 5 * 2**20


def test_stereo_codes_are_per_channel_encodings_interleaved(stereo):
    model, processor = stereo
    clip = _stereo_clip()
    inputs = processor(audio=[clip, clip[:, :20000]], sampling_rate=32000, return_tensors="pt")
    values = inputs["input_values"]
    # (bsz, 2, samples), channel 0 = left; left padding: the shorter clip ends at the right edge
    assert values.shape == (2, 2, 32000)
    assert torch.equal(values[0], torch.from_numpy(clip))
    assert torch.equal(values[1, :, -20000:], torch.from_numpy(clip[:, :20000]))
    assert inputs["padding_mask"][1, :12000].sum() == 0 and bool(inputs["padding_mask"][1, 12000:].all())

    codec = model.audio_encoder
    with torch.no_grad():
        # EnCodec is mono: it takes one channel at a time, (bsz, 1, samples) -> codes (1, bsz, 4, frames)
        with pytest.raises(RuntimeError):
            codec.encode(values)
        left = codec.encode(values[:, :1]).audio_codes
        right = codec.encode(values[:, 1:]).audio_codes
        frames = 32000 // HOP
        assert left.shape == right.shape == (1, 2, NUM_CODEBOOKS, frames)
        assert not torch.equal(left[0, 0], right[0, 0])
        # Stereo layout (what MusicgenForConditionalGeneration.generate builds from a stereo prompt and what
        # the 8 decoder codebooks / lm_heads mean): codebook 2k = left channel's EnCodec codebook k, 2k + 1 =
        # right channel's codebook k, i.e. [L0, R0, L1, R1, L2, R2, L3, R3]. Training labels are these codes
        # as (bsz, frames, 8) in that order.
        codes = torch.empty((1, 2, STEREO_CODEBOOKS, frames), dtype=left.dtype)
        codes[:, :, 0::2] = left
        codes[:, :, 1::2] = right
        assert torch.equal(codes[0, :, 2], left[0, :, 1]) and torch.equal(codes[0, :, 5], right[0, :, 2])
        labels = codes[0].transpose(1, 2)  # (bsz, frames, 8)
        assert labels.shape == (2, frames, STEREO_CODEBOOKS)
        # generate() decodes the even codebooks as the left channel and the odd ones as the right channel
        no_scales = [None, None]  # EnCodec without normalisation has no per-clip scales
        dec_left = codec.decode(codes[:, :, 0::2], no_scales).audio_values
        dec_right = codec.decode(codes[:, :, 1::2], no_scales).audio_values
        assert dec_left.shape == dec_right.shape == (2, 1, frames * HOP)
        assert torch.equal(dec_left, codec.decode(left, no_scales).audio_values)
        assert torch.equal(dec_right, codec.decode(right, no_scales).audio_values)
        out = model(**processor(text=["lofi", "rock"], padding=True, return_tensors="pt"), labels=labels)
    assert torch.isfinite(out.loss)


def test_stereo_delay_pattern_delays_both_channels_of_codebook_k_by_k(stereo):
    model, _ = stereo
    start = torch.full((STEREO_CODEBOOKS, 1), CODEBOOK_SIZE)
    _, pattern = model.decoder.build_delay_pattern_mask(start, pad_token_id=CODEBOOK_SIZE, max_length=10)
    first_free = (pattern == -1).int().argmax(dim=1)  # first position to predict, per codebook row
    assert first_free.tolist() == [1, 1, 2, 2, 3, 3, 4, 4]  # 1 (start token) + delay k for L_k and R_k


def test_stereo_forward_with_labels_gives_finite_loss(stereo):
    model, processor = stereo
    inputs = processor(text=["lofi piano", "epic orchestral trailer with drums"], padding=True, return_tensors="pt")
    steps = 25
    labels = torch.randint(0, CODEBOOK_SIZE, (2, steps, STEREO_CODEBOOKS), generator=torch.Generator().manual_seed(0))
    labels[1, -5:] = -100
    with torch.no_grad():
        out = model(**inputs, labels=labels)
    assert torch.isfinite(out.loss)
    assert 0 < out.loss.item() < 2 * math.log(CODEBOOK_SIZE)
    assert out.logits.shape == (2 * STEREO_CODEBOOKS, steps, CODEBOOK_SIZE)


def test_stereo_generate_returns_two_channels(stereo):
    model, processor = stereo
    inputs = processor(text=["lofi piano", "happy jazz with saxophone"], padding=True, return_tensors="pt")
    torch.manual_seed(0)
    n = 20
    with torch.no_grad():
        audio = model.generate(**inputs, do_sample=True, guidance_scale=3, max_new_tokens=n)
        # the delay pattern is per channel: 4 codebooks deep, so n - 3 frames survive as in mono
        assert audio.shape == (2, 2, (n - NUM_CODEBOOKS + 1) * HOP)
        assert torch.isfinite(audio).all()
        assert not torch.equal(audio[:, 0], audio[:, 1])
        # a stereo audio prompt (input_values (1, 2, samples)) is encoded per channel and continued
        prompted = model.generate(
            **processor(audio=[_stereo_clip()], text=["lofi"], sampling_rate=32000, return_tensors="pt"),
            guidance_scale=3,
            max_new_tokens=10,
        )
    assert prompted.shape == (1, 2, (32000 // HOP + 10 - NUM_CODEBOOKS + 1) * HOP)


# ============================================================================================== melody variant
# facebook/musicgen-melody: MusicgenMelodyForConditionalGeneration + MusicgenMelodyProcessor (T5 tokenizer +
# MusicgenMelodyFeatureExtractor: one-hot 12-bin chroma, 4096-sample hop, at most 30 s -> 235 frames). The
# text and chroma conditions are not cross-attended: they are projected to the decoder width and PREPENDED to
# the decoder inputs ([chroma (tiled/truncated to chroma_length=235), text tokens, audio codes]).

CHROMA_LENGTH = 235


@pytest.fixture(scope="module")
def melody_dir(tmp_path_factory):
    return tiny.save_tiny_musicgen(tmp_path_factory.mktemp("tiny-melody") / "musicgen-melody-tiny", variant="melody")


@pytest.fixture(scope="module")
def melody(melody_dir):
    from transformers import AutoModelForTextToWaveform

    # load_processor == AutoProcessor.from_pretrained, which needs torchaudio for melody processors
    return AutoModelForTextToWaveform.from_pretrained(melody_dir).eval(), load_processor(melody_dir)


def _tone(freq, seconds=2.0, sr=32000):
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_melody_loads_with_melody_classes(melody_dir, melody):
    from transformers import AutoProcessor
    from transformers.utils import is_torchaudio_available

    model, processor = melody
    assert type(model).__name__ == "MusicgenMelodyForConditionalGeneration"
    assert type(processor).__name__ == "MusicgenMelodyProcessor"
    assert type(processor.tokenizer).__name__ == "T5Tokenizer"
    assert type(processor.feature_extractor).__name__ == "MusicgenMelodyFeatureExtractor"
    if is_torchaudio_available():
        assert type(AutoProcessor.from_pretrained(melody_dir)).__name__ == "MusicgenMelodyProcessor"
    else:  # transformers' melody processor needs torchaudio, for the real checkpoint too
        with pytest.raises(ImportError, match="torchaudio"):
            AutoProcessor.from_pretrained(melody_dir)
    # same feature-extractor config as facebook/musicgen-melody's preprocessor_config.json
    saved = json.loads((melody_dir / "processor_config.json").read_text())
    assert saved["processor_class"] == "MusicgenMelodyProcessor"
    assert saved["feature_extractor"] == {
        "chunk_length": 30,
        "feature_extractor_type": "MusicgenMelodyFeatureExtractor",
        "feature_size": 12,
        "hop_length": 4096,
        "n_fft": 16384,
        "n_samples": 960000,
        "padding_side": "right",
        "padding_value": 0.0,
        "return_attention_mask": False,
        "sampling_rate": 32000,
        "stem_indices": [3, 2],
    }
    cfg = model.config
    assert (cfg.num_chroma, cfg.chroma_length, cfg.sampling_rate) == (12, CHROMA_LENGTH, 32000)
    assert (cfg.decoder.num_codebooks, cfg.decoder.audio_channels) == (NUM_CODEBOOKS, 1)
    # forward(labels=...) shifts the labels with decoder.bos_token_id (not decoder_start_token_id)
    assert cfg.decoder.bos_token_id == cfg.decoder.pad_token_id == CODEBOOK_SIZE
    assert model.generation_config.decoder_start_token_id == model.generation_config.pad_token_id == CODEBOOK_SIZE
    assert cfg.audio_encoder.audio_channels == 1 and cfg.audio_encoder.num_quantizers == NUM_CODEBOOKS
    assert json.loads((melody_dir / "tiny_musicgen.json").read_text())["variant"] == "melody"
    assert sum(p.stat().st_size for p in melody_dir.iterdir()) < 5 * 2**20


def test_load_processor_reads_the_hub_layout_too(melody_dir, tmp_path):
    # facebook/musicgen-melody ships preprocessor_config.json (the feature extractor + processor_class)
    # instead of transformers 5's processor_config.json
    hub = tmp_path / "hub-layout"
    hub.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(melody_dir / name, hub / name)
    saved = json.loads((melody_dir / "processor_config.json").read_text())
    (hub / "preprocessor_config.json").write_text(
        json.dumps({**saved["feature_extractor"], "processor_class": saved["processor_class"]})
    )
    processor = load_processor(hub)
    assert type(processor).__name__ == "MusicgenMelodyProcessor"
    assert processor.feature_extractor.to_dict() == load_processor(melody_dir).feature_extractor.to_dict()


def test_melody_chroma_features(melody):
    _, processor = melody
    # 32 kHz audio (other rates are resampled, which needs torchaudio); a batch is padded to the longest clip
    clips = [_tone(440.0), _tone(329.63, seconds=1.0)]  # A4, E4
    feats = processor(audio=clips, sampling_rate=32000, return_tensors="pt")["input_features"]
    frames = 1 + 64000 // 4096  # centred STFT frames of the longest clip
    assert feats.shape == (2, frames, 12) and feats.dtype == torch.float32
    assert bool(((feats == 0) | (feats == 1)).all()) and bool((feats.sum(-1) == 1).all())  # one-hot per frame
    assert set(feats[0].argmax(-1).tolist()) == {9}  # bins start at C: A = 9
    assert set(feats[1, :4].argmax(-1).tolist()) == {4}  # E = 4 (the padded tail is silence)
    # longer than 30 s is truncated to 235 frames = config.chroma_length
    long = processor(audio=np.zeros(31 * 32000, np.float32), sampling_rate=32000, return_tensors="pt")
    assert long["input_features"].shape == (1, CHROMA_LENGTH, 12)


def test_melody_forward_with_labels_gives_finite_loss(melody):
    model, processor = melody
    texts = ["lofi piano", "epic orchestral trailer with drums"]
    audio = [_tone(440.0, 3.0), _tone(261.63, 3.0)]
    with_audio = processor(audio=audio, text=texts, sampling_rate=32000, padding=True, return_tensors="pt")
    text_only = processor(text=texts, padding=True, return_tensors="pt")
    assert with_audio["input_features"].shape == (2, 1 + 96000 // 4096, 12)
    steps = 25
    labels = torch.randint(0, CODEBOOK_SIZE, (2, steps, NUM_CODEBOOKS), generator=torch.Generator().manual_seed(0))
    labels[1, -5:] = -100
    text_len = text_only["input_ids"].shape[1]
    with torch.no_grad():
        out = model(**with_audio, labels=labels)
        out_text = model(**text_only, labels=labels)
        out_chroma = model(input_features=with_audio["input_features"], labels=labels)
        # text without input_features == text with the null chroma (one-hot bin 0 in every frame)
        null = torch.zeros_like(with_audio["input_features"])
        null[..., 0] = 1
        out_null = model(**text_only, input_features=null, labels=labels)
    for o in (out, out_text, out_chroma):
        assert torch.isfinite(o.loss) and 0 < o.loss.item() < 2 * math.log(CODEBOOK_SIZE)
    # logits cover the conditioning prefix too: (bsz * codebooks, 235 chroma + text tokens + steps, vocab)
    prefix = CHROMA_LENGTH + text_len
    assert out.logits.shape == out_text.logits.shape == (2 * NUM_CODEBOOKS, prefix + steps, CODEBOOK_SIZE)
    assert out_chroma.logits.shape == (2 * NUM_CODEBOOKS, CHROMA_LENGTH + steps, CODEBOOK_SIZE)
    torch.testing.assert_close(out_null.logits, out_text.logits)
    # the loss is the mean over codebooks of the cross-entropy of the LAST `steps` positions
    logits = out.logits.reshape(2, NUM_CODEBOOKS, -1, CODEBOOK_SIZE)[:, :, -steps:]
    manual = sum(
        torch.nn.functional.cross_entropy(logits[:, k].reshape(-1, CODEBOOK_SIZE), labels[..., k].reshape(-1))
        for k in range(NUM_CODEBOOKS)
    ) / NUM_CODEBOOKS
    torch.testing.assert_close(out.loss, manual)


def test_melody_generate_with_audio_and_with_text_only(melody):
    model, processor = melody
    texts = ["lofi piano", "happy jazz with saxophone"]
    n = 12
    conditioned = processor(
        audio=[_tone(440.0), _tone(392.0)], text=texts, sampling_rate=32000, padding=True, return_tensors="pt"
    )
    torch.manual_seed(0)
    with torch.no_grad():
        with_audio = model.generate(**conditioned, do_sample=True, guidance_scale=3, max_new_tokens=n)
        text_only = model.generate(
            **processor(text=texts, padding=True, return_tensors="pt"), guidance_scale=3, max_new_tokens=n
        )
    for audio in (with_audio, text_only):
        assert audio.shape == (2, 1, (n - NUM_CODEBOOKS + 1) * HOP)
        assert torch.isfinite(audio).all()


def test_variants_share_the_codec_of_the_same_seed(loaded, stereo, melody):
    mono_codec = loaded[0].audio_encoder.state_dict()
    for model, _ in (stereo, melody):
        codec = model.audio_encoder.state_dict()
        assert codec.keys() == mono_codec.keys()
        assert all(torch.equal(codec[k], mono_codec[k]) for k in codec)
