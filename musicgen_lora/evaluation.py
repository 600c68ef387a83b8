"""Evidence that a fine-tune helped: render the same prompts with the base model and each adapter, and measure.

:func:`run_evaluation` does the work of ``evaluate.py``:

1. **Held-out cross-entropy per codebook** (``ce_q1..ce_qK``, ``ce``, ``ppl``) on each evaluation dataset, with the
   training collator's delay-pattern labels and the training loss code (:func:`~musicgen_lora.trainer.
   codebook_cross_entropy`), for the base model and for every adapter; every adapter is also measured with its
   adapter disabled, which must give the base model's numbers (a check that the right base model is loaded).
2. **Fréchet distances** between generated and reference audio, frame-level, in float64 with the symmetric
   eigendecomposition form: on the model's own EnCodec encoder latents (50 frames/s) and on a weight-free MFCC +
   chroma descriptor (:func:`musicgen_lora.analysis.frame_descriptors`). These are *not* the literature's FAD
   (VGGish embeddings): compare them between models of one evaluation, never with published FAD values.
3. **Prompt adherence**: a prompt that names a tempo ("120 bpm") or a key ("A minor") is compared with the tempo
   and key estimated from each output (:mod:`musicgen_lora.analysis`).
4. **Audio health**: actual vs requested duration, silent and clipped fractions, loudness (BS.1770 LUFS), NaN/Inf.
5. **CLAP** text-audio similarity (optional, a local CLAP checkpoint; audio resampled to its 48 kHz).
6. **Diversity and memorisation**: mean pairwise distance between the samples of one prompt, and the longest run of
   generated code frames found verbatim in the training set's codes.

Outputs (under ``output_dir``): ``<model>/<prompt>-<sample>.wav`` and ``.png`` (spectrogram),
``comparison_results.jsonl`` (one line per file), ``metrics.json`` (one block per model) and ``report.html``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from transformers import PreTrainedModel, ProcessorMixin

from . import analysis
from .audio import write_wav
from .clap import Clap
from .collator import MusicgenCollator
from .config import FinetuneArguments
from .data import (
    AudioSpec,
    chroma_frames_per_code_frame,
    encode_dataset,
    fixed_windows,
    load_split,
    module_fingerprint,
    prepare_split,
    default_cache_root,
)
from .errors import UserError, one_line
from .generation import generate_audio
from .screening import screen_split
from .modeling import is_melody_model, load_model_and_processor
from .trainer import CodebookStats, codebook_cross_entropy

logger = logging.getLogger(__name__)

BASE = "base"
SILENCE_DBFS = -60.0  # a 50 ms window quieter than this (RMS) counts as silent
CLIP_LEVEL = 0.999  # |sample| at or above this counts as clipped (the WAV files are 16-bit PCM in [-1, 1])
FRECHET_NOTE = (
    "Frame-level Fréchet distance (float64, symmetric eigendecomposition form) between generated and reference "
    "audio (the evaluation windows' codes decoded by the same EnCodec, so both sides carry its artefacts): "
    "'encodec_latent' on the evaluated model's own EnCodec encoder output (50 frames/s), 'descriptor' on "
    "weight-free MFCC(20)+chroma(12) frames. Not the literature's VGGish FAD: compare models within this evaluation "
    "only. Lower is closer to the reference; with few frames (see the counts) the estimate is biased upwards."
)


# ----------------------------------------------------------------------------------------------------- inputs


@dataclass
class Prompt:
    """One prompt and what it asks for (parsed from its text unless given explicitly)."""

    text: str
    bpm: float | None = None
    key: str | None = None

    @classmethod
    def parse(cls, text: str, bpm: float | None = None, key: str | None = None) -> Prompt:
        if bpm is None:
            match = re.search(r"(\d{2,3}(?:\.\d+)?)\s*bpm\b", text, flags=re.IGNORECASE)
            bpm = float(match.group(1)) if match else None
        if key is None:
            match = re.search(r"\b([A-G][#b♯♭]?)\s*(major|minor|maj|min)\b", text, flags=re.IGNORECASE)
            if match:
                parsed = analysis.parse_key(f"{match.group(1)} {match.group(2)}")
                key = analysis.key_name(*parsed) if parsed else None
        elif analysis.parse_key(key) is None:
            raise UserError(f"prompt {text!r} has key {key!r}; write a key as '<root> major|minor', e.g. 'A minor'")
        return cls(text, bpm, key)


@dataclass
class ModelSpec:
    name: str
    path: str | None  # None for the base model
    kind: str = "base"  # "base", "lora" (a PEFT adapter folder) or "full" (a whole fine-tuned model folder)


@dataclass
class DatasetSpec:
    name: str
    source: str  # a local folder (raw audio or a prepared dataset) or a Hub id
    split: str | None = None
    held_out: bool = True
    # --config: the training run's own data options (chunking, held-out share, loudness, captions...), so the data is
    # prepared exactly as training prepared it; None: prepared from the evaluation options
    run_args: FinetuneArguments | None = None
    run_seed: int = 42


@dataclass
class EvalSettings:
    """Everything an evaluation needs; built by evaluate.py from its options (or a training config)."""

    base_model: str
    models: list[ModelSpec]
    prompts: list[Prompt]
    output_dir: Path
    duration: float = 8.0
    num_samples: int = 2
    seed: int = 0
    guidance_scale: float = 3.0
    eval_datasets: list[DatasetSpec] = field(default_factory=list)
    train_dataset: DatasetSpec | None = None
    clap_model: str | None = None
    batch_size: int = 4
    max_eval_samples: int | None = None
    max_train_samples: int | None = None
    max_duration_in_seconds: float = 30.0
    min_duration_in_seconds: float = 1.0
    instance_prompt: str | None = None
    text_column_name: str = "text"
    audio_column_name: str = "audio"
    dataset_config_name: str | None = None
    data_cache_dir: str | None = None
    cache_dir: str | None = None
    device: str | None = None


def read_prompts(path: str | Path) -> list[Prompt]:
    """Prompts from a JSON list (strings, or objects with ``text``/``prompt`` and optional ``bpm``/``key``), a
    JSON object with a ``prompts`` list, or a text file with one prompt per line.

    Raises:
        UserError: missing file, bad JSON, or an empty list.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"prompts file '{path}' not found; give a JSON list of prompts (or a .txt, one per line)")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() != ".json":
        items: list[Any] = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"prompts file '{path}' is not valid JSON ({err.msg}, line {err.lineno}); fix it") from None
        if isinstance(items, dict):
            items = items.get("prompts", items.get("test_prompts"))
        if not isinstance(items, list):
            raise UserError(f"prompts file '{path}' must hold a JSON list of prompts, e.g. [\"lofi piano, 80 bpm\"]")
    prompts = []
    for number, item in enumerate(items, start=1):
        if isinstance(item, str) and item.strip():
            prompts.append(Prompt.parse(item.strip()))
        elif isinstance(item, dict) and isinstance(item.get("text", item.get("prompt")), str):
            bpm = item.get("bpm")
            if bpm is not None and (isinstance(bpm, bool) or not isinstance(bpm, (int, float)) or bpm <= 0):
                raise UserError(f"prompt {number} in '{path}' has bpm {bpm!r}; give a positive number or leave it out")
            prompts.append(Prompt.parse(item.get("text", item.get("prompt")).strip(), bpm, item.get("key")))
        else:
            raise UserError(
                f"prompt {number} in '{path}' is {json.dumps(item)[:60]}; each prompt must be a non-empty string or an "
                'object like {"text": "...", "bpm": 120, "key": "A minor"}'
            )
    if not prompts:
        raise UserError(f"prompts file '{path}' holds no prompts; add at least one")
    return prompts


# ------------------------------------------------------------------------------------------------ statistics


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of vectors, (n, dim) and (m, dim), in float64."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need two (n, dim) arrays with the same dim, got {x.shape} and {y.shape}")
    if len(x) < 2 or len(y) < 2:
        raise ValueError("need at least two vectors in each set")
    return frechet_distance_from_stats(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance_from_stats(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2)``.

    The trace term uses only symmetric eigendecompositions (``S1^1/2`` and the eigenvalues of the symmetric
    ``S1^1/2 S2 S1^1/2``, negative round-off clipped to 0) instead of ``sqrtm(S1 S2)`` of a non-symmetric product,
    whose complex round-off the usual FID code has to discard; the result is never negative.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    value = float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)
    return max(value, 0.0)


def longest_common_run(generated: np.ndarray, corpus: list[np.ndarray], cache: dict | None = None) -> int:
    """Length of the longest run of consecutive frames of ``generated`` that occurs verbatim in one corpus item.

    Args:
        generated: (T, width) integer tokens (a frame per row; width = codebooks compared jointly).
        corpus: items of shape (T_i, width).
        cache: dict reused across calls with the same corpus (the corpus' n-grams per length).
    """
    cache = {} if cache is None else cache

    def grams(tokens: np.ndarray, length: int) -> list[bytes]:
        if len(tokens) < length:
            return []
        windows = np.lib.stride_tricks.sliding_window_view(np.ascontiguousarray(tokens), length, axis=0)
        flat = np.ascontiguousarray(windows.reshape(windows.shape[0], -1))
        return [row.tobytes() for row in flat]

    def occurs(length: int) -> bool:
        if length not in cache:
            cache[length] = {g for item in corpus for g in grams(item, length)}
        return any(g in cache[length] for g in grams(generated, length))

    low, high = 0, len(generated)
    while low < high:  # the longest shared length L: every shorter length is shared too
        middle = (low + high + 1) // 2
        if occurs(middle):
            low = middle
        else:
            high = middle - 1
    return low


def audio_health(audio: np.ndarray, sr: int, requested_seconds: float) -> dict[str, Any]:
    """Duration, silence, clipping, loudness and non-finite samples of float audio (channels, samples)."""
    audio = np.asarray(audio, dtype=np.float64)
    audio = audio[None] if audio.ndim == 1 else audio
    finite = np.isfinite(audio)
    clean = np.where(finite, audio, 0.0)
    seconds = audio.shape[-1] / sr
    window = max(1, int(0.05 * sr))
    count = audio.shape[-1] // window
    if count:
        blocks = clean[:, : count * window].reshape(audio.shape[0], count, window)
        rms = np.sqrt((blocks**2).mean(axis=(0, 2)))
        silent = float((20 * np.log10(np.maximum(rms, 1e-12)) < SILENCE_DBFS).mean())
    else:
        silent = 1.0
    loudness = analysis.integrated_loudness(clean, sr)
    peak = float(np.abs(clean).max()) if clean.size else 0.0
    return {
        "duration": seconds,
        "requested_duration": requested_seconds,
        "duration_ratio": seconds / requested_seconds if requested_seconds > 0 else None,
        "silent_fraction": silent,
        "clipping_fraction": float((np.abs(clean) >= CLIP_LEVEL).mean()),
        "peak_dbfs": 20 * math.log10(peak) if peak > 0 else None,
        "loudness_lufs": loudness if math.isfinite(loudness) else None,  # None: silent (below the -70 LUFS gate)
        "nan_samples": int(np.isnan(audio).sum()),
        "inf_samples": int(np.isinf(audio).sum()),
    }


def adherence(audio: np.ndarray, sr: int, prompt: Prompt) -> dict[str, Any]:
    """Estimated tempo and key of ``audio``, and their error against what the prompt asked for."""
    tempo = analysis.estimate_tempo(audio, sr)
    key = analysis.estimate_key(audio, sr)
    result: dict[str, Any] = {
        "estimated_bpm": tempo.bpm if tempo else None,
        "estimated_key": key.key if key else None,
        "target_bpm": prompt.bpm,
        "target_key": prompt.key,
    }
    if prompt.bpm is not None:
        if tempo is None:
            result.update(tempo_rel_error=None, tempo_within_4pct=False, tempo_within_4pct_any_octave=False)
        else:
            error = analysis.tempo_error(tempo.bpm, prompt.bpm)
            result.update(
                tempo_abs_error=error["abs_error_bpm"],
                tempo_rel_error=error["rel_error"],
                tempo_within_4pct=error["rel_error"] <= 0.04,
                tempo_within_4pct_any_octave=error["rel_error_any_octave"] <= 0.04,
            )
    if prompt.key is not None:
        target = analysis.parse_key(prompt.key)
        score, relation = analysis.key_score((key.tonic, key.mode), target) if key else (0.0, "none")
        result.update(key_score=score, key_relation=relation)
    return result


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(values)) if values else None


# ------------------------------------------------------------------------------------------------ spectrogram

# 9 anchors of a perceptually ordered dark-to-bright palette (close to matplotlib's "magma")
_PALETTE = np.array(
    [[0, 0, 4], [28, 16, 68], [79, 18, 123], [129, 37, 129], [181, 54, 122], [229, 80, 100], [251, 135, 97],
     [254, 194, 135], [252, 253, 191]], dtype=np.float64,
)  # fmt: skip


def spectrogram_image(audio: np.ndarray, sr: int, height: int = 128, max_width: int = 640) -> np.ndarray:
    """A log-mel spectrogram as an RGB image (height, width, 3) uint8, low frequencies at the bottom, 80 dB range."""
    x = analysis.to_mono(np.nan_to_num(np.asarray(audio, dtype=np.float64)))
    n_fft = 4096  # 7.8 Hz bins at 32 kHz: the lowest mel bands are not empty
    hop = max(256, int(math.ceil(len(x) / max_width)))
    mag = analysis.stft_magnitude(x, n_fft, hop)
    mel = analysis._mel_filterbank(sr, n_fft, height, fmin=30.0) @ (mag.T**2)  # (height, frames)
    db = 10 * np.log10(np.maximum(mel, 1e-10))
    level = np.clip((db - (db.max() - 80.0)) / 80.0, 0.0, 1.0)[::-1]  # (height, frames), 0..1
    position = level * (len(_PALETTE) - 1)
    low = np.floor(position).astype(int).clip(0, len(_PALETTE) - 2)
    frac = (position - low)[..., None]
    rgb = _PALETTE[low] * (1 - frac) + _PALETTE[low + 1] * frac
    return rgb.round().astype(np.uint8)


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB uint8 image (height, width, 3) as a PNG (zlib only, no imaging library)."""
    import struct
    import zlib

    height, width, _ = image.shape
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    Path(path).write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    )


# ------------------------------------------------------------------------------------------------- models


def classify_model_dir(name: str, path: str) -> ModelSpec:
    """``NAME=DIR`` of the command line -> a LoRA adapter folder or a fully fine-tuned model folder.

    Raises:
        UserError: the folder is missing or holds neither.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise UserError(f"model '{name}': folder '{path}' not found; point --model {name}=DIR at a training output_dir")
    if (folder / "adapter_config.json").is_file():
        return ModelSpec(name, str(folder), "lora")
    if (folder / "config.json").is_file():
        return ModelSpec(name, str(folder), "full")
    raise UserError(
        f"model '{name}': '{path}' holds no adapter (adapter_config.json) or model (config.json); point it at a "
        "training output_dir or one of its checkpoint-N folders"
    )


@contextlib.contextmanager
def adapted(base: PreTrainedModel, spec: ModelSpec, cache_dir: str | None) -> Iterator[torch.nn.Module]:
    """The model to evaluate for ``spec``: the base itself, the base with a LoRA adapter, or a full model.

    A LoRA adapter is injected into ``base`` and removed again afterwards (``unload``), so the same base weights
    serve every adapter.
    """
    if spec.kind == "base":
        yield base
        return
    if spec.kind == "full":
        from transformers import AutoModelForTextToWaveform

        from .modeling import prepare_for_training

        try:
            model = AutoModelForTextToWaveform.from_pretrained(spec.path, cache_dir=cache_dir)
        except (OSError, ValueError) as err:
            raise UserError(f"cannot load model '{spec.name}' from '{spec.path}': {one_line(err)[:200]}; check the folder") from None
        prepare_for_training(model)
        yield model.to(next(base.parameters()).device).eval()
        return
    from peft import PeftModel

    try:
        model = PeftModel.from_pretrained(base, spec.path)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise UserError(
            f"cannot load adapter '{spec.name}' from '{spec.path}' onto the base model: {one_line(err)[:200]}; check "
            "that --base_model is the model the adapter was trained from"
        ) from None
    model.eval()
    try:
        yield model
    finally:
        model.unload()  # restores the original modules of `base` (no merge)


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


# ------------------------------------------------------------------------------------------------- datasets


def _data_args(settings: EvalSettings, spec: DatasetSpec) -> FinetuneArguments:
    return FinetuneArguments(
        dataset_name=spec.source,
        dataset_config_name=settings.dataset_config_name,
        train_split_name=spec.split or "train",
        audio_column_name=settings.audio_column_name,
        text_column_name=settings.text_column_name,
        instance_prompt=settings.instance_prompt,
        max_duration_in_seconds=settings.max_duration_in_seconds,
        min_duration_in_seconds=settings.min_duration_in_seconds,
        max_eval_samples=settings.max_eval_samples,
        max_train_samples=settings.max_eval_samples,
        data_cache_dir=settings.data_cache_dir,
        cache_dir=settings.cache_dir,
    )


def is_prepared_dataset(path: str | Path) -> bool:
    """A folder written by ``datasets.Dataset.save_to_disk`` (codes already computed)."""
    folder = Path(path).expanduser()
    return folder.is_dir() and (folder / "dataset_info.json").is_file() and (folder / "state.json").is_file()


def prepared_folder(source: str, split: str | None) -> Path | None:
    """The prepared dataset at ``source`` or ``source/split`` (e.g. a run's ``prepared_data/eval``), else None."""
    folder = Path(source).expanduser()
    for candidate in ([folder / split] if split else []) + [folder]:
        if is_prepared_dataset(candidate):
            return candidate
    return None


def resolve_split(source: str, split: str | None) -> str | None:
    """For a local folder without an explicit split: its ``validation/``, ``test/`` or ``eval/`` subfolder if any."""
    folder = Path(source).expanduser()
    if split is None and folder.is_dir():
        for candidate in ("validation", "valid", "test", "eval"):
            if (folder / candidate).is_dir():
                return candidate
    return split


def _load_prepared(folder: Path, limit: int | None) -> datasets.Dataset:
    prepared = datasets.load_from_disk(str(folder))
    if "codes" not in prepared.column_names or "text" not in prepared.column_names:
        raise UserError(
            f"prepared dataset '{folder}' has columns {', '.join(prepared.column_names)}; it needs 'codes' and 'text' "
            "(or point --eval_dataset at the raw audio folder)"
        )
    return prepared.select(range(min(limit, len(prepared)))) if limit is not None else prepared


@dataclass
class EvalData:
    """One evaluation dataset: fixed windows for the cross-entropy, and reference audio for the Fréchet distance."""

    spec: DatasetSpec
    windows: datasets.Dataset  # columns codes (K, frames), text (and chroma for melody models)
    reference_audio: list[np.ndarray]  # each window's codes decoded by the model's EnCodec, (channels, samples)


def load_eval_data(
    settings: EvalSettings, spec: DatasetSpec, model: PreTrainedModel, processor: ProcessorMixin, codec_fingerprint: str
) -> EvalData:
    """Fixed windows of one evaluation dataset (encoded once, cached) and their audio for the Fréchet reference.

    The reference audio is each window's codes decoded by the evaluated model's own EnCodec, so that reference and
    generated audio both carry the codec's artefacts and the distance measures the language model alone.
    """
    audio_spec = AudioSpec.of(model)
    chroma_extractor = processor.feature_extractor if is_melody_model(model) else None
    prepared = prepared_folder(spec.source, spec.split) if spec.run_args is None else None
    if spec.run_args is not None:  # exactly as the training run prepared it
        args = dataclasses.replace(spec.run_args, max_eval_samples=settings.max_eval_samples or spec.run_args.max_eval_samples)
        split = spec.split or args.train_split_name
        windows = prepare_split(args, split, model, codec_fingerprint, True, chroma_extractor, spec.run_seed)
    elif prepared is not None:
        dataset = _load_prepared(prepared, settings.max_eval_samples)
        max_frames = int(settings.max_duration_in_seconds * audio_spec.frame_rate)
        min_frames = max(1, int(settings.min_duration_in_seconds * audio_spec.frame_rate))
        ratio = chroma_frames_per_code_frame(chroma_extractor, audio_spec) if chroma_extractor is not None else None
        columns = [c for c in ("codes", "text", "chroma") if c in dataset.column_names]
        windows = fixed_windows(dataset.select_columns(columns), max_frames, min_frames, ratio)
    else:
        args = _data_args(settings, spec)
        windows = prepare_split(args, args.train_split_name, model, codec_fingerprint, True, chroma_extractor)
    reference = [decode_codes(model, np.asarray(codes)) for codes in windows["codes"]]
    return EvalData(spec, windows, reference)


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


def load_training_codes(settings: EvalSettings, model: PreTrainedModel, codec_fingerprint: str) -> list[np.ndarray] | None:
    """Codes (frames, K) of every training clip, for the memorisation check (None without a training dataset)."""
    spec = settings.train_dataset
    if spec is None:
        return None
    prepared = prepared_folder(spec.source, spec.split or "train") if spec.run_args is None else None
    if spec.run_args is not None:  # the clips (or chunks) the run trained on
        args = spec.run_args
        codes = prepare_split(args, args.train_split_name, model, codec_fingerprint, False, None, spec.run_seed)["codes"]
    elif prepared is not None:
        codes = _load_prepared(prepared, settings.max_train_samples)["codes"]
    else:
        args = _data_args(settings, spec)
        raw = load_split(args, args.train_split_name)
        if settings.max_train_samples is not None:  # as in training: the first N clips
            raw = raw.select(range(min(settings.max_train_samples, len(raw))))
        cache_root = Path(settings.data_cache_dir).expanduser() if settings.data_cache_dir else default_cache_root()
        raw = screen_split(raw, args.dataset_name, args.train_split_name, cache_root, args.strict, {})  # as training
        codes = encode_dataset(raw, model, cache_root, codec_fingerprint)["codes"]
    return [np.asarray(c, dtype=np.int16).T.copy() for c in codes]


# ------------------------------------------------------------------------------------------------- metrics


@torch.no_grad()
def heldout_cross_entropy(
    model: torch.nn.Module, windows: datasets.Dataset, collator: MusicgenCollator, batch_size: int
) -> dict[str, float]:
    """Per-codebook cross-entropy over every target of ``windows``, exactly as training's eval loop computes it.

    Returns:
        ``ce_q1..ce_qK``, ``ce`` (the mean over all targets), ``ppl``, and ``targets`` (how many were counted).
    """
    evaluation = collator.for_evaluation()
    device = next(model.parameters()).device
    stats = CodebookStats()
    targets = 0
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(windows), batch_size):
            rows = [windows[i] for i in range(start, min(start + batch_size, len(windows)))]
            batch = {k: v.to(device) for k, v in evaluation(rows).items()}
            logits = model(**batch).logits
            sums, counts = codebook_cross_entropy(logits, batch["labels"])
            stats.add(sums.cpu(), counts.cpu())
            targets += int(counts.sum())
    finally:
        model.train(was_training)
    metrics = stats.report(lambda tensor: tensor)
    metrics["targets"] = targets
    return metrics


@torch.no_grad()
def encodec_latents(model: PreTrainedModel, audio: np.ndarray) -> np.ndarray:
    """The EnCodec encoder's continuous output for (channels, samples) audio: (frames, dim), channels pooled."""
    device = next(model.audio_encoder.parameters()).device
    frames = []
    for channel in np.asarray(audio, dtype=np.float32):
        x = torch.from_numpy(np.nan_to_num(channel)).to(device)[None, None]  # (1, 1, samples)
        frames.append(model.audio_encoder.encoder(x)[0].T.double().cpu().numpy())  # (frames, dim)
    return np.concatenate(frames, axis=0)


def _frechet_block(generated: list[np.ndarray], reference: list[np.ndarray]) -> dict[str, Any]:
    gen, ref = np.concatenate(generated), np.concatenate(reference)
    block: dict[str, Any] = {
        "generated_clips": len(generated), "generated_frames": int(len(gen)),
        "reference_clips": len(reference), "reference_frames": int(len(ref)), "dim": int(gen.shape[1]),
    }  # fmt: skip
    block["value"] = frechet_distance(gen, ref) if len(gen) >= 2 and len(ref) >= 2 else None
    block["reliable"] = bool(min(len(gen), len(ref)) >= 2 * gen.shape[1])  # enough frames for a full-rank covariance
    return block


def pairwise_distance(vectors: list[np.ndarray]) -> float | None:
    """Mean Euclidean distance over all pairs (None for fewer than two)."""
    if len(vectors) < 2:
        return None
    distances = [float(np.linalg.norm(a - b)) for i, a in enumerate(vectors) for b in vectors[i + 1 :]]
    return float(np.mean(distances))


class ClapScorer:
    """Cosine similarity between CLAP's text and audio embeddings (laion CLAP checkpoints in transformers' format)."""

    def __init__(self, path: str, device: torch.device):
        self.clap = Clap(path, "--clap_model", device)

    def score(self, text: str, audios: list[np.ndarray], sr: int) -> list[float]:
        # clips over CLAP's 10 s window are cropped at a random place: seed 0 makes it reproducible
        audio_embeds = self.clap.audio_embeddings(audios, sr, seed=0)
        text_embeds = self.clap.text_embeddings([text])
        return [float(v) for v in (audio_embeds @ text_embeds.T)[:, 0]]


# ------------------------------------------------------------------------------------------------- the run


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-model means of the per-file metrics."""
    health = {
        "files": len(records),
        "duration_ratio_min": min((r["duration_ratio"] for r in records), default=None),
        "duration_ratio_mean": _mean([r["duration_ratio"] for r in records]),
        "silent_fraction_mean": _mean([r["silent_fraction"] for r in records]),
        "clipping_fraction_mean": _mean([r["clipping_fraction"] for r in records]),
        "loudness_lufs_mean": _mean([r["loudness_lufs"] for r in records]),
        "files_with_nonfinite_samples": sum(1 for r in records if r["nan_samples"] or r["inf_samples"]),
    }
    with_bpm = [r for r in records if r["target_bpm"] is not None]
    with_key = [r for r in records if r["target_key"] is not None]
    adherence_summary = {
        "files_with_target_bpm": len(with_bpm),
        "tempo_rel_error_mean": _mean([r.get("tempo_rel_error") for r in with_bpm]),
        "tempo_within_4pct": _mean([float(r["tempo_within_4pct"]) for r in with_bpm]),
        "tempo_within_4pct_any_octave": _mean([float(r["tempo_within_4pct_any_octave"]) for r in with_bpm]),
        "files_with_target_key": len(with_key),
        "key_score_mean": _mean([r["key_score"] for r in with_key]),
        "key_exact": _mean([float(r["key_score"] == 1.0) for r in with_key]),
    }
    summary = {"health": health, "adherence": adherence_summary}
    if any("clap_score" in r for r in records):
        summary["clap_score_mean"] = _mean([r.get("clap_score") for r in records])
    return summary


def run_evaluation(settings: EvalSettings) -> dict[str, Any]:
    """Generate, measure and report; see the module docstring. Returns ``{"output_dir", "metrics", "records",
    "report"}``."""
    from .report import write_report

    started = time.perf_counter()
    out = Path(settings.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(settings.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    base, processor = load_model_and_processor(
        FinetuneArguments(model_name_or_path=settings.base_model, cache_dir=settings.cache_dir)
    )
    base.to(device).eval()
    spec = AudioSpec.of(base)
    sr = spec.sampling_rate
    codec_fingerprint = module_fingerprint(base.audio_encoder)
    clap = ClapScorer(settings.clap_model, device) if settings.clap_model else None

    eval_data = [load_eval_data(settings, d, base, processor, codec_fingerprint) for d in settings.eval_datasets]
    training_codes = load_training_codes(settings, base, codec_fingerprint)
    gram_caches: dict[str, dict] = {"joint": {}, "q1": {}}
    reference_latents = {d.spec.name: [encodec_latents(base, a) for a in d.reference_audio] for d in eval_data}
    reference_descriptors = {
        d.spec.name: [analysis.frame_descriptors(a, sr) for a in d.reference_audio] for d in eval_data
    }
    decoder_config = base.config.decoder
    collator = MusicgenCollator(
        tokenizer=processor.tokenizer,
        pad_token_id=decoder_config.pad_token_id,
        decoder_start_token_id=decoder_config.decoder_start_token_id,
        max_frames=int(settings.max_duration_in_seconds * spec.frame_rate),
        random_crop=False,
        audio_channels=decoder_config.audio_channels,
        chroma_per_frame=(
            chroma_frames_per_code_frame(processor.feature_extractor, spec) if is_melody_model(base) else None
        ),
    )

    all_specs = [ModelSpec(BASE, None, "base"), *settings.models]
    records: list[dict[str, Any]] = []
    blocks: dict[str, dict[str, Any]] = {}
    clip_vectors: dict[str, dict[int, list[np.ndarray]]] = {}
    latents: dict[str, list[np.ndarray]] = {}
    descriptors: dict[str, list[np.ndarray]] = {}
    for model_spec in all_specs:
        logger.info("Evaluating model '%s'%s", model_spec.name, f" ({model_spec.path})" if model_spec.path else "")
        block: dict[str, Any] = {"path": model_spec.path, "kind": model_spec.kind}
        model_dir = out / model_spec.name
        model_dir.mkdir(parents=True, exist_ok=True)
        with adapted(base, model_spec, settings.cache_dir) as model:
            block["cross_entropy"] = {
                d.spec.name: {**heldout_cross_entropy(model, d.windows, collator, settings.batch_size),
                              "windows": len(d.windows), "held_out": d.spec.held_out}
                for d in eval_data
            }  # fmt: skip
            if model_spec.kind == "lora":
                with model.disable_adapter():
                    block["cross_entropy_adapter_disabled"] = {
                        d.spec.name: heldout_cross_entropy(model, d.windows, collator, settings.batch_size)
                        for d in eval_data
                    }
            model_records = []
            latents[model_spec.name], descriptors[model_spec.name] = [], []
            clip_vectors[model_spec.name] = {}
            for index, prompt in enumerate(settings.prompts):
                seed = settings.seed + index
                with captured_codes(model) as calls:
                    audio = generate_audio(
                        model, processor, [prompt.text] * settings.num_samples, settings.duration,
                        guidance_scale=settings.guidance_scale, seed=seed,
                    )  # (num_samples, channels, samples)  # fmt: skip
                codes = generated_codes(calls)  # (num_samples, K, T)
                clap_scores = clap.score(prompt.text, list(audio), sr) if clap else None
                for sample, clip in enumerate(audio):
                    wav = model_dir / f"{index}-{sample}.wav"
                    png = wav.with_suffix(".png")
                    write_wav(wav, np.nan_to_num(clip), sr)
                    write_png(png, spectrogram_image(clip, sr))
                    record: dict[str, Any] = {
                        "model": model_spec.name, "model_path": model_spec.path, "prompt_index": index,
                        "prompt": prompt.text, "sample": sample, "seed": seed, "batch_row": sample,
                        "path": _relative(wav, out), "spectrogram": _relative(png, out),
                    }  # fmt: skip
                    record.update(audio_health(clip, sr, settings.duration))
                    clean = np.nan_to_num(clip)
                    record.update(adherence(clean, sr, prompt))
                    if clap_scores is not None:
                        record["clap_score"] = clap_scores[sample]
                    if training_codes is not None:
                        frames = codes[sample].T.astype(np.int16)  # (T, K)
                        joint = longest_common_run(frames, training_codes, gram_caches["joint"])
                        first = longest_common_run(frames[:, :1], [c[:, :1] for c in training_codes], gram_caches["q1"])
                        record.update(
                            copied_run_frames=joint, copied_run_seconds=joint / spec.frame_rate,
                            copied_run_frames_q1=first, generated_frames=int(frames.shape[0]),
                        )  # fmt: skip
                    latent = encodec_latents(base, clean)
                    descriptor = analysis.frame_descriptors(clean, sr)
                    latents[model_spec.name].append(latent)
                    descriptors[model_spec.name].append(descriptor)
                    clip_vectors[model_spec.name].setdefault(index, []).append(descriptor.mean(axis=0))
                    model_records.append(record)
                    records.append(record)
        block.update(_summarise(model_records))
        blocks[model_spec.name] = block

    # Fréchet distances, diversity and memorisation need every model's outputs (and one common scale)
    all_clip_vectors = np.stack([v for per_model in clip_vectors.values() for vs in per_model.values() for v in vs])
    scale = all_clip_vectors.std(axis=0) + 1e-9
    for name, block in blocks.items():
        block["frechet"] = {
            d.spec.name: {
                "encodec_latent": _frechet_block(latents[name], reference_latents[d.spec.name]),
                "descriptor": _frechet_block(descriptors[name], reference_descriptors[d.spec.name]),
            }
            for d in eval_data
        }
        per_prompt = [pairwise_distance([v / scale for v in vs]) for _, vs in sorted(clip_vectors[name].items())]
        block["diversity"] = {
            "pairwise_descriptor_distance_mean": _mean(per_prompt),
            "per_prompt": per_prompt,
            "note": "mean distance between the samples of one prompt (clip-mean MFCC+chroma, each dimension divided "
            "by its spread over all generated clips); 0 means identical samples",
        }
        model_records = [r for r in records if r["model"] == name]
        if training_codes is not None:
            block["memorisation"] = {
                "training_clips": len(training_codes),
                "longest_copied_run_frames": max(r["copied_run_frames"] for r in model_records),
                "longest_copied_run_seconds": max(r["copied_run_seconds"] for r in model_records),
                "longest_copied_run_frames_q1": max(r["copied_run_frames_q1"] for r in model_records),
                "mean_copied_run_frames": _mean([r["copied_run_frames"] for r in model_records]),
                "note": "longest run of consecutive generated frames (all codebooks equal) found verbatim in one "
                "training clip's codes; _q1: first codebook only",
            }
        else:
            block["memorisation"] = None

    consistency = {}
    for name, block in blocks.items():
        disabled = block.get("cross_entropy_adapter_disabled")
        if disabled:
            consistency[name] = max(
                abs(disabled[d]["ce"] - blocks[BASE]["cross_entropy"][d]["ce"]) for d in disabled
            )
    metrics = {
        "settings": {
            "base_model": settings.base_model,
            "models": {m.name: m.path for m in settings.models},
            "prompts": [p.__dict__ for p in settings.prompts],
            "duration": settings.duration, "num_samples": settings.num_samples, "seed": settings.seed,
            "guidance_scale": settings.guidance_scale, "sampling_rate": sr,
            "eval_datasets": [_describe_dataset(d) for d in settings.eval_datasets],
            "train_dataset": _describe_dataset(settings.train_dataset) if settings.train_dataset else None,
            "clap_model": settings.clap_model, "device": str(device),
        },  # fmt: skip
        "models": blocks,
        "checks": {"adapter_disabled_ce_max_abs_diff_from_base": consistency},
        "notes": {"frechet": FRECHET_NOTE},
        "seconds": round(time.perf_counter() - started, 2),
    }
    (out / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=2) + "\n", encoding="utf-8")
    with (out / "comparison_results.jsonl").open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(_jsonable(record)) + "\n")
    report = write_report(out, metrics, records)
    logger.info("Wrote %d files, metrics.json and %s in %.1f s", len(records), report, time.perf_counter() - started)
    for line in summary_lines(metrics):
        logger.info(line)
    return {"output_dir": str(out), "metrics": metrics, "records": records, "report": str(report)}


def _describe_dataset(spec: DatasetSpec) -> dict[str, Any]:
    return {
        "name": spec.name, "source": spec.source, "split": spec.split, "held_out": spec.held_out,
        "prepared_as_in_training": spec.run_args is not None,
    }  # fmt: skip


def summary_lines(metrics: dict[str, Any]) -> list[str]:
    """One line per model with the headline numbers (first evaluation dataset), for the log."""
    lines = []
    for name, block in metrics["models"].items():
        parts = [f"{name}:"]
        for dataset, ce in list(block.get("cross_entropy", {}).items())[:1]:
            parts.append(f"ce[{dataset}]={ce['ce']:.4f}")
        for dataset, frechet in list(block.get("frechet", {}).items())[:1]:
            value = frechet["encodec_latent"]["value"]
            parts.append(f"fd_latent[{dataset}]=" + ("n/a" if value is None else f"{value:.4g}"))
        adherence_block = block["adherence"]
        if adherence_block["files_with_target_bpm"]:
            parts.append(f"tempo_ok={adherence_block['tempo_within_4pct']:.0%}")
        if adherence_block["files_with_target_key"]:
            parts.append(f"key_score={adherence_block['key_score_mean']:.2f}")
        loudness = block["health"]["loudness_lufs_mean"]
        parts.append("loudness=" + ("silent" if loudness is None else f"{loudness:.1f} LUFS"))
        lines.append(" ".join(parts))
    return lines


def _jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, non-finite floats to None (JSON has no NaN/Infinity)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    return value
