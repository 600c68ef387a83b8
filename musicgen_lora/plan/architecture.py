"""The sizes the memory planner needs of a MusicGen model, without loading it: from a local folder's ``config.json``,
or from the table of the published checkpoints (small, medium, large, melody, melody-large, stereo-*), so the planner
works offline; and the parameter counts of each part, by formula (checked against the built models in the tests)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import EncodecConfig, EncodecModel

from ..demo.tiny_configs import ARCHITECTURES
from ..errors import UserError

# facebook/encodec_32khz, which every MusicGen uses: parameters and buffers (counted on the meta device).
ENCODEC_32KHZ_TENSORS = 56_884_674 + 2_105_420
TINY_CODEC_TENSORS = 180_046 + 16_716  # musicgen_lora.tiny's codec (the name "musicgen-lora-tiny" plans that model)
CHROMA_FRAMES_PER_SECOND = 32000 / 4096  # MusicGen-Melody's chroma: 7.8125 frames per second
NUM_CHROMA = 12
LORA_EMBEDDING_EXTRA = 1  # the embeddings hold codebook_size + 1 rows (the special token)

# published name -> (decoder sizes in ARCHITECTURES, melody, audio channels)
PUBLISHED = {
    "musicgen-small": ("small", False, 1),
    "musicgen-medium": ("medium", False, 1),
    "musicgen-large": ("large", False, 1),
    "musicgen-melody": ("medium", True, 1),
    "musicgen-melody-large": ("large", True, 1),
    "musicgen-stereo-small": ("small", False, 2),
    "musicgen-stereo-medium": ("medium", False, 2),
    "musicgen-stereo-large": ("large", False, 2),
    "musicgen-stereo-melody": ("medium", True, 2),
    "musicgen-stereo-melody-large": ("large", True, 2),
}


@dataclass(frozen=True)
class Architecture:
    """What memory depends on: the decoder's and text encoder's sizes, the codec's tensor count, the variant."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    codebooks: int  # all channels' codebooks (8 for stereo)
    channels: int
    vocab: int  # codes per codebook
    max_positions: int
    text_d: int
    text_d_kv: int
    text_heads: int
    text_ff: int
    text_layers: int
    text_vocab: int
    codec_tensors: int
    melody: bool

    @property
    def delays(self) -> int:
        """Extra decoder steps of the delay pattern: the last codebook of a channel lags the first by K - 1."""
        return self.codebooks // self.channels - 1

    def decoder_linear_params(self) -> int:
        """The decoder layers' linear weights (what ``quantize_base`` quantizes): attention (self, and cross unless
        melody) and the feed-forward, no biases."""
        attention = (4 if self.melody else 8) * self.hidden**2
        return self.layers * (attention + 2 * self.hidden * self.ffn)

    def decoder_other_params(self) -> int:
        """Embeddings, output heads, layer norms and the conditioning projections (never quantized)."""
        norms = self.layers * (2 if self.melody else 3) * 2 * self.hidden + 2 * self.hidden
        embeddings = self.codebooks * (self.vocab + LORA_EMBEDDING_EXTRA) * self.hidden
        heads = self.codebooks * self.vocab * self.hidden
        projection = self.text_d * self.hidden + self.hidden
        if self.melody:
            projection += NUM_CHROMA * self.hidden + self.hidden
        return norms + embeddings + heads + projection + self.max_positions * self.hidden  # + sinusoidal positions

    def text_encoder_params(self) -> int:
        """T5 encoder: shared embedding, per block attention (4 projections) and feed-forward, layer norms."""
        inner = self.text_heads * self.text_d_kv
        block = 4 * self.text_d * inner + 2 * self.text_d * self.text_ff + 2 * self.text_d
        return self.text_vocab * self.text_d + self.text_layers * block + 32 * self.text_heads + self.text_d

    def lora_targets(self, names: list[str]) -> list[tuple[int, int, int]]:
        """(count, in_features, out_features) of each adapted module kind named in ``lora_target_modules``
        (embeddings: in = rows); unknown or absent names count nothing."""
        d, cross = self.hidden, 0 if self.melody else 1
        kinds = {
            "q_proj": (self.layers * (1 + cross), d, d),
            "k_proj": (self.layers * (1 + cross), d, d),  # cross-attention's read the projected text (d wide)
            "v_proj": (self.layers * (1 + cross), d, d),
            "out_proj": (self.layers * (1 + cross), d, d),
            "fc1": (self.layers, d, self.ffn),
            "fc2": (self.layers, self.ffn, d),
            "enc_to_dec_proj": (1, self.text_d, d),
            "audio_enc_to_dec_proj": (1 if self.melody else 0, NUM_CHROMA, d),
            "lm_heads": (self.codebooks, d, self.vocab),
            "embed_tokens": (self.codebooks, self.vocab + LORA_EMBEDDING_EXTRA, d),
        }
        targets = []
        for name in names:
            base, _, index = name.partition(".")
            count, fan_in, fan_out = kinds.get(base, (0, 0, 0))
            targets.append((1 if index else count, fan_in, fan_out))
        return targets


def _from_sizes(sizes: dict[str, dict], melody: bool, channels: int, codec_tensors: int) -> Architecture:
    decoder, text = sizes["decoder"], sizes["text_encoder"]
    return Architecture(
        hidden=decoder["hidden_size"],
        layers=decoder["num_hidden_layers"],
        heads=decoder["num_attention_heads"],
        ffn=decoder["ffn_dim"],
        codebooks=decoder.get("num_codebooks", 4 * channels),
        channels=channels,
        vocab=decoder.get("vocab_size", 2048),
        max_positions=decoder.get("max_position_embeddings", 2048),
        text_d=text["d_model"],
        text_d_kv=text["d_kv"],
        text_heads=text["num_heads"],
        text_ff=text["d_ff"],
        text_layers=text["num_layers"],
        text_vocab=text.get("vocab_size", 32128),
        codec_tensors=codec_tensors,
        melody=melody,
    )


def _codec_tensors(audio_encoder: dict[str, Any]) -> int:
    """Parameters and buffers of the EnCodec a config describes, counted on the meta device (nothing allocated)."""
    fields = {
        k: v for k, v in audio_encoder.items() if k not in ("model_type", "transformers_version", "architectures")
    }
    with torch.device("meta"):
        codec = EncodecModel(EncodecConfig(**fields))
    return sum(t.numel() for t in (*codec.parameters(), *codec.buffers()))


def architecture_of(model: str) -> Architecture:
    """The architecture of ``model``: a local folder with a MusicGen ``config.json``, or a published checkpoint
    (``facebook/musicgen-small``, ``musicgen-melody-large``, ...).

    Raises:
        UserError: neither a MusicGen folder nor a published name.
    """
    folder = Path(model).expanduser()
    if (folder / "config.json").is_file():
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        if config.get("model_type") not in ("musicgen", "musicgen_melody"):
            raise UserError(f"'{model}' holds a '{config.get('model_type')}' model, not MusicGen; plan a MusicGen")
        decoder, text = config["decoder"], config["text_encoder"]
        sizes = {"decoder": decoder, "text_encoder": {**text, "d_model": text["d_model"]}}
        melody = config["model_type"] == "musicgen_melody"
        return _from_sizes(
            sizes, melody, int(decoder.get("audio_channels", 1)), _codec_tensors(config["audio_encoder"])
        )
    name = model.rstrip("/").split("/")[-1]
    if name == "musicgen-lora-tiny":
        return _from_sizes(ARCHITECTURES["tiny"], False, 1, TINY_CODEC_TENSORS)
    if name in PUBLISHED:
        size, melody, channels = PUBLISHED[name]
        return _from_sizes(ARCHITECTURES[size], melody, channels, ENCODEC_32KHZ_TENSORS)
    published = ", ".join(f"facebook/{n}" for n in PUBLISHED)
    raise UserError(f"model '{model}' is neither a local MusicGen folder nor a published one; use one of {published}")


def chroma_frames(seconds: float) -> int:
    """Chroma frames MusicGen-Melody prepends for a clip of ``seconds``."""
    return math.ceil(seconds * CHROMA_FRAMES_PER_SECOND) + 1
