"""Fixtures of the demo tests: one torch thread per module, and the tiny models of ``tests/conftest.py`` (built once
per session) loaded once per module."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForTextToWaveform, AutoProcessor

from musicgen_lora.models.processors import load_processor


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread for the tiny tensors of these tests: faster, and on a shared 2-core machine it avoids
    OpenMP spin-waits that made them several times slower (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    """(model, processor) of the tiny mono MusicGen, in eval mode."""
    return AutoModelForTextToWaveform.from_pretrained(tiny_model_dir).eval(), AutoProcessor.from_pretrained(
        tiny_model_dir
    )


@pytest.fixture(scope="module")
def stereo_model(stereo_model_dir):
    """(model, processor) of the tiny stereo MusicGen, in eval mode."""
    return AutoModelForTextToWaveform.from_pretrained(stereo_model_dir).eval(), AutoProcessor.from_pretrained(
        stereo_model_dir
    )


@pytest.fixture(scope="module")
def melody_model(melody_model_dir):
    """(model, processor) of the tiny melody MusicGen, in eval mode; load_processor == AutoProcessor.from_pretrained,
    which needs torchaudio for melody processors."""
    return AutoModelForTextToWaveform.from_pretrained(melody_model_dir).eval(), load_processor(melody_model_dir)
