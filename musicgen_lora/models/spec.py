"""What a model expects of its audio (rate, channels, frame rate) and the conversions between seconds, codec frames and
generated tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedModel


@dataclass
class AudioSpec:
    """What the model expects of its audio."""

    sampling_rate: int
    channels: int
    frame_rate: float

    @classmethod
    def of(cls, model: PreTrainedModel) -> AudioSpec:
        return cls.of_config(model.config)

    @classmethod
    def of_config(cls, config: Any) -> AudioSpec:
        audio_config = config.audio_encoder
        # The decoder's channel count is the model's; stereo MusicGen encodes each channel with a mono EnCodec.
        channels = int(config.decoder.audio_channels)
        return cls(int(audio_config.sampling_rate), channels, float(audio_config.frame_rate))

    def frames(self, seconds: float) -> int:
        """Whole codec frames in ``seconds`` (rounded down, so a window never holds more than the seconds asked; the
        small tolerance keeps e.g. 0.3 s x 50 Hz at 15 frames despite binary floating point)."""
        return int(seconds * self.frame_rate + 1e-6)

    @property
    def samples_per_frame(self) -> int:
        """Audio samples per codec frame (640 at 32 kHz and 50 Hz)."""
        return round(self.sampling_rate / self.frame_rate)


def chroma_frames_per_code_frame(extractor: Any, spec: AudioSpec) -> float:
    """How many chroma frames span one codec frame (e.g. 7.8125 Hz / 50 Hz for MusicGen-Melody)."""
    return extractor.sampling_rate / extractor.hop_length / spec.frame_rate


def new_tokens_for(frames: int, num_delays: int) -> int:
    """``max_new_tokens`` that yields at least ``frames`` complete codec frames (at least one; callers cut any extra).

    With the delay pattern, the last codebook lags the first by ``num_delays - 1`` steps (``num_delays`` is the number
    of codebooks per channel), so ``generate()`` returns ``max_new_tokens - num_delays + 1`` complete frames. But
    MusicGen applies the pattern only to a sequence (start token + new tokens) of at least ``2 * num_delays - 1``
    steps; a shorter one comes back undelayed, as ``max_new_tokens`` frames that are not the music's (a 0.02 s clip
    of musicgen-small). So at least ``num_delays - 1`` frames are asked for.
    """
    return max(1, frames, num_delays - 1) + num_delays - 1
