"""Inference: render prompts to audio with a (possibly LoRA-wrapped) MusicGen and write WAV files."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import ProcessorMixin

from ..audio.io import write_wav
from ..models.spec import AudioSpec, new_tokens_for


@torch.no_grad()
def generate_audio(
    model: torch.nn.Module,
    processor: ProcessorMixin,
    prompts: list[str],
    seconds: float,
    guidance_scale: float = 3.0,
    seed: int = 0,
    do_sample: bool = True,
    melody: np.ndarray | None = None,
) -> np.ndarray:
    """Generate one clip per prompt.

    Args:
        model: ``MusicgenForConditionalGeneration`` or a ``PeftModel`` around it.
        processor: the model's ``MusicgenProcessor``.
        prompts: text prompts.
        seconds: length of each clip.
        guidance_scale: classifier-free guidance (1 disables it).
        seed: seeds the sampler, so the same seed gives the same audio for the same weights.
        do_sample: sample (True) or greedy decoding.
        melody: melody models only: mono audio at the feature extractor's rate whose chroma conditions every clip.

    Returns:
        float32 audio of shape (len(prompts), channels, samples).
    """
    config = model.config
    if melody is None:
        inputs = processor(text=prompts, padding=True, return_tensors="pt")
    else:
        rate = processor.feature_extractor.sampling_rate
        inputs = processor(
            text=prompts, audio=[melody] * len(prompts), sampling_rate=rate, padding=True, return_tensors="pt"
        )
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    num_delays = config.decoder.num_codebooks // config.decoder.audio_channels
    spec = AudioSpec.of(model)
    frames = max(1, spec.frames(seconds))
    with evaluation_mode(model):
        torch.manual_seed(seed)
        audio = model.generate(
            **inputs,
            do_sample=do_sample,
            guidance_scale=guidance_scale,
            max_new_tokens=new_tokens_for(frames, num_delays),
        )  # (bsz, channels, samples); a very short clip comes with a few frames more (see new_tokens_for)
    return audio.float().cpu().numpy()[..., : frames * spec.samples_per_frame]


@contextlib.contextmanager
def evaluation_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``model`` in eval mode (no dropout) for a block, then back in the mode it was in (training calls render)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def write_samples(
    model: torch.nn.Module,
    processor: ProcessorMixin,
    prompts: list[str],
    out_dir: str | Path,
    seconds: float,
    guidance_scale: float = 3.0,
    seed: int = 0,
) -> list[Path]:
    """Render ``prompts`` and write ``out_dir/<index>.wav`` plus ``out_dir/prompts.txt``; returns the WAV paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    audio = generate_audio(model, processor, prompts, seconds, guidance_scale=guidance_scale, seed=seed)
    rate = model.config.audio_encoder.sampling_rate
    paths = []
    for index, clip in enumerate(audio):
        path = out_dir / f"{index}.wav"
        write_wav(path, clip, rate)
        paths.append(path)
    (out_dir / "prompts.txt").write_text("".join(f"{i}.wav\t{p}\n" for i, p in enumerate(prompts)), encoding="utf-8")
    return paths


@contextlib.contextmanager
def captured_codes(model: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record the codes ``generate()`` hands to EnCodec's ``decode`` (one (1, bsz, K, T) tensor per call)."""
    codec = model.audio_encoder
    original = codec.decode
    calls: list[torch.Tensor] = []

    def decode(audio_codes: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        calls.append(audio_codes.detach().cpu())
        return original(audio_codes, *args, **kwargs)

    codec.decode = decode
    try:
        yield calls
    finally:
        del codec.decode  # back to the class's method


def generated_codes(calls: list[torch.Tensor]) -> np.ndarray:
    """(bsz, K, T) codes of one generate() call; stereo (two decode calls) interleaved L0, R0, L1, R1, ..."""
    if len(calls) == 1:
        return calls[0][0].numpy()
    left, right = calls[0][0], calls[1][0]
    codes = torch.stack([left, right], dim=2)  # (bsz, K_per_channel, 2, T)
    return codes.reshape(left.shape[0], -1, left.shape[-1]).numpy()
