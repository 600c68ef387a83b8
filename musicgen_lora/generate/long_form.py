"""Songs longer than MusicGen's 30 s window, by windowed continuation (as audiocraft does), with melody conditioning
aligned to each window.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from ..logs import progress
from ..models.codec import encode_prompt
from ..models.spec import AudioSpec, new_tokens_for
from .render import evaluation_mode

MAX_WINDOW_SECONDS = 30.0  # MusicGen was trained on 30 s windows


@torch.no_grad()
def generate_long(
    model: torch.nn.Module,
    processor: Any,
    prompts: list[str],
    seconds: float,
    guidance_scale: float = 3.0,
    seed: int = 0,
    window_seconds: float = MAX_WINDOW_SECONDS,
    overlap_seconds: float = 10.0,
    melody: np.ndarray | None = None,
    do_sample: bool = True,
) -> np.ndarray:
    """One clip per prompt, of ``seconds`` (any length), by windowed continuation beyond ``window_seconds``.

    ::

        window 1: text                          -> [==========]            (window_seconds)
        window 2: text + last overlap of audio  ->        [ov|=======]     (adds window - overlap)
        window 3: ...                           ->                [ov|===] (only what is still missing)

    Args:
        model: MusicGen (any variant) or a ``PeftModel`` around it.
        processor: its processor.
        prompts: text prompts, generated together as one batch.
        seconds: length of each clip.
        guidance_scale: classifier-free guidance (1 disables it).
        seed: seeds the sampler once, before the first window.
        window_seconds: longest span generated at once (at most MusicGen's 30 s).
        overlap_seconds: audio that conditions each next window; must be shorter than the window.
        melody: melody models: mono audio at the feature extractor's rate; window k gets the chroma of the same time
            span (the melody repeats if shorter).
        do_sample: sampling (True) or greedy decoding.

    Returns:
        float32 audio (len(prompts), channels, round(seconds * sampling_rate)).
    """
    config = model.config
    spec = AudioSpec.of(model)
    rate, hop = spec.sampling_rate, spec.samples_per_frame  # 640 samples per codec frame at 32 kHz / 50 Hz
    num_delays = config.decoder.num_codebooks // config.decoder.audio_channels
    total_samples = round(seconds * rate)
    total_frames = math.ceil(total_samples / hop)
    window, overlap = _checked_window(spec, total_frames, window_seconds, overlap_seconds)
    if melody is not None:
        melody_rate = processor.feature_extractor.sampling_rate
        melody = np.resize(melody, max(len(melody), math.ceil(seconds * melody_rate) + 1))  # repeat if shorter

    device = next(model.parameters()).device
    pieces: list[np.ndarray] = []
    produced = 0  # frames generated so far
    bar = progress(
        total=round(seconds), desc="Generating (windowed continuation)", unit="s", disable=total_frames <= window
    )
    with evaluation_mode(model), bar:
        torch.manual_seed(seed)
        while produced < total_frames:
            prompt_frames = min(overlap, produced)  # 0 for the first window
            new_frames = min(window - prompt_frames, total_frames - produced)
            start = produced - prompt_frames  # the window's first frame
            inputs = _window_inputs(processor, prompts, melody, start * hop, (prompt_frames + new_frames) * hop, rate)
            kwargs = {k: v.to(device) for k, v in inputs.items()}
            if prompt_frames:
                prompt_audio = np.concatenate(pieces, axis=-1)[..., start * hop : produced * hop]
                kwargs["decoder_input_ids"] = encode_prompt(model.audio_encoder, prompt_audio).to(device)
            audio = model.generate(
                **kwargs,
                do_sample=do_sample,
                guidance_scale=guidance_scale,
                max_new_tokens=new_tokens_for(new_frames, num_delays),
            )  # (bsz, channels, (prompt_frames + new_frames) * hop): the prompt is decoded again in front
            # (a very short first window comes with a few frames more than asked: see new_tokens_for)
            audio = audio.float().cpu().numpy()[..., prompt_frames * hop : (prompt_frames + new_frames) * hop]
            if audio.shape[-1] != new_frames * hop:
                raise RuntimeError(f"generate() returned {audio.shape[-1]} new samples, expected {new_frames * hop}")
            pieces.append(audio)
            produced += new_frames
            bar.update(min(round(seconds), round(produced * hop / rate)) - bar.n)
    return np.concatenate(pieces, axis=-1)[..., :total_samples]


def _checked_window(
    spec: AudioSpec, total_frames: int, window_seconds: float, overlap_seconds: float
) -> tuple[int, int]:
    """The window and its overlap in frames.

    Raises:
        UserError: a window longer than MusicGen's 30 s (or empty); an overlap not shorter than the window when more
            than one window is needed.
    """
    window, overlap = spec.frames(window_seconds), spec.frames(overlap_seconds)
    if not 0 < window <= spec.frames(MAX_WINDOW_SECONDS):
        raise UserError(
            f"--window must be in (0, {MAX_WINDOW_SECONDS:g}] seconds (MusicGen's window), got {window_seconds}"
        )
    if total_frames > window and not 0 < overlap < window:
        raise UserError(
            f"--overlap must be between one frame and the window ({window_seconds:g} s), got {overlap_seconds}"
        )
    return window, overlap


def _window_inputs(
    processor: Any, prompts: list[str], melody: np.ndarray | None, start: int, length: int, rate: int
) -> dict[str, Any]:
    """The processor's inputs for one window: the prompts, and for a melody model the melody's segment spanning the
    window's ``length`` samples from sample ``start`` (at the model's ``rate``)."""
    if melody is None:
        return processor(text=prompts, padding=True, return_tensors="pt")
    melody_rate = processor.feature_extractor.sampling_rate
    first = start * melody_rate // rate
    segment = melody[first : first + length * melody_rate // rate]
    return processor(
        text=prompts, audio=[segment] * len(prompts), sampling_rate=melody_rate, padding=True, return_tensors="pt"
    )
