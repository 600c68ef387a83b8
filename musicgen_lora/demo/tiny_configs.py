"""The configurations of the tiny MusicGen (and of random models of the real checkpoints' sizes): the layer-size
tables, the variants and the checkpoints they mirror, and the transformers config of each part.

Every value that is not a size copies the real checkpoints' config.json files (facebook/musicgen-small,
-stereo-small, -melody and facebook/encodec_32khz), so that code written against the tiny model works on them."""

from __future__ import annotations

import math

from transformers import (
    EncodecConfig,
    GenerationConfig,
    MusicgenConfig,
    MusicgenDecoderConfig,
    MusicgenForConditionalGeneration,
    MusicgenMelodyConfig,
    MusicgenMelodyDecoderConfig,
    MusicgenMelodyForConditionalGeneration,
    PreTrainedTokenizerBase,
    T5Config,
)

from ..models.processors import MELODY_CHROMA_HOP, MELODY_CHUNK_SECONDS, MELODY_NUM_CHROMA

#: EnCodec upsampling ratios of the real 32 kHz MusicGen codec: product 640 -> 32000 / 640 = 50 Hz frames.
UPSAMPLING_RATIOS = (8, 5, 4, 4)


TINY_HOP_LENGTH = math.prod(UPSAMPLING_RATIOS)  # 640 samples per frame


TINY_FRAME_RATE = 50


#: The variants and the Hub checkpoints whose structure each mirrors.
VARIANTS = ("mono", "stereo", "melody")


MIRRORS = {
    "mono": "facebook/musicgen-small",
    "stereo": "facebook/musicgen-stereo-small",
    "melody": "facebook/musicgen-melody",
}


def check_variant(variant: str) -> str:
    """``variant`` if it is one of :data:`VARIANTS`; ValueError otherwise."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
    return variant


#: Layer sizes of each architecture. "tiny" is this module's test model; the others are those of the real
#: checkpoints' config.json files (decoder of facebook/musicgen-small/-medium/-large/-melody, the T5-base text
#: encoder and facebook/encodec_32khz), for benchmarks on random models of the real size (see musicgen_lora.bench).
_T5_BASE = dict(d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12, vocab_size=32128)


_ENCODEC_32KHZ = dict(hidden_size=128, num_filters=64, codebook_dim=128, num_lstm_layers=2, codebook_size=2048)


ARCHITECTURES: dict[str, dict[str, dict]] = {
    "tiny": {
        "decoder": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_dim=128),
        "text_encoder": dict(d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2),
        "codec": dict(hidden_size=32, num_filters=4, codebook_dim=32, num_lstm_layers=1, codebook_size=64),
    },
    "small": {
        "decoder": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, ffn_dim=4096),
        "text_encoder": _T5_BASE,
        "codec": _ENCODEC_32KHZ,
    },
    "medium": {  # facebook/musicgen-melody (1.5 B) has the same decoder sizes
        "decoder": dict(hidden_size=1536, num_hidden_layers=48, num_attention_heads=24, ffn_dim=6144),
        "text_encoder": _T5_BASE,
        "codec": _ENCODEC_32KHZ,
    },
    "large": {
        "decoder": dict(hidden_size=2048, num_hidden_layers=48, num_attention_heads=32, ffn_dim=8192),
        "text_encoder": _T5_BASE,
        "codec": _ENCODEC_32KHZ,
    },
}


def architecture_sizes(architecture: str | dict) -> dict[str, dict]:
    """The layer sizes of ``architecture``: a key of :data:`ARCHITECTURES`, or such an entry itself (e.g. a tiny
    decoder with the real codec, for the preparation benchmark); ValueError otherwise."""
    if isinstance(architecture, dict):  # {"decoder": ..., "text_encoder": ..., "codec": ...} sizes, e.g. mixed
        return architecture
    if architecture in ARCHITECTURES:
        return ARCHITECTURES[architecture]
    raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}; got {architecture!r}")


def _text_encoder_config(tokenizer: PreTrainedTokenizerBase, sizes: dict | None = None) -> T5Config:
    """The T5 encoder config (tiny unless ``sizes`` says otherwise), its vocabulary rounded up from the tokenizer's
    to a multiple of 64 unless ``sizes`` gives one (T5-base: 32128)."""
    sizes = dict(sizes or ARCHITECTURES["tiny"]["text_encoder"])
    vocab_size = sizes.pop("vocab_size", int(math.ceil(len(tokenizer) / 64) * 64))
    return T5Config(
        vocab_size=vocab_size,
        **sizes,
        num_decoder_layers=sizes["num_layers"],
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        dropout_rate=0.1,
        feed_forward_proj="relu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        tie_word_embeddings=True,
    )


def _codec_config(
    sampling_rate: int, codebook_size: int, num_codebooks: int, sizes: dict | None = None
) -> EncodecConfig:
    """A mono EnCodec like facebook/encodec_32khz (which every MusicGen variant uses, stereo included), tiny unless
    ``sizes`` (an ARCHITECTURES entry's "codec") says otherwise."""
    sizes = sizes or ARCHITECTURES["tiny"]["codec"]
    if codebook_size & (codebook_size - 1):
        raise ValueError(f"codebook_size must be a power of two (EnCodec requirement), got {codebook_size}")
    hop = TINY_HOP_LENGTH
    if sampling_rate % hop:
        raise ValueError(f"sampling_rate must be a multiple of {hop}, got {sampling_rate}")
    frame_rate = sampling_rate // hop
    # EnCodec derives num_quantizers = 1000 * max(target_bandwidths) // (frame_rate * log2(codebook_size))
    bits = int(math.log2(codebook_size))
    bandwidth = num_codebooks * frame_rate * bits / 1000.0
    config = EncodecConfig(
        sampling_rate=sampling_rate,
        audio_channels=1,
        target_bandwidths=[bandwidth],
        normalize=False,
        chunk_length_s=None,
        overlap=None,
        hidden_size=sizes["hidden_size"],
        num_filters=sizes["num_filters"],
        num_residual_layers=1,
        upsampling_ratios=list(UPSAMPLING_RATIOS),
        norm_type="weight_norm",
        kernel_size=7,
        last_kernel_size=7,
        residual_kernel_size=3,
        dilation_growth_rate=2,
        use_causal_conv=False,  # as in facebook/encodec_32khz
        pad_mode="reflect",
        compress=2,
        num_lstm_layers=sizes["num_lstm_layers"],
        trim_right_ratio=1.0,
        codebook_size=codebook_size,
        codebook_dim=sizes["codebook_dim"],
        use_conv_shortcut=False,  # as in facebook/encodec_32khz
    )
    if config.num_quantizers != num_codebooks:
        raise RuntimeError(f"EnCodec would use {config.num_quantizers} quantizers, wanted {num_codebooks}")
    return config


def _decoder_kwargs(codebook_size: int, num_codebooks: int, audio_channels: int, sizes: dict | None = None) -> dict:
    """Shared fields of MusicgenDecoderConfig and MusicgenMelodyDecoderConfig (tiny unless ``sizes`` says otherwise)."""
    special = codebook_size  # like the real checkpoints: pad = bos = start = 2048 with 2048 codes
    return dict(
        vocab_size=codebook_size,
        max_position_embeddings=2048,
        **(sizes or ARCHITECTURES["tiny"]["decoder"]),
        num_codebooks=num_codebooks,
        audio_channels=audio_channels,
        dropout=0.1,
        attention_dropout=0.0,
        activation_dropout=0.0,
        activation_function="gelu",
        layerdrop=0.0,
        scale_embedding=False,
        pad_token_id=special,
        bos_token_id=special,
        tie_word_embeddings=False,
    )


def generation_config(special: int) -> GenerationConfig:
    """generation_config.json of the real checkpoints (all variants): 30 s of sampling with guidance 3."""
    return GenerationConfig(
        decoder_start_token_id=special,
        pad_token_id=special,
        bos_token_id=special,
        do_sample=True,
        guidance_scale=3.0,
        max_length=1500,
    )


def musicgen_config(
    variant: str,
    sizes: dict[str, dict],
    tokenizer: PreTrainedTokenizerBase,
    codebook_size: int,
    num_codebooks: int,
    sampling_rate: int,
) -> tuple[type, MusicgenConfig | MusicgenMelodyConfig]:
    """The model class and config of ``variant`` (see :func:`~.tiny.build_tiny_musicgen`) with ``sizes`` (an
    :data:`ARCHITECTURES` entry) and ``num_codebooks`` per audio channel; special token ids = ``codebook_size``,
    like 2048 in the real 2048-code checkpoints."""
    audio_config = _codec_config(sampling_rate, codebook_size, num_codebooks, sizes["codec"])
    text_config = _text_encoder_config(tokenizer, sizes["text_encoder"])
    channels = 2 if variant == "stereo" else 1
    decoder = _decoder_kwargs(codebook_size, num_codebooks * channels, channels, sizes["decoder"])
    special = codebook_size
    if variant == "melody":
        # like facebook/musicgen-melody's decoder config: no decoder_start_token_id there, because
        # MusicgenMelodyForConditionalGeneration.forward(labels=...) shifts the labels with decoder.bos_token_id
        return MusicgenMelodyForConditionalGeneration, MusicgenMelodyConfig(
            text_encoder=text_config,
            audio_encoder=audio_config,
            decoder=MusicgenMelodyDecoderConfig(**decoder),
            num_chroma=MELODY_NUM_CHROMA,
            chroma_length=1 + MELODY_CHUNK_SECONDS * sampling_rate // MELODY_CHROMA_HOP,  # 235 at 32 kHz
            decoder_start_token_id=special,
            pad_token_id=special,
        )
    return MusicgenForConditionalGeneration, MusicgenConfig(
        text_encoder=text_config,
        audio_encoder=audio_config,
        decoder=MusicgenDecoderConfig(
            **decoder,
            # not a declared field of MusicgenDecoderConfig, but MusicgenForConditionalGeneration.forward(
            # labels=...) shifts the labels with config.decoder.decoder_start_token_id (ValueError if missing)
            decoder_start_token_id=special,
        ),
        decoder_start_token_id=special,  # top-level ids as in facebook/musicgen-small's config.json
        pad_token_id=special,
    )
