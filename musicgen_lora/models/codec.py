"""EnCodec, the frozen audio codec: audio to codes and back (stereo channels interleaved as stereo MusicGen expects),
and its encoder's latents.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import PreTrainedModel


@torch.no_grad()
def encode_channels(audio_encoder: torch.nn.Module, audio: torch.Tensor) -> torch.Tensor:
    """EnCodec codes of one clip, each channel encoded by the mono codec.

    Args:
        audio: (channels, samples) float at the codec's rate, on the codec's device.

    Returns:
        long codes of shape (K_per_channel * channels, frames), channels interleaved as stereo MusicGen expects
        (L0, R0, L1, R1, ...; mono: the codebooks in order).
    """
    # Each channel is one item of the batch: (channels, 1, samples) -> codes (chunks=1, channels, K_per_channel, frames)
    codes = audio_encoder.encode(audio[:, None]).audio_codes[0]
    # (channels, K_per_channel, frames) -> (K_per_channel, channels, frames) -> L0, R0, L1, R1, ...
    return codes.transpose(0, 1).reshape(-1, codes.shape[-1]).long()


def encode_clip(audio_encoder: torch.nn.Module, audio: np.ndarray) -> np.ndarray:
    """Codes of one decoded (channels, samples) float32 clip, as stored in the cache: int16 (num_codebooks, frames),
    encoded on the codec's device."""
    device = next(audio_encoder.parameters()).device
    return encode_channels(audio_encoder, torch.from_numpy(audio).to(device)).to(torch.int16).cpu().numpy()


@torch.no_grad()
def decode_codes(model: PreTrainedModel, codes: np.ndarray) -> np.ndarray:
    """Audio (channels, samples) of (K, frames) codes, through the model's EnCodec (stereo: interleaved codebooks)."""
    channels = int(model.config.decoder.audio_channels)
    codes_t = torch.as_tensor(codes, dtype=torch.long, device=next(model.audio_encoder.parameters()).device)
    outs = []
    for channel in range(channels):
        part = codes_t[channel::channels][None, None]  # (1, 1, K_per_channel, frames)
        outs.append(model.audio_encoder.decode(part, [None]).audio_values[0])  # (1, samples)
    return torch.cat(outs, dim=0).float().cpu().numpy()


@torch.no_grad()
def encodec_latents(model: PreTrainedModel, audio: np.ndarray) -> np.ndarray:
    """The EnCodec encoder's continuous output for (channels, samples) audio: (frames, dim), channels pooled."""
    device = next(model.audio_encoder.parameters()).device
    frames = []
    for channel in np.asarray(audio, dtype=np.float32):
        x = torch.from_numpy(np.nan_to_num(channel)).to(device)[None, None]  # (1, 1, samples)
        frames.append(model.audio_encoder.encoder(x)[0].T.double().cpu().numpy())  # (frames, dim)
    return np.concatenate(frames, axis=0)


def encode_prompt(audio_encoder: torch.nn.Module, audio: np.ndarray) -> torch.Tensor:
    """EnCodec codes of (bsz, channels, samples) audio as decoder input ids: (bsz * num_codebooks, frames), encoded
    exactly as training encodes its clips (:func:`encode_channels`)."""
    device = next(audio_encoder.parameters()).device
    items = [encode_channels(audio_encoder, torch.from_numpy(np.ascontiguousarray(item)).to(device)) for item in audio]
    return torch.cat(items, dim=0)
