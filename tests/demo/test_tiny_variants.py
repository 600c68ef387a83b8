"""Tests for musicgen_lora.demo.tiny's stereo (facebook/musicgen-stereo-small) and melody (facebook/musicgen-melody)
variants: their classes, configs, codes, delay patterns, losses and generation."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from transformers import AutoProcessor
from transformers.utils import is_torchaudio_available

from musicgen_lora.demo import tiny_codec
from musicgen_lora.models.processors import load_processor

NUM_CODEBOOKS = 4
CODEBOOK_SIZE = 64
HOP = 640  # samples per codec frame: 32000 Hz / 50 Hz


# ============================================================================================== stereo variant
# facebook/musicgen-stereo-small: the same MusicgenForConditionalGeneration / MusicgenProcessor classes; the
# decoder has audio_channels=2 and 2 * 4 = 8 codebooks, the EnCodec is the mono 4-codebook one (each channel is
# encoded on its own) and the EnCodec feature extractor takes (2, samples) clips (feature_size=2).

STEREO_CODEBOOKS = 2 * NUM_CODEBOOKS


def _stereo_clip(seconds=1.0, sr=32000):
    """(2, samples): different material left and right."""
    left, right = tiny_codec.synth_audio(np.random.default_rng(7), 2, seconds, sr)
    return np.stack([left, right])


def test_stereo_loads_and_mirrors_musicgen_stereo_small(stereo_model_dir, stereo_model):
    model, processor = stereo_model
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
    record = json.loads((stereo_model_dir / "tiny_musicgen.json").read_text())
    assert record["variant"] == "stereo" and record["mirrors"] == "facebook/musicgen-stereo-small"
    assert sum(p.stat().st_size for p in stereo_model_dir.iterdir()) < 5 * 2**20


def test_stereo_codes_are_per_channel_encodings_interleaved(stereo_model):
    model, processor = stereo_model
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


def test_stereo_delay_pattern_delays_both_channels_of_codebook_k_by_k(stereo_model):
    model, _ = stereo_model
    start = torch.full((STEREO_CODEBOOKS, 1), CODEBOOK_SIZE)
    _, pattern = model.decoder.build_delay_pattern_mask(start, pad_token_id=CODEBOOK_SIZE, max_length=10)
    first_free = (pattern == -1).int().argmax(dim=1)  # first position to predict, per codebook row
    assert first_free.tolist() == [1, 1, 2, 2, 3, 3, 4, 4]  # 1 (start token) + delay k for L_k and R_k


def test_stereo_forward_with_labels_gives_finite_loss(stereo_model):
    model, processor = stereo_model
    inputs = processor(text=["lofi piano", "epic orchestral trailer with drums"], padding=True, return_tensors="pt")
    steps = 25
    labels = torch.randint(0, CODEBOOK_SIZE, (2, steps, STEREO_CODEBOOKS), generator=torch.Generator().manual_seed(0))
    labels[1, -5:] = -100
    with torch.no_grad():
        out = model(**inputs, labels=labels)
    assert torch.isfinite(out.loss)
    assert 0 < out.loss.item() < 2 * math.log(CODEBOOK_SIZE)
    assert out.logits.shape == (2 * STEREO_CODEBOOKS, steps, CODEBOOK_SIZE)


def test_stereo_generate_returns_two_channels(stereo_model):
    model, processor = stereo_model
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


def _tone(freq, seconds=2.0, sr=32000):
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_melody_loads_with_melody_classes(melody_model_dir, melody_model):
    model, processor = melody_model
    assert type(model).__name__ == "MusicgenMelodyForConditionalGeneration"
    assert type(processor).__name__ == "MusicgenMelodyProcessor"
    assert type(processor.tokenizer).__name__ == "T5Tokenizer"
    assert type(processor.feature_extractor).__name__ == "MusicgenMelodyFeatureExtractor"
    if is_torchaudio_available():
        assert type(AutoProcessor.from_pretrained(melody_model_dir)).__name__ == "MusicgenMelodyProcessor"
    else:  # transformers' melody processor needs torchaudio, for the real checkpoint too
        with pytest.raises(ImportError, match="torchaudio"):
            AutoProcessor.from_pretrained(melody_model_dir)
    # same feature-extractor config as facebook/musicgen-melody's preprocessor_config.json
    saved = json.loads((melody_model_dir / "processor_config.json").read_text())
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
    assert json.loads((melody_model_dir / "tiny_musicgen.json").read_text())["variant"] == "melody"
    assert sum(p.stat().st_size for p in melody_model_dir.iterdir()) < 5 * 2**20


def test_load_processor_reads_the_hub_layout_too(melody_model_dir, tmp_path):
    # facebook/musicgen-melody ships preprocessor_config.json (the feature extractor + processor_class)
    # instead of transformers 5's processor_config.json
    hub = tmp_path / "hub-layout"
    hub.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(melody_model_dir / name, hub / name)
    saved = json.loads((melody_model_dir / "processor_config.json").read_text())
    (hub / "preprocessor_config.json").write_text(
        json.dumps({**saved["feature_extractor"], "processor_class": saved["processor_class"]})
    )
    processor = load_processor(hub)
    assert type(processor).__name__ == "MusicgenMelodyProcessor"
    assert processor.feature_extractor.to_dict() == load_processor(melody_model_dir).feature_extractor.to_dict()


def test_melody_chroma_features(melody_model):
    _, processor = melody_model
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


def test_melody_forward_with_labels_gives_finite_loss(melody_model):
    model, processor = melody_model
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
    manual = (
        sum(
            torch.nn.functional.cross_entropy(logits[:, k].reshape(-1, CODEBOOK_SIZE), labels[..., k].reshape(-1))
            for k in range(NUM_CODEBOOKS)
        )
        / NUM_CODEBOOKS
    )
    torch.testing.assert_close(out.loss, manual)


def test_melody_generate_with_audio_and_with_text_only(melody_model):
    model, processor = melody_model
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


def test_variants_share_the_codec_of_the_same_seed(tiny_model, stereo_model, melody_model):
    mono_codec = tiny_model[0].audio_encoder.state_dict()
    for model, _ in (stereo_model, melody_model):
        codec = model.audio_encoder.state_dict()
        assert codec.keys() == mono_codec.keys()
        assert all(torch.equal(codec[k], mono_codec[k]) for k in codec)
