"""Codebooks for the tiny MusicGen's random EnCodec, so that audio encodes to varied codes.

A freshly initialised EnCodec has all-zero codebooks: every frame would encode to code 0. :func:`init_codebooks`
fits each residual-VQ codebook (a few k-means iterations) to the encoder's latents of :func:`synth_audio`, varied
synthetic music-like clips."""

from __future__ import annotations

import math

import numpy as np
import torch
from transformers import EncodecModel


def synth_audio(rng: np.random.Generator, num_clips: int, seconds: float, sampling_rate: int = 32000) -> np.ndarray:
    """Varied synthetic "music-like" clips, shape (num_clips, samples), float32 in [-1, 1].

    Mixtures of harmonic tones with melodies, chirps, amplitude modulation, filtered noise and percussive
    clicks at random levels, so that the EnCodec latents cover a broad region.
    """
    n = int(round(seconds * sampling_rate))
    t = np.arange(n) / sampling_rate
    clips = np.zeros((num_clips, n), dtype=np.float64)
    for i in range(num_clips):
        kind = i % 6
        x = np.zeros(n)
        if kind in (0, 3):  # melody of harmonic notes
            note_len = int(sampling_rate * rng.uniform(0.1, 0.5))
            for start in range(0, n, note_len):
                f0 = 55.0 * 2 ** (rng.integers(0, 48) / 12)
                seg = t[start : start + note_len] - t[start]
                env = np.exp(-seg * rng.uniform(1, 8))
                tone = sum(rng.uniform(0.1, 1) / h * np.sin(2 * np.pi * f0 * h * seg) for h in range(1, 6))
                x[start : start + note_len] += env * tone
        if kind in (1, 3):  # chirp
            f_start, f_end = rng.uniform(40, 2000), rng.uniform(40, 8000)
            phase = 2 * np.pi * (f_start * t + (f_end - f_start) * t**2 / (2 * seconds))
            x += np.sin(phase) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.2, 8) * t))
        if kind in (2, 4):  # coloured noise
            noise = rng.standard_normal(n)
            k = int(rng.integers(1, 64))
            noise = np.convolve(noise, np.ones(k) / k, mode="same") * math.sqrt(k)
            x += noise * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 4) * t))
        if kind in (4, 5):  # percussion: decaying noise bursts / clicks on a beat grid
            beat = int(sampling_rate * 60 / rng.uniform(60, 180) / rng.choice([1, 2, 4]))
            for start in range(int(rng.integers(0, beat)), n, beat):
                seg_len = min(int(sampling_rate * 0.1), n - start)
                env = np.exp(-np.arange(seg_len) / (sampling_rate * rng.uniform(0.005, 0.05)))
                x[start : start + seg_len] += env * rng.standard_normal(seg_len) * rng.uniform(0.3, 1)
        if kind == 5:  # sustained chord
            for f in 110.0 * 2 ** (rng.choice(24, size=3, replace=False) / 12):
                x += 0.3 * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
        peak = np.max(np.abs(x)) + 1e-9
        clips[i] = x / peak * rng.uniform(0.05, 0.95)
    return clips.astype(np.float32)


def _kmeans(points: torch.Tensor, k: int, generator: torch.Generator, iters: int = 8) -> torch.Tensor:
    """k-means-lite: k random distinct points as seeds, then a few Lloyd iterations; empty clusters reseeded."""
    n = points.shape[0]
    if n < k:
        raise ValueError(f"need at least {k} latent frames, got {n}")
    centroids = points[torch.randperm(n, generator=generator)[:k]].clone()
    for _ in range(iters):
        assign = torch.cdist(points, centroids).argmin(dim=1)
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, assign, points)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp(min=1)[:, None])
        if empty.any():  # reseed empty clusters with random points
            idx = torch.randint(0, n, (int(empty.sum()),), generator=generator)
            centroids[empty] = points[idx]
    return centroids


@torch.no_grad()
def init_codebooks(
    audio_encoder: EncodecModel, seed: int = 0, seconds: float = 1.5, num_clips: int = 16, iters: int = 8
) -> None:
    """Fit every residual-VQ codebook of an ``EncodecModel`` to latents of synthetic audio.

    Layer 0 is fitted to the encoder latents, layer ``q`` to the residuals left by layers ``0..q-1``
    (exactly how ``EncodecResidualVectorQuantizer.encode`` consumes them). All buffers of each
    ``EncodecEuclideanCodebook`` are set consistently: ``embed`` = centroids, ``embed_avg`` = centroids
    (EMA state with unit cluster weight), ``cluster_size`` = number of frames assigned, ``inited`` = 1.
    """
    cfg = audio_encoder.config
    rng = np.random.default_rng(seed + 1)
    gen = torch.Generator().manual_seed(seed + 2)
    audio = torch.from_numpy(synth_audio(rng, num_clips, seconds, cfg.sampling_rate))[:, None, :]
    if cfg.audio_channels == 2:
        audio = audio.repeat(1, 2, 1)
    latents = audio_encoder.encoder(audio)  # (clips, dim, frames)
    residual = latents.transpose(1, 2).reshape(-1, latents.shape[1]).float()
    for layer in audio_encoder.quantizer.layers:
        book = layer.codebook
        centroids = _kmeans(residual, book.codebook_size, gen, iters=iters)
        assign = torch.cdist(residual, centroids).argmin(dim=1)
        counts = torch.bincount(assign, minlength=book.codebook_size).to(book.cluster_size.dtype)
        book.embed.copy_(centroids)
        book.embed_avg.copy_(centroids)
        book.cluster_size.copy_(counts)
        book.inited.fill_(1.0)
        residual = residual - centroids[assign]
