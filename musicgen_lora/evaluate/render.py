"""Rendering: every model renders the same grid of prompts x samples, in batches that mix prompts and samples
(``--generation_batch_size`` clips per ``generate()`` call), each batch with its own seed, the same for every model;
each clip is written (WAV and spectrogram) and measured."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..audio.io import write_wav
from ..generate.render import captured_codes, generate_audio, generated_codes
from ..models.codec import decode_codes
from .context import EvalContext
from .frechet import ClipStats, per_clip_distances
from .metrics import adherence, audio_health
from .models import ModelSpec, code_latents
from .spectrogram import write_spectrogram_png


@dataclass
class Clip:
    """One rendered clip: its record (a line of comparison_results.jsonl), its frame embeddings for the Fréchet
    distances, and its mean descriptor for the diversity."""

    record: dict[str, Any]
    embeddings: dict[str, np.ndarray]
    vector: np.ndarray


def grid_batches(prompts: int, samples: int, batch_size: int) -> list[list[tuple[int, int]]]:
    """The (prompt, sample) grid in prompt-major order, cut into batches of ``batch_size``."""
    grid = [(p, s) for p in range(prompts) for s in range(samples)]
    return [grid[i : i + batch_size] for i in range(0, len(grid), batch_size)]


def render_model(context: EvalContext, model: torch.nn.Module, spec: ModelSpec, bar: Any) -> list[Clip]:
    """Render and measure every clip of the grid with ``model`` (the progress bar advances by prompts done)."""
    settings = context.settings
    folder = context.out / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    batches = grid_batches(len(settings.prompts), settings.num_samples, settings.generation_batch_size)
    clips: list[Clip] = []
    done = 0  # prompts whose samples are all rendered
    bar.set_postfix_str(spec.name)
    for number, batch in enumerate(batches):
        seed = settings.seed + number
        with captured_codes(model) as calls:
            audio = generate_audio(
                model,
                context.processor,
                [settings.prompts[p].text for p, _ in batch],
                settings.duration,
                guidance_scale=settings.guidance_scale,
                seed=seed,
            )  # (batch, channels, samples)
        codes = generated_codes(calls)  # (batch, K, T)
        texts = [settings.prompts[p].text for p, _ in batch]
        clap_scores = context.clap.scores(texts, list(audio), context.spec.sampling_rate) if context.clap else None
        for row, (prompt, sample) in enumerate(batch):
            clip = _measure(context, spec, folder, prompt, sample, audio[row], codes[row])
            clip.record.update(seed=seed, batch=number, batch_row=row)
            if clap_scores is not None:
                clip.record["clap_score"] = clap_scores[row]
            clips.append(clip)
        bar.update(len(clips) // settings.num_samples - done)
        done = len(clips) // settings.num_samples
    _per_song_fad(context, clips)
    return clips


def _measure(
    context: EvalContext, spec: ModelSpec, folder: Path, prompt_index: int, sample: int, audio: np.ndarray,
    codes: np.ndarray,
) -> Clip:  # fmt: skip
    """Write one clip and its spectrogram, and measure it."""
    settings, sr = context.settings, context.spec.sampling_rate
    prompt = settings.prompts[prompt_index]
    clean = np.nan_to_num(audio)
    wav = folder / f"{prompt_index}-{sample}.wav"
    png = wav.with_suffix(".png")
    write_wav(wav, clean, sr)
    write_spectrogram_png(png, audio, sr)
    record: dict[str, Any] = {
        "model": spec.name,
        "model_path": spec.path,
        "prompt_index": prompt_index,
        "prompt": prompt.text,
        "sample": sample,
        "path": wav.relative_to(context.out).as_posix(),
        "spectrogram": png.relative_to(context.out).as_posix(),
    }
    record.update(audio_health(audio, sr, settings.duration))
    record.update(adherence(clean, sr, prompt))
    if context.checker is not None:
        record.update(_memorisation_fields(context, codes, clean, wav))
    embeddings = context.embed(clean)
    if context.training_reference is not None:
        embeddings["code_latent"] = code_latents(context.base, codes)
    return Clip(record, embeddings, embeddings["descriptor"].mean(axis=0))


def _memorisation_fields(context: EvalContext, codes: np.ndarray, audio: np.ndarray, wav: Path) -> dict[str, Any]:
    """A clip's copy score and melody similarity against the training data; a flagged clip gets the training excerpt
    it copies decoded beside it (``<prompt>-<sample>.copied.wav``), to listen side by side."""
    record = context.checker.score(codes, audio, context.spec.sampling_rate)
    record["copied_run_seconds"] = record["copied_run_frames"] / context.spec.frame_rate
    excerpt = context.checker.excerpt_codes(record)
    if excerpt is not None and excerpt.shape[1]:
        copied = wav.with_suffix(".copied.wav")
        write_wav(copied, decode_codes(context.base, excerpt), context.spec.sampling_rate)
        record["copy_excerpt"] = copied.relative_to(context.out).as_posix()
    return record


def _per_song_fad(context: EvalContext, clips: list[Clip]) -> None:
    """Each clip's per-song FAD to the training files (on code latents), into its record; the latents are dropped."""
    if context.training_reference is None or not clips:
        return
    values = per_clip_distances(ClipStats.of([c.embeddings.pop("code_latent") for c in clips]),
                                context.training_reference)  # fmt: skip
    for clip, value in zip(clips, values, strict=True):
        clip.record["per_song_fad"] = float(value)
