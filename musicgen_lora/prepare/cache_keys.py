"""Cache keys of the encoded codes: the identity of the audio (files, or a Hub dataset's content), of the codec's
weights (remembered by the model files' identity) and of the settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import datasets
import torch
from huggingface_hub import try_to_load_from_cache
from transformers import PreTrainedModel

from ..audio.io import describe_source
from ..config.arguments import ModelArguments
from ..files import atomic_write_json, file_identity, files_fingerprint, read_json_object
from ..models.spec import AudioSpec


def module_fingerprint(module: torch.nn.Module) -> str:
    """A hash of a module's weights and buffers (the cache must change when the codec changes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str((tuple(tensor.shape), tensor.dtype)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


ROWS_PER_READ = 32  # rows of audio read at once while fingerprinting a split
CODEC_FINGERPRINTS_NAME = "codec-fingerprints.json"


def model_files_identity(model_args: ModelArguments) -> str | None:
    """Names, sizes and modification times of the model's files (a local folder, or a Hub id's cached snapshot);
    None when they cannot be found without loading the model."""
    folder = Path(model_args.model_name_or_path).expanduser()
    if not folder.is_dir():
        config_file = try_to_load_from_cache(
            model_args.model_name_or_path, "config.json", cache_dir=model_args.cache_dir
        )
        if not isinstance(config_file, str):
            return None
        folder = Path(config_file).parent
    return files_fingerprint(folder)


def _known_codec_fingerprints(root: Path) -> dict[str, str]:
    known = read_json_object(root / CODEC_FINGERPRINTS_NAME)
    return {k: v for k, v in known.items() if isinstance(v, str)}


def remembered_codec_fingerprint(model_args: ModelArguments, root: Path, identity: str | None = None) -> str | None:
    """The :func:`module_fingerprint` of the model's EnCodec computed by an earlier run from these same model files
    (see :func:`codec_fingerprint`), so that a run with nothing to prepare need not load the model; None if unknown.

    Args:
        root: the cache folder (``data_cache_dir``) where it is remembered.
        identity: :func:`model_files_identity`, when the caller has it already.
    """
    identity = identity or model_files_identity(model_args)
    return _known_codec_fingerprints(root).get(identity) if identity is not None else None


def codec_fingerprint(model_args: ModelArguments, root: Path, model: PreTrainedModel) -> str:
    """:func:`module_fingerprint` of ``model``'s EnCodec, remembered in the cache folder ``root`` by the identity of
    the model files it was loaded from (hashing the 32 kHz codec's weights takes about 0.25 s on a CPU)."""
    identity = model_files_identity(model_args)
    remembered = remembered_codec_fingerprint(model_args, root, identity)
    if remembered is not None:
        return remembered
    fingerprint = module_fingerprint(model.audio_encoder)
    if identity is not None:
        known = {**_known_codec_fingerprints(root), identity: fingerprint}
        atomic_write_json(
            root / CODEC_FINGERPRINTS_NAME, known, indent=1
        )  # processes preparing at once never read half a file
    return fingerprint


def chroma_settings(extractor: Any) -> dict[str, Any]:
    return {k: getattr(extractor, k) for k in ("sampling_rate", "hop_length", "n_fft", "feature_size")}


def encoding_settings(
    codec_fingerprint: str, spec: AudioSpec, chroma_extractor: Any = None, loudness_lufs: float | None = None
) -> str:
    """Everything besides the audio that shapes the codes: the codec's weights, the audio format, chroma, loudness."""
    chroma = chroma_settings(chroma_extractor) if chroma_extractor is not None else None
    settings = [codec_fingerprint, spec.sampling_rate, spec.channels, chroma]
    if loudness_lufs is not None:  # appended only when set, so caches made without it stay valid
        settings.append(["loudness", loudness_lufs])
    return json.dumps(settings)


def codes_key(settings: str, columns: dict[str, list]) -> str:
    """Cache key of the codes of some rows: the settings and, per audio column, each row's audio identity (a file's
    path, size and modification time; a hash of in-memory audio bytes, as Hub datasets hold them)."""
    digest = hashlib.sha256(settings.encode())
    for values in columns.values():
        digest.update(json.dumps([file_identity(a) or describe_source(a) for a in values]).encode())
    return digest.hexdigest()[:24]


def audio_columns(dataset: datasets.Dataset) -> list[str]:
    """The columns of a loaded split that hold audio (the clip, and a melody model's conditioning audio)."""
    return [c for c in ("audio", "conditional_audio") if c in dataset.column_names]


def _unreadable(source: Any) -> bool:
    """Whether ``source`` is a file on this machine that this process may not read."""
    path = source.get("path") if isinstance(source, dict) and not source.get("bytes") else source
    return isinstance(path, str) and os.path.exists(path) and not os.access(path, os.R_OK)


def source_fingerprint(dataset: datasets.Dataset) -> str:
    """Identity of a split's content, as :func:`~.sources.load_split` returns it (whole, not a selection): its audio's
    identities (see :func:`codes_key`) and its captions.

    A Hub split whose audio is stored as bytes is identified by its Arrow files (path, size, modification time)
    rather than by hashing every clip: training checks this at every start, and the files change with the content.
    """
    digest = hashlib.sha256()
    audio = dataset.select_columns(audio_columns(dataset))
    first = audio[:1]
    holds_bytes = any(isinstance(a, dict) and a.get("bytes") for values in first.values() for a in values)
    if holds_bytes and dataset.cache_files:
        digest.update(json.dumps([file_identity(entry["filename"]) for entry in dataset.cache_files]).encode())
    else:
        for start in range(0, len(dataset), ROWS_PER_READ):  # a slice at a time: audio bytes never all in memory
            rows = audio[start : start + ROWS_PER_READ]
            digest.update(codes_key("", rows).encode())
            # a chmod changes neither size nor modification time: a file left out as unreadable is used once fixed
            digest.update(json.dumps([_unreadable(a) for values in rows.values() for a in values]).encode())
    digest.update(json.dumps(list(dataset["text"]) if "text" in dataset.column_names else None).encode())
    if "caption_final" in dataset.column_names:  # captions taken as written are shaped differently
        digest.update(json.dumps(list(dataset["caption_final"])).encode())
    return digest.hexdigest()[:24]
