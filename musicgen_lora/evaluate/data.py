"""The data of an evaluation: held-out windows with their reference audio, and the training codes for the memorisation
check, prepared exactly as training prepared them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
from transformers import PreTrainedModel, ProcessorMixin

from ..config.arguments import DataArguments
from ..errors import UserError
from ..files import cache_root, is_saved_dataset
from ..logs import progress
from ..memorisation.melody import DEFAULT_MELODY_THRESHOLD
from ..models.codec import decode_codes
from ..models.loading import is_melody_model
from ..models.spec import AudioSpec, chroma_frames_per_code_frame
from ..prepare.chunking import fixed_windows
from ..prepare.context import PrepareContext
from ..prepare.encoding import encode_dataset
from ..prepare.pipeline import prepare_split
from ..prepare.screening import screen_split
from ..prepare.sources import load_split, source_names
from ..train.copy_score import DEFAULT_COPY_THRESHOLD
from .bootstrap import DEFAULT_BOOTSTRAP_SEED, DEFAULT_RESAMPLES
from .models import ModelSpec
from .prompts import Prompt


@dataclass
class DatasetSpec:
    name: str
    source: str  # a local folder (raw audio or a prepared dataset) or a Hub id
    split: str | None = None
    held_out: bool = True
    # --config: the training run's own data options (chunking, held-out share, loudness, captions...), so the data is
    # prepared exactly as training prepared it; None: prepared from the evaluation options
    run_args: DataArguments | None = None
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
    copy_threshold: float = DEFAULT_COPY_THRESHOLD
    melody_threshold: float = DEFAULT_MELODY_THRESHOLD
    melody_check: bool = True  # decode the training codes for the melodic similarity
    generation_batch_size: int = 8  # clips per generate() call, prompts and samples mixed
    bootstrap_resamples: int = DEFAULT_RESAMPLES
    bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED


def _data_args(settings: EvalSettings, spec: DatasetSpec) -> DataArguments:
    return DataArguments(
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
    )


def prepared_folder(source: str, split: str | None) -> Path | None:
    """The prepared dataset at ``source`` or ``source/split`` (e.g. a run's ``prepared_data/eval``), else None."""
    folder = Path(source).expanduser()
    for candidate in ([folder / split] if split else []) + [folder]:
        if is_saved_dataset(candidate):
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
        args = dataclasses.replace(
            spec.run_args, max_eval_samples=settings.max_eval_samples or spec.run_args.max_eval_samples
        )
        split = spec.split or args.train_split_name
        context = PrepareContext(args, model, codec_fingerprint, chroma_extractor, spec.run_seed, settings.cache_dir)
        windows = prepare_split(context, split, True).examples
    elif prepared is not None:
        dataset = _load_prepared(prepared, settings.max_eval_samples)
        max_frames = audio_spec.frames(settings.max_duration_in_seconds)
        min_frames = max(1, audio_spec.frames(settings.min_duration_in_seconds))
        ratio = chroma_frames_per_code_frame(chroma_extractor, audio_spec) if chroma_extractor is not None else None
        columns = [c for c in ("codes", "text", "chroma") if c in dataset.column_names]
        windows = fixed_windows(dataset.select_columns(columns), max_frames, min_frames, ratio)
    else:
        args = _data_args(settings, spec)
        context = PrepareContext(args, model, codec_fingerprint, chroma_extractor, hub_cache_dir=settings.cache_dir)
        windows = prepare_split(context, args.train_split_name, True).examples
    clips = progress(iterable=windows["codes"], desc="Decoding the reference clips", unit="clip")
    reference = [decode_codes(model, np.asarray(codes)) for codes in clips]
    return EvalData(spec, windows, reference)


def load_training_codes(
    settings: EvalSettings, model: PreTrainedModel, codec_fingerprint: str
) -> datasets.Dataset | None:
    """Every training clip's ``codes`` (K, frames), with ``source``/``offset_seconds`` when the data has them, for the
    memorisation check (None without a training dataset)."""
    spec = settings.train_dataset
    if spec is None:
        return None
    prepared = prepared_folder(spec.source, spec.split or "train") if spec.run_args is None else None
    if spec.run_args is not None:  # the clips (or chunks) the run trained on
        args = spec.run_args
        context = PrepareContext(args, model, codec_fingerprint, seed=spec.run_seed, hub_cache_dir=settings.cache_dir)
        return prepare_split(context, args.train_split_name, False).examples
    if prepared is not None:
        return _load_prepared(prepared, settings.max_train_samples)
    args = _data_args(settings, spec)
    raw = load_split(args, args.train_split_name, settings.cache_dir)
    if settings.max_train_samples is not None:  # as in training: the first N clips
        raw = raw.select(range(min(settings.max_train_samples, len(raw))))
    root = cache_root(settings.data_cache_dir)
    raw, _ = screen_split(raw, args.dataset_name, args.train_split_name, root, args.strict)  # as training
    encoded = encode_dataset(raw, model, root, codec_fingerprint)
    if "source" not in encoded.column_names:  # each clip named as training names it (the file, as in the dataset)
        encoded = encoded.add_column("source", source_names(raw, args, args.train_split_name))
    return encoded
