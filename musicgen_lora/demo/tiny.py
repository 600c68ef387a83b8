"""Build a tiny, randomly initialised but fully working MusicGen model folder locally.

The folder mirrors the layout of ``facebook/musicgen-small`` (32 kHz mono EnCodec with 4 codebooks at a
50 Hz frame rate, a T5 text encoder, a MusicGen decoder, a T5 tokenizer and an EnCodec feature extractor)
but every component is shrunk to a few hundred thousand parameters, so that tests and smoke runs work on
a small CPU without any access to the Hugging Face Hub::

    python -m musicgen_lora.tiny OUT_DIR [--variant mono|stereo|melody] [--seed 0] [--force]

    from transformers import AutoModelForTextToWaveform, AutoProcessor
    model = AutoModelForTextToWaveform.from_pretrained(OUT_DIR)   # MusicgenForConditionalGeneration
    processor = AutoProcessor.from_pretrained(OUT_DIR)            # MusicgenProcessor

``--variant stereo`` mirrors ``facebook/musicgen-stereo-small`` (same classes, decoder with 2 audio channels
and 8 interleaved codebooks over the same mono EnCodec) and ``--variant melody`` mirrors
``facebook/musicgen-melody`` (``MusicgenMelodyForConditionalGeneration`` + ``MusicgenMelodyProcessor``, text
and 12-bin chroma conditioning). The melody processor needs torchaudio in transformers; without it use
:func:`musicgen_lora.processors.load_processor`, which builds the same processor with a pure-torch STFT.

Nothing is downloaded: the tokenizer is trained here on an embedded list of music-caption words and the
weights are random (seeded, hence reproducible). A freshly initialised EnCodec has all-zero codebooks, so
every frame would encode to code 0; the residual-VQ codebooks are therefore fitted (a few k-means
iterations) to latents of synthetic audio so that real audio encodes to varied codes."""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import pathlib
import shutil

import numpy as np
import torch

from ..models.processors import MELODY_CHROMA_HOP, MELODY_CHUNK_SECONDS, MELODY_NUM_CHROMA, melody_feature_extractor

#: EnCodec upsampling ratios of the real 32 kHz MusicGen codec: product 640 -> 32000 / 640 = 50 Hz frames.
UPSAMPLING_RATIOS = (8, 5, 4, 4)


TINY_HOP_LENGTH = int(np.prod(UPSAMPLING_RATIOS))  # 640 samples per frame


TINY_FRAME_RATE = 50


_GENRES = """
pop rock indie alternative punk metal hardcore grunge emo folk country bluegrass americana blues jazz swing
bebop fusion funk soul disco house techno trance dubstep drum and bass jungle garage breakbeat ambient
downtempo chillout lofi lo-fi hip hop hip-hop rap trap drill grime reggae dancehall dub ska afrobeat afrobeats
amapiano latin salsa bossa nova samba tango flamenco cumbia reggaeton bachata merengue classical baroque
romantic orchestral cinematic soundtrack score opera chamber minimalist experimental noise industrial
synthwave synth-pop synthpop vaporwave chiptune 8-bit electro electronic edm idm glitch shoegaze dream
psychedelic progressive post-rock math krautrock new wave gospel rnb r&b neo-soul motown doo-wop rockabilly
surf world celtic irish medieval gregorian chant k-pop j-pop city bollywood qawwali gamelan kpop jpop
""".split()


_INSTRUMENTS = """
piano electric piano rhodes wurlitzer organ hammond harpsichord synthesizer synth pad lead arpeggio arp bass
bassline sub 808 guitar acoustic electric distorted clean nylon slide steel banjo mandolin ukulele harp
violin viola cello double strings string quartet ensemble orchestra brass trumpet trombone horn french tuba
saxophone sax alto tenor clarinet flute piccolo oboe bassoon recorder harmonica accordion bagpipes sitar
tabla koto shamisen erhu kalimba marimba xylophone vibraphone glockenspiel celesta bells chimes drums drum
kit kick snare hi-hat hihat hats cymbal cymbals crash ride tom toms percussion shaker tambourine congas bongos
djembe cajon timpani claps clap handclaps snaps vocals vocal voice choir singer female male humming whistle
beatbox sampler vinyl crackle tape hiss field recording rain birds ocean waves wind noise
""".split()


_MOODS = """
happy sad melancholic melancholy uplifting energetic calm relaxing relaxed peaceful dreamy dark moody epic
heroic triumphant dramatic tense suspenseful mysterious eerie spooky haunting nostalgic romantic sensual
aggressive angry intense powerful gentle soft warm bright cheerful playful quirky funny groovy funky smooth
chill laid-back mellow hypnotic meditative spiritual ethereal atmospheric lush sparse minimal driving
bouncy catchy hopeful emotional sentimental bittersweet lonely somber serene tranquil joyful festive
""".split()


_DESCRIPTORS = """
slow fast medium tempo upbeat downbeat mid-tempo groove beat beats rhythm rhythmic syncopated swung
straight steady loop loops riff riffs melody melodic harmony harmonic chords chord progression solo
intro outro verse chorus bridge drop build-up buildup breakdown fade in out crescendo staccato legato
reverb delay echo distortion overdrive compressed sidechain filtered filter sweep lowpass highpass
analog digital vintage retro modern futuristic live studio recording mix mixed mastered stereo mono
high quality low hi-fi instrumental song track music tune piece background video game film movie trailer
commercial advertisement podcast radio party club dance workout study sleep meditation yoga coffee shop
night day morning evening summer winter autumn spring sunset sunrise city street road trip beach
with and a an the of in on for to at by from featuring heavy light deep big small short long loud quiet
simple complex layered rich thin thick wide narrow catchy hook hooks short long cover version remix edit
""".split()


_KEYS = ["C", "C#", "Db", "D", "D#", "Eb", "E", "F", "F#", "Gb", "G", "G#", "Ab", "A", "A#", "Bb", "B"]


_SENTENCE_TEMPLATES = [
    "{mood} {genre} track with {inst} and {inst2}",
    "a {mood} {genre} song featuring {inst}, {inst2} and {inst3}",
    "{genre} beat with {inst} at {bpm} bpm in {key} {mode}",
    "{tempo} {mood} {genre} with {inst}",
    "An {mood} {genre} piece in {key} {mode}, {bpm} BPM",
    "{mood} and {mood2} {genre} music for {use}",
    "{inst} solo, {mood}, {tempo} tempo, {key} {mode}",
    "80s {genre} with {inst} and {inst2}, {mood} vibe",
    "{genre} {inst} loop, {bpm} bpm",
    "The {inst} plays a {mood} melody over {inst2}",
]


_USES = ["studying", "sleep", "a video game", "a film trailer", "a party", "workout", "meditation", "a podcast"]


def _caption_corpus() -> list[str]:
    """A deterministic list of music-caption-like lines used to train the tiny tokenizer."""
    rng = np.random.default_rng(1234)  # independent of the model seed: the tokenizer never changes
    lines = [" ".join(_GENRES), " ".join(_INSTRUMENTS), " ".join(_MOODS), " ".join(_DESCRIPTORS)]
    lines += [" ".join(w.capitalize() for w in words) for words in (_GENRES, _INSTRUMENTS, _MOODS)]
    lines += [f"{bpm} bpm {bpm}bpm {bpm} BPM" for bpm in range(40, 201)]
    lines += [f"{k} {m} key of {k} {m} in {k}{'m' if m == 'minor' else ''}" for k in _KEYS for m in ("major", "minor")]
    lines += [f"{y}s {y} {y}'s" for y in (50, 60, 70, 80, 90)] + ["1950s 1960s 1970s 1980s 1990s 2000s 2010s"]
    words = {"genre": _GENRES, "inst": _INSTRUMENTS, "mood": _MOODS, "use": _USES}
    tempos = ["slow", "fast", "medium", "moderate", "upbeat", "mid"]
    for _ in range(1500):
        tpl = _SENTENCE_TEMPLATES[rng.integers(len(_SENTENCE_TEMPLATES))]
        fill = {
            "genre": rng.choice(words["genre"]),
            "inst": rng.choice(words["inst"]),
            "inst2": rng.choice(words["inst"]),
            "inst3": rng.choice(words["inst"]),
            "mood": rng.choice(words["mood"]),
            "mood2": rng.choice(words["mood"]),
            "use": rng.choice(words["use"]),
            "bpm": int(rng.integers(40, 201)),
            "key": rng.choice(_KEYS),
            "mode": rng.choice(["major", "minor"]),
            "tempo": rng.choice(tempos),
        }
        line = tpl.format(**fill)
        lines.append(line[0].upper() + line[1:] if rng.random() < 0.5 else line)
    # make sure every printable ASCII character is a piece, so arbitrary English never hits <unk>
    printable = "".join(chr(c) for c in range(33, 127))
    lines += [printable, " ".join(printable)] * 3
    return lines


def _canonical_pieces(pieces: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Make the trainer's output reproducible bit for bit.

    ``tokenizers``' UnigramTrainer is not deterministic run to run: its parallel EM leaves ~1e-15 noise in
    the scores (so near-equal pieces swap places), and the "required characters" it appends last (scores
    decreasing by exactly 1e-4) come out in hash-set order. Sort that tail by character and re-score it,
    round the other scores and sort them (ties by piece).
    """
    tail = 1
    while (
        tail < len(pieces)
        and len(pieces[-tail - 1][0]) == 1
        and abs((pieces[-tail - 1][1] - pieces[-tail][1]) - 1e-4) < 1e-7
    ):
        tail += 1
    head, req = pieces[: len(pieces) - tail], pieces[len(pieces) - tail :]
    top = round(req[0][1], 4)
    req = [(p, round(top - 1e-4 * i, 4)) for i, p in enumerate(sorted(p for p, _ in req))]
    head = sorted(((p, round(sc, 4)) for p, sc in head), key=lambda ps: (-ps[1], ps[0]))
    return head + req


@functools.lru_cache(maxsize=4)
def _trained_vocab(vocab_size: int) -> tuple[tuple[str, float], ...]:
    """The (piece, score) list of the tiny tokenizer; trained once per process and vocabulary size."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers.models import Unigram

    specials = ["<pad>", "</s>", "<unk>"]
    backend = Tokenizer(Unigram())
    # same pre-tokenisation as transformers' T5Tokenizer, so the pieces match what it will produce
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        unk_token="<unk>",
        initial_alphabet=[chr(c) for c in range(33, 127)] + ["▁"],
        max_piece_length=16,
        show_progress=False,
    )
    backend.train_from_iterator(_caption_corpus(), trainer=trainer)
    vocab = [(piece, float(score)) for piece, score in json.loads(backend.to_str())["model"]["vocab"]]
    if [p for p, _ in vocab[:3]] != specials:
        raise RuntimeError(f"unexpected special token layout: {vocab[:3]}")
    return tuple([(p, 0.0) for p in specials] + _canonical_pieces(vocab[3:]))


def build_tiny_tokenizer(vocab_size: int = 800):
    """Train a small T5-style (SentencePiece Unigram) tokenizer on the embedded caption corpus.

    Returns a ``transformers.T5Tokenizer`` (in transformers 5 this is the ``tokenizers``-backed class;
    ``T5TokenizerFast`` is an alias of it) with ``<pad>``=0, ``</s>``=1, ``<unk>``=2 like T5 and no
    sentinel (``<extra_id_*>``) tokens. The training runs once per process; every call returns a new object.
    """
    from transformers import T5Tokenizer

    return T5Tokenizer(vocab=list(_trained_vocab(vocab_size)), extra_ids=0, model_max_length=512)


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
    audio_encoder, seed: int = 0, seconds: float = 1.5, num_clips: int = 16, iters: int = 8
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


#: The variants and the Hub checkpoints whose structure each mirrors.
VARIANTS = ("mono", "stereo", "melody")


_MIRRORS = {
    "mono": "facebook/musicgen-small",
    "stereo": "facebook/musicgen-stereo-small",
    "melody": "facebook/musicgen-melody",
}


def _check_variant(variant: str) -> str:
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


def _text_encoder_config(tokenizer, sizes: dict | None = None):
    from transformers import T5Config

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


def _codec_config(sampling_rate: int, codebook_size: int, num_codebooks: int, sizes: dict | None = None):
    """A mono EnCodec like facebook/encodec_32khz (which every MusicGen variant uses, stereo included), tiny unless
    ``sizes`` (an ARCHITECTURES entry's "codec") says otherwise."""
    sizes = sizes or ARCHITECTURES["tiny"]["codec"]
    from transformers import EncodecConfig

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


def _generation_config(special: int):
    """generation_config.json of the real checkpoints (all variants): 30 s of sampling with guidance 3."""
    from transformers import GenerationConfig

    return GenerationConfig(
        decoder_start_token_id=special,
        pad_token_id=special,
        bos_token_id=special,
        do_sample=True,
        guidance_scale=3.0,
        max_length=1500,
    )


def build_tiny_musicgen(
    seed: int = 0,
    codebook_size: int | None = None,
    num_codebooks: int = 4,
    sampling_rate: int = 32000,
    variant: str = "mono",
    architecture: str | dict = "tiny",
    fit_codebooks: bool = True,
):
    """Build a tiny random MusicGen model and its processor (in memory).

    ``architecture`` (a key of ``ARCHITECTURES``, or such an entry) gives the layer sizes: "tiny" by default, or
    "small", "medium", "large" for a random model of a real checkpoint's size (benchmarks: real speed and memory, no
    download; the tokenizer stays the tiny one, whose ids fit any vocabulary). ``codebook_size`` defaults to the architecture's
    (64 tiny, 2048 real). ``fit_codebooks=False`` skips fitting the codec's codebooks (every frame then encodes to
    code 0; encoding costs the same), which takes minutes at the real size.

    ``variant`` picks the checkpoint structure to mirror (``num_codebooks`` is per audio channel, i.e. the
    EnCodec's quantizer count):

    - ``"mono"`` (facebook/musicgen-small): ``(MusicgenForConditionalGeneration, MusicgenProcessor)``.
    - ``"stereo"`` (facebook/musicgen-stereo-small): same classes; the decoder has ``audio_channels=2`` and
      ``2 * num_codebooks`` codebooks interleaved ``[L0, R0, L1, R1, ...]``; the EnCodec stays mono (each
      channel is encoded on its own) and the feature extractor takes ``(2, samples)`` audio.
    - ``"melody"`` (facebook/musicgen-melody): ``(MusicgenMelodyForConditionalGeneration,
      MusicgenMelodyProcessor)`` with 12-bin chroma conditioning (see :func:`musicgen_lora.processors.melody_feature_extractor`).

    Same ``seed`` -> identical weights.
    """
    from transformers import (
        EncodecFeatureExtractor,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        MusicgenMelodyConfig,
        MusicgenMelodyDecoderConfig,
        MusicgenMelodyForConditionalGeneration,
        MusicgenProcessor,
    )

    _check_variant(variant)
    if isinstance(architecture, dict):  # {"decoder": ..., "text_encoder": ..., "codec": ...} sizes, e.g. mixed
        sizes = architecture
    elif architecture in ARCHITECTURES:
        sizes = ARCHITECTURES[architecture]
    else:
        raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}; got {architecture!r}")
    codebook_size = codebook_size or sizes["codec"]["codebook_size"]
    audio_config = _codec_config(sampling_rate, codebook_size, num_codebooks, sizes["codec"])
    tokenizer = build_tiny_tokenizer()
    text_config = _text_encoder_config(tokenizer, sizes["text_encoder"])
    channels = 2 if variant == "stereo" else 1
    decoder = _decoder_kwargs(codebook_size, num_codebooks * channels, channels, sizes["decoder"])
    special = codebook_size
    if variant == "melody":
        # like facebook/musicgen-melody's decoder config: no decoder_start_token_id there, because
        # MusicgenMelodyForConditionalGeneration.forward(labels=...) shifts the labels with decoder.bos_token_id
        model_class = MusicgenMelodyForConditionalGeneration
        config = MusicgenMelodyConfig(
            text_encoder=text_config,
            audio_encoder=audio_config,
            decoder=MusicgenMelodyDecoderConfig(**decoder),
            num_chroma=MELODY_NUM_CHROMA,
            chroma_length=1 + MELODY_CHUNK_SECONDS * sampling_rate // MELODY_CHROMA_HOP,  # 235 at 32 kHz
            decoder_start_token_id=special,
            pad_token_id=special,
        )
    else:
        model_class = MusicgenForConditionalGeneration
        config = MusicgenConfig(
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

    with torch.random.fork_rng(devices=[]):  # seed the init without disturbing the caller's global RNG
        torch.manual_seed(seed)
        model = model_class(config)
    model.eval()
    if fit_codebooks:
        init_codebooks(model.audio_encoder, seed=seed)
    model.generation_config = _generation_config(special)

    if variant == "melody":
        from transformers.models.musicgen_melody.processing_musicgen_melody import MusicgenMelodyProcessor

        feature_extractor = melody_feature_extractor(sampling_rate=sampling_rate)
        return model, MusicgenMelodyProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)
    if variant == "stereo":
        # facebook/musicgen-stereo-*: feature_size 2 (input (2, samples) per clip), left padding
        feature_extractor = EncodecFeatureExtractor(
            feature_size=2, sampling_rate=sampling_rate, padding_value=0.0, padding_side="left"
        )
    else:
        feature_extractor = EncodecFeatureExtractor(feature_size=1, sampling_rate=sampling_rate, padding_value=0.0)
    return model, MusicgenProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)


def _holds_model(path: pathlib.Path) -> bool:
    return (path / "config.json").is_file()


def _built_variant(path: pathlib.Path) -> str | None:
    """The variant recorded in a folder built here (``tiny_musicgen.json``; "mono" if unrecorded), else None."""
    try:
        record = json.loads((path / "tiny_musicgen.json").read_text())
    except (OSError, ValueError):
        return None
    return record.get("variant", "mono") if isinstance(record, dict) else None


def _check_existing(out: pathlib.Path, variant: str) -> None:
    built = _built_variant(out)
    if built is not None and built != variant:
        raise FileExistsError(
            f"{out} holds a tiny MusicGen of variant {built!r}, not {variant!r}; use force=True / --force to replace it"
        )


def _fresh_sibling(path: pathlib.Path, tag: str) -> pathlib.Path:
    """Create a new, empty hidden directory next to ``path`` (mode from the umask, unlike mkdtemp's 0700)."""
    for _ in range(100):
        candidate = path.parent / f".{path.name}.{tag}-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary directory next to {path}")


def save_tiny_musicgen(out_dir, seed: int = 0, force: bool = False, variant: str = "mono") -> pathlib.Path:
    """Build the tiny model and save model + processor + generation config to ``out_dir``; return its path.

    ``variant`` is ``"mono"``, ``"stereo"`` or ``"melody"`` (see :func:`build_tiny_musicgen`).
    If ``out_dir`` already holds a model (``config.json``) and ``force`` is false, nothing is touched (but a
    folder built here for another variant raises FileExistsError).
    The folder is written to a temporary sibling directory and renamed into place, so an interrupted build
    never leaves a half-written ``out_dir``. An existing ``out_dir`` that is not a model folder is replaced
    only if it is empty or ``force`` is set.
    """
    _check_variant(variant)
    out = pathlib.Path(out_dir).expanduser().absolute()
    if out.exists() and not force:
        if _holds_model(out):
            _check_existing(out, variant)
            print(f"tiny MusicGen already exists at {out} (use --force to rebuild)")
            return out
        if not out.is_dir() or any(out.iterdir()):
            raise FileExistsError(f"{out} exists and is not a model folder; use force=True / --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)

    model, processor = build_tiny_musicgen(seed=seed, variant=variant)
    tmp = _fresh_sibling(out, "tmp")
    old = None
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        record = {"builder": "musicgen_lora.tiny", "seed": seed}
        if variant != "mono":  # mono folders stay byte-identical to those built before variants existed
            record.update(variant=variant, mirrors=_MIRRORS[variant])
        (tmp / "tiny_musicgen.json").write_text(json.dumps(record, indent=2) + "\n")
        # transformers writes model.safetensors with mode 0600; give every file the umask-derived mode
        mode = (tmp / "tiny_musicgen.json").stat().st_mode & 0o777
        for path in tmp.iterdir():
            if path.is_file():
                path.chmod(mode)
        if out.is_symlink() or (out.exists() and not out.is_dir()):
            out.unlink()
        elif out.exists():
            old = _fresh_sibling(out, "old")
            os.rename(out, old / out.name)  # move the previous folder aside (atomic), delete it afterwards
        try:
            os.rename(tmp, out)
        except OSError:
            # lost a race with a concurrent build of the same folder: keep theirs unless forced
            if _holds_model(out) and not force:
                shutil.rmtree(tmp, ignore_errors=True)
                _check_existing(out, variant)
                print(f"tiny MusicGen already exists at {out} (built concurrently)")
                return out
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():
            os.rename(old / out.name, out)  # put the previous folder back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    kind = "" if variant == "mono" else f" {variant} (like {_MIRRORS[variant]})"
    print(f"wrote tiny MusicGen{kind} (seed {seed}) to {out}")
    return out


def main(argv: list[str] | None = None) -> pathlib.Path:
    parser = argparse.ArgumentParser(
        prog="python -m musicgen_lora.tiny",
        description=(
            "Build a tiny, randomly initialised but fully working MusicGen model folder (32 kHz, 4 codebooks "
            "per channel, 50 Hz) locally, without the Hugging Face Hub. Load it with "
            "AutoModelForTextToWaveform.from_pretrained(OUT_DIR) and AutoProcessor.from_pretrained(OUT_DIR) "
            "(melody without torchaudio: musicgen_lora.processors.load_processor(OUT_DIR))."
        ),
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the model to")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed -> identical weights (default 0)")
    parser.add_argument(
        "--force", action="store_true", help="rebuild even if OUT_DIR already holds a model (config.json)"
    )
    parser.add_argument(
        "--variant",
        choices=VARIANTS,
        default="mono",
        help="checkpoint structure to mirror: mono = facebook/musicgen-small, stereo = facebook/musicgen-stereo-small "
        "(8 interleaved codebooks), melody = facebook/musicgen-melody (chroma conditioning) (default mono)",
    )
    args = parser.parse_args(argv)
    return save_tiny_musicgen(args.out_dir, seed=args.seed, force=args.force, variant=args.variant)
