"""Tests for musicgen_lora.demo.tiny_codec: the tiny model's EnCodec has fitted codebooks, so varied audio encodes
to many codes, and encodes / decodes at the real codec's frame rate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from musicgen_lora.demo import tiny_codec

NUM_CODEBOOKS = 4
CODEBOOK_SIZE = 64
HOP = 640  # samples per codec frame: 32000 Hz / 50 Hz


def test_codebooks_are_initialised(tiny_model):
    model, _ = tiny_model
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
    clips = tiny_codec.synth_audio(np.random.default_rng(12345), 6, seconds / 2, sr).reshape(-1)
    t = np.arange(clips.shape[0]) / sr
    chord = sum(0.15 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))
    kick = np.exp(-(t % 0.5) * 30) * np.sin(2 * np.pi * 60 * t)
    return (0.6 * clips + chord + 0.3 * kick).astype(np.float32)


def test_varied_audio_uses_many_codes(tiny_model):
    model, processor = tiny_model
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
def test_encode_decode_lengths(tiny_model, num_samples):
    model, _ = tiny_model
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
