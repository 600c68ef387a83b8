"""Training data: load a source into one schema, attach captions, and encode every clip once with EnCodec.

Sources, all turned into a ``datasets.Dataset`` with columns ``audio`` (path or ``{"path", "bytes"}``) and ``text``:

* a Hub dataset id (with ``dataset_config_name`` and split names), loaded with ``Audio(decode=False)`` so decoding
  goes through libsndfile here instead of torchcodec + FFmpeg;
* a local folder with ``metadata.jsonl`` or ``metadata.csv`` (a ``file_name`` column relative to the folder, as in
  ``datasets``' audiofolder, and a caption column);
* a local folder of audio files with same-named ``.txt`` captions (as musicgen_trainer users have);
* a single file: a CSV of paths and captions, an audiocraft jsonl manifest, or one audio file
  (:mod:`musicgen_lora.sources`).

A local folder is the train split, unless it has subfolders named after the splits (``train/``, ``validation/``).

Encoding is the expensive step, so its result — the codes of each whole clip — is cached on disk in shards of
:data:`CLIPS_PER_SHARD` clips, each under a key made of its audio files' identity (path, size, modification time; or
a Hub dataset's fingerprint) and the EnCodec weights, saved as soon as it is done (an interrupted run redoes only the
unfinished shards), optionally in ``preprocessing_num_workers`` processes. With ``streaming`` the clips come from a
``datasets`` stream and only their codes are kept. Captions and duration limits are applied after the cache, so
changing them never re-encodes.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import itertools
import json
import logging
import math
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, as_completed, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from transformers import PreTrainedModel

from .audio import AUDIO_EXTENSIONS, FFMPEG_EXTENSIONS, describe_source, load_audio, resample
from .analysis import integrated_loudness
from .captioning import cached_measure, caption_tracks, push_captioned_split
from .vocals import remove_vocals
from .chunking import chunk_dataset, frame_levels, level_db, plan_summary, split_tracks
from .screening import screen_split, skipped_entry
from .sources import load_file_source
from .config import FinetuneArguments
from .errors import UserError, one_line
from .clap import local_fingerprint

logger = logging.getLogger(__name__)

CODES_FEATURES = datasets.Features(
    {
        "codes": datasets.List(datasets.List(datasets.Value("int16"))),  # (num_codebooks, frames)
        "seconds": datasets.Value("float32"),
    }
)
# Melody models also store each clip's chroma, (chroma_frames, 12), to crop it with the codes.
CHROMA_FEATURES = datasets.Features({**CODES_FEATURES, "chroma": datasets.List(datasets.List(datasets.Value("float16")))})


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


# --------------------------------------------------------------------------------------------------- sources


def _read_metadata(folder: Path) -> list[dict[str, Any]] | None:
    jsonl, csv_path = folder / "metadata.jsonl", folder / "metadata.csv"
    if jsonl.is_file():
        rows = []
        for number, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise UserError(f"{jsonl} line {number} is not valid JSON ({err.msg}); fix that line") from None
        return rows
    if csv_path.is_file():
        with csv_path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    return None


def _load_local_folder(folder: Path, args: FinetuneArguments) -> datasets.Dataset:
    rows = _read_metadata(folder)
    if rows is not None:
        if not rows:
            raise UserError(f"the metadata file in '{folder}' has no rows; add one row per audio file")
        columns = sorted(rows[0])
        path_column = "file_name" if "file_name" in rows[0] else args.audio_column_name
        if path_column not in rows[0]:
            raise UserError(
                f"the metadata in '{folder}' has no 'file_name' or '{args.audio_column_name}' column (columns: "
                f"{', '.join(columns)}); add file_name with each audio file's path relative to the folder"
            )
        paths = [str(folder / row[path_column]) for row in rows]
        texts = [row.get(args.text_column_name) for row in rows]
        conditional = args.conditional_audio_column_name
        if conditional is not None:
            if conditional not in rows[0]:
                raise UserError(
                    f"conditional audio column '{conditional}' not found in the metadata of '{folder}' (columns: "
                    f"{', '.join(columns)}); set conditional_audio_column_name to a column of audio paths, or unset it"
                )
            return datasets.Dataset.from_dict(
                {"audio": paths, "text": _as_text(texts), "conditional_audio": [str(folder / r[conditional]) for r in rows]}
            )
        if all(t is None for t in texts) and args.instance_prompt is None:
            raise UserError(
                f"caption column '{args.text_column_name}' not found in the metadata of '{folder}' (columns: "
                f"{', '.join(columns)}); set text_column_name to the caption column, or set instance_prompt"
            )
    else:
        # formats that need FFmpeg are picked up too: without it they are skipped and reported, not ignored
        extensions = AUDIO_EXTENSIONS + FFMPEG_EXTENSIONS
        paths = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in extensions and p.is_file())
        if not paths:
            raise UserError(
                f"dataset folder '{folder}' holds no audio files ({', '.join(extensions)}); point dataset_name "
                "at your music folder"
            )
        texts = []
        for path in paths:
            caption_file = Path(path).with_suffix(".txt")
            texts.append(caption_file.read_text(encoding="utf-8").strip() if caption_file.is_file() else None)
    if args.conditional_audio_column_name is not None:
        raise UserError(
            f"conditional_audio_column_name needs a metadata.jsonl/.csv in '{folder}' with that column; add one or unset it"
        )
    return datasets.Dataset.from_dict({"audio": paths, "text": _as_text(texts)})


def _as_text(values: list[Any]) -> list[str | None]:
    return [v if v is None else str(v) for v in values]


# Endings that make a dataset_name a file, never a Hub id (Hub ids are 'user/name' and have no file extension).
FILE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".jsonl.gz", ".json", ".parquet", ".txt") + AUDIO_EXTENSIONS + FFMPEG_EXTENSIONS


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", ".", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)
        or name.lower().endswith(FILE_SUFFIXES)
    )  # fmt: skip


def _load_hub_split(args: FinetuneArguments, split: str) -> datasets.Dataset:
    try:
        dataset = datasets.load_dataset(
            args.dataset_name, args.dataset_config_name, split=split, cache_dir=args.cache_dir
        )
    except Exception as err:  # noqa: BLE001 - datasets raises many kinds (connection, missing split, bad config)
        raise UserError(
            f"cannot load dataset '{args.dataset_name}' split '{split}' from the Hub: {one_line(err)[:300]}; check the "
            "id, dataset_config_name and split names (or point dataset_name at an existing local folder)"
        ) from None
    columns = dataset.column_names
    if args.audio_column_name not in columns:
        raise UserError(
            f"audio column '{args.audio_column_name}' not found in '{args.dataset_name}'; columns are: "
            f"{', '.join(columns)}; set audio_column_name"
        )
    if args.text_column_name not in columns and args.instance_prompt is None:
        raise UserError(
            f"caption column '{args.text_column_name}' not found in '{args.dataset_name}'; columns are: "
            f"{', '.join(columns)}; set text_column_name, or set instance_prompt to caption every clip"
        )
    conditional = args.conditional_audio_column_name
    if conditional is not None and conditional not in columns:
        raise UserError(
            f"conditional audio column '{conditional}' not found in '{args.dataset_name}'; columns are: "
            f"{', '.join(columns)}; set conditional_audio_column_name, or unset it"
        )
    audio_columns = {args.audio_column_name: "audio", **({conditional: "conditional_audio"} if conditional else {})}
    for column in audio_columns:
        dataset = dataset.cast_column(column, datasets.Audio(decode=False))
    texts = dataset[args.text_column_name] if args.text_column_name in columns else [None] * len(dataset)
    dataset = dataset.select_columns(list(audio_columns))
    for column, name in audio_columns.items():
        if column != name:
            dataset = dataset.rename_column(column, name)
    return dataset.add_column("text", _as_text(texts))


def load_split(args: FinetuneArguments, split: str) -> datasets.Dataset:
    """Load one split as a Dataset with columns ``audio`` and ``text`` (``text`` may hold None).

    Raises:
        UserError: missing path, empty folder, missing columns, or a dataset the Hub cannot give.
    """
    name = args.dataset_name
    local = Path(name).expanduser()
    if local.is_dir():
        folder = local / split if (local / split).is_dir() else local
        if folder == local and split != args.train_split_name:
            raise UserError(
                f"split '{split}' requested but '{local}' has no subfolder '{split}'; create it with the evaluation "
                "audio, or unset eval_split_name"
            )
        return _load_local_folder(folder, args)
    if local.is_file():  # a CSV, a jsonl manifest or one audio file
        return load_file_source(local, args, split)
    if _looks_like_path(name):
        raise UserError(
            f"dataset path '{name}' not found (looked in '{Path.cwd()}'); check the path (or use a Hub dataset id like "
            "'user/name')"
        )
    return _load_hub_split(args, split)


# --------------------------------------------------------------------------------------------------- encoding


def _file_identity(source: Any) -> Any:
    path = source.get("path") if isinstance(source, dict) and not source.get("bytes") else source
    if isinstance(path, str) and os.path.exists(path):
        stat = os.stat(path)
        return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]
    return describe_source(source)


def module_fingerprint(module: torch.nn.Module) -> str:
    """A hash of a module's weights and buffers (the cache must change when the codec changes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str((tuple(tensor.shape), tensor.dtype)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


CODEC_FINGERPRINTS_NAME = "codec-fingerprints.json"


def cache_root_of(args: FinetuneArguments) -> Path:
    return Path(args.data_cache_dir).expanduser() if args.data_cache_dir else default_cache_root()


def model_files_identity(args: FinetuneArguments) -> str | None:
    """Names, sizes and modification times of the model's files (a local folder, or a Hub id's cached snapshot);
    None when they cannot be found without loading the model."""
    folder = Path(args.model_name_or_path).expanduser()
    if not folder.is_dir():
        from huggingface_hub import try_to_load_from_cache

        config_file = try_to_load_from_cache(args.model_name_or_path, "config.json", cache_dir=args.cache_dir)
        if not isinstance(config_file, str):
            return None
        folder = Path(config_file).parent
    return local_fingerprint(str(folder))


def _known_codec_fingerprints(args: FinetuneArguments) -> dict[str, str]:
    try:
        known = json.loads((cache_root_of(args) / CODEC_FINGERPRINTS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def remembered_codec_fingerprint(args: FinetuneArguments, identity: str | None = None) -> str | None:
    """The :func:`module_fingerprint` of the model's EnCodec computed by an earlier run from these same model files
    (see :func:`codec_fingerprint`), so that a run with nothing to prepare need not load the model; None if unknown.
    ``identity``: :func:`model_files_identity`, when the caller has it already."""
    identity = identity or model_files_identity(args)
    found = _known_codec_fingerprints(args).get(identity) if identity is not None else None
    return found if isinstance(found, str) else None


def codec_fingerprint(args: FinetuneArguments, model: PreTrainedModel) -> str:
    """:func:`module_fingerprint` of ``model``'s EnCodec, remembered in ``data_cache_dir`` by the identity of the
    model files it was loaded from (hashing the 32 kHz codec's weights takes about 0.25 s on a CPU)."""
    identity = model_files_identity(args)
    remembered = remembered_codec_fingerprint(args, identity)
    if remembered is not None:
        return remembered
    fingerprint = module_fingerprint(model.audio_encoder)
    if identity is not None:
        known = {**_known_codec_fingerprints(args), identity: fingerprint}
        path = cache_root_of(args) / CODEC_FINGERPRINTS_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}")
        staging.write_text(json.dumps(known, indent=1) + "\n", encoding="utf-8")
        os.replace(staging, path)  # atomic: processes preparing at once never read half a file
    return fingerprint


def chroma_settings(extractor: Any) -> dict[str, Any]:
    return {k: getattr(extractor, k) for k in ("sampling_rate", "hop_length", "n_fft", "feature_size")}


def _encoding_settings(
    codec_fingerprint: str, spec: AudioSpec, chroma_extractor: Any = None, loudness_lufs: float | None = None
) -> str:
    """Everything besides the audio that shapes the codes: the codec's weights, the audio format, chroma, loudness."""
    chroma = chroma_settings(chroma_extractor) if chroma_extractor is not None else None
    settings = [codec_fingerprint, spec.sampling_rate, spec.channels, chroma]
    if loudness_lufs is not None:  # appended only when set, so caches made without it stay valid
        settings.append(["loudness", loudness_lufs])
    return json.dumps(settings)


def _codes_key(settings: str, columns: dict[str, list], content_fingerprint: str) -> str:
    """Cache key of the codes of some rows: the settings and, per audio column, the files' identities (or, for
    audio bytes, the fingerprint of the dataset content they come from)."""
    digest = hashlib.sha256(settings.encode())
    for values in columns.values():
        if all(isinstance(a, str) or (isinstance(a, dict) and not a.get("bytes")) for a in values):
            digest.update(json.dumps([_file_identity(a) for a in values]).encode())
        else:  # audio bytes from a Hub dataset: the dataset's own fingerprint identifies its content
            digest.update(content_fingerprint.encode())
    return digest.hexdigest()[:24]


def _audio_columns(dataset: datasets.Dataset) -> list[str]:
    return [c for c in ("audio", "conditional_audio") if c in dataset.column_names]


def source_fingerprint(dataset: datasets.Dataset) -> str:
    """Identity of a loaded split's content: its audio files' identities (path, size, modification time) and its
    captions, or, for audio bytes, the dataset's own fingerprint."""
    digest = hashlib.sha256()
    audio = dataset.select_columns(_audio_columns(dataset))
    for start in range(0, len(dataset), CLIPS_PER_SHARD):  # a slice at a time: audio bytes never all in memory
        rows = audio[start : start + CLIPS_PER_SHARD]
        if any(isinstance(a, dict) and a.get("bytes") for values in rows.values() for a in values):
            return hashlib.sha256(dataset._fingerprint.encode()).hexdigest()[:24]  # covers audio and captions
        digest.update(_codes_key("", rows, "").encode())
    digest.update(json.dumps(list(dataset["text"]) if "text" in dataset.column_names else None).encode())
    return digest.hexdigest()[:24]


def encoding_fingerprint(
    dataset: datasets.Dataset,
    codec_fingerprint: str,
    spec: AudioSpec,
    chroma_extractor: Any = None,
    loudness_lufs: float | None = None,
) -> str:
    """Cache key of a dataset's codes: its audio's identity, the codec's weights, the audio format (and chroma,
    and the loudness target)."""
    settings = _encoding_settings(codec_fingerprint, spec, chroma_extractor, loudness_lufs)
    return _codes_key(settings, {c: dataset[c] for c in _audio_columns(dataset)}, dataset._fingerprint)


@torch.no_grad()
def encode_clip(audio_encoder: torch.nn.Module, audio: np.ndarray) -> np.ndarray:
    """Encode one decoded clip with the frozen EnCodec.

    Args:
        audio: (channels, samples) float32 at the codec's rate.

    Returns:
        int16 codes of shape (num_codebooks, frames); for stereo, channels interleaved (L0, R0, L1, R1, ...).
    """
    # Each channel is one item of the batch: (channels, 1, samples) -> codes (chunks=1, channels, K_per_channel, frames)
    codes = audio_encoder.encode(torch.from_numpy(audio)[:, None]).audio_codes[0]
    # Interleave the channels' codebooks as stereo MusicGen expects: (K_per_channel, channels, frames) -> L0, R0, L1, ...
    codes = codes.transpose(0, 1).reshape(-1, codes.shape[-1])
    return codes.to(torch.int16).numpy()


def chroma_of(extractor: Any, mono: np.ndarray) -> np.ndarray:
    """Chroma of a whole mono clip, (chroma_frames, num_chroma), as MusicGen-Melody's processor computes it.

    The feature extractor pads or cuts audio to 30 s unless told the length; long clips keep all their chroma here,
    and the collator crops it together with the codes.
    """
    features = extractor(
        mono, sampling_rate=extractor.sampling_rate, max_length=len(mono), truncation=False, padding=False,
        return_tensors="pt",
    ).input_features  # fmt: skip
    return features[0].numpy().astype(np.float16)


def chroma_frames_per_code_frame(extractor: Any, spec: AudioSpec) -> float:
    """How many chroma frames span one codec frame (e.g. 7.8125 Hz / 50 Hz for MusicGen-Melody)."""
    return extractor.sampling_rate / extractor.hop_length / spec.frame_rate


def default_cache_root() -> Path:
    hf_home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(hf_home) / "musicgen_lora"


def normalize_loudness(audio: np.ndarray, sr: int, target_lufs: float) -> np.ndarray:
    """Audio scaled to ``target_lufs`` integrated loudness (BS.1770), with the gain lowered so that the peak stays at
    or below full scale; silent audio (no block above the -70 LUFS gate) is returned unchanged."""
    loudness = integrated_loudness(audio, sr)
    if not math.isfinite(loudness):
        return audio
    gain = 10.0 ** ((target_lufs - loudness) / 20.0)
    peak = float(np.abs(audio).max())
    if peak * gain > 1.0:
        gain = 1.0 / peak
    return (audio * gain).astype(np.float32)


# Clips encoded and saved together as one cache entry: an interrupted run loses at most one shard per process, and
# the shards are what worker processes share out.
CLIPS_PER_SHARD = 32


def save_atomically(dataset: datasets.Dataset, target: Path, replace: bool = False) -> None:
    """``save_to_disk`` next to ``target`` and rename, so an interruption never leaves a half-written folder.

    Args:
        replace: replace a complete ``target`` (else it is kept: another process wrote the same cache entry).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        dataset.save_to_disk(str(staging))
        if target.exists() and (replace or not _is_saved(target)):
            shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    except OSError:
        if not _is_saved(target):
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _is_saved(folder: Path) -> bool:
    return (folder / "dataset_info.json").is_file()


class ClipEncoder:
    """Decodes, normalises and encodes clips (and computes melody chroma): all that one process needs.

    Pickled once per worker process: the codec travels as its class, config and weights and is rebuilt there, so it
    is never re-pickled per clip (and parametrised modules, which refuse to pickle, are no problem).
    """

    def __init__(self, codec: torch.nn.Module, spec: AudioSpec, chroma_extractor: Any = None,
                 loudness_lufs: float | None = None) -> None:  # fmt: skip
        self.codec = codec.eval()
        self.spec = spec
        self.chroma_extractor = chroma_extractor
        self.loudness_lufs = loudness_lufs
        self.features = CHROMA_FEATURES if chroma_extractor is not None else CODES_FEATURES

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        codec = state.pop("codec")
        state["codec_parts"] = (type(codec), codec.config, {k: v.cpu() for k, v in codec.state_dict().items()})
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        cls, config, weights = state.pop("codec_parts")
        codec = cls(config)
        codec.load_state_dict(weights)
        self.__dict__.update(state, codec=codec.eval())

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        """Codes (and chroma) of one row's ``audio`` (melody from ``conditional_audio`` when given); the row's
        ``text`` and ``source`` are passed through when present (streamed rows keep nothing else)."""
        spec = self.spec
        audio = load_audio(row["audio"], spec.sampling_rate, spec.channels)  # (channels, samples)
        if self.loudness_lufs is not None:
            audio = normalize_loudness(audio, spec.sampling_rate, self.loudness_lufs)
        encoded = {"codes": encode_clip(self.codec, audio).tolist(), "seconds": audio.shape[-1] / spec.sampling_rate}
        if self.chroma_extractor is not None:
            rate = self.chroma_extractor.sampling_rate
            source = row.get("conditional_audio")
            if source is not None:
                mono = load_audio(source, rate, 1)[0]
            else:  # the clip's own melody
                mono = resample(audio.mean(0, keepdims=True), spec.sampling_rate, rate)[0]
            encoded["chroma"] = chroma_of(self.chroma_extractor, mono).tolist()
        encoded.update({k: row[k] for k in ("text", "source") if k in row})
        return encoded

    def encode_shard(self, rows: list[dict[str, Any]], target: Path, on_clip: Any = None) -> int:
        """Encode ``rows`` and save their codes as one cache entry at ``target``; returns the number of clips."""
        encoded = []
        for row in rows:
            encoded.append(self(row))
            if on_clip is not None:
                on_clip()
        features = self.features
        if encoded and "text" in encoded[0]:
            features = datasets.Features({**features, "text": datasets.Value("string"), "source": datasets.Value("string")})
        save_atomically(datasets.Dataset.from_list(encoded, features=features), target)
        return len(rows)


_WORKER_ENCODER: ClipEncoder | None = None  # the encoder of a worker process, set once by _start_worker


def _start_worker(encoder: ClipEncoder, threads: int) -> None:
    global _WORKER_ENCODER
    torch.set_num_threads(threads)  # the workers share the cores instead of each using all of them
    _WORKER_ENCODER = encoder
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """End this worker once the main process is gone: killed with SIGKILL, it cannot stop its workers, which would
    otherwise wait for work forever."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _encode_shard_in_worker(rows: list[dict[str, Any]], target: Path) -> int:
    return _WORKER_ENCODER.encode_shard(rows, target)


def encode_shards(
    encoder: ClipEncoder, jobs: Iterable[tuple[list[dict[str, Any]], Path]], clips: int | None,
    num_workers: int | None, shards: int | None,
) -> None:  # fmt: skip
    """Encode each ``(rows, target)`` job into its cache entry, in this process or in ``num_workers`` processes.

    Args:
        jobs: the shards to encode (an iterator is consumed lazily, at most two shards per worker ahead).
        clips: how many clips the jobs hold (for the progress bar; None when unknown, e.g. streaming).
        shards: how many jobs there are, if known (workers beyond that would idle).
    """
    workers = (num_workers or 1) if shards is None else min(num_workers or 1, shards)
    with progress(total=clips, desc="Encoding audio with EnCodec", unit="clip") as bar:
        if workers <= 1:
            for rows, target in jobs:
                encoder.encode_shard(rows, target, on_clip=lambda: bar.update(1))
            return
        logger.info("Encoding with %d worker processes", workers)
        threads = max(1, torch.get_num_threads() // workers)
        context = multiprocessing.get_context("spawn")  # fork after torch's thread pools start can deadlock
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(encoder, threads)) as pool:
            pending: set = set()
            try:
                for rows, target in jobs:
                    pending.add(pool.submit(_encode_shard_in_worker, rows, target))
                    while len(pending) >= 2 * workers:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for future in done:
                            bar.update(future.result())
                for future in as_completed(pending):
                    bar.update(future.result())
            except BaseException:
                for future in pending:
                    future.cancel()
                raise


def progress(**kwargs: Any) -> Any:
    """A ``datasets`` progress bar: hidden when datasets' bars are disabled (``disable_tqdm``, see
    :func:`musicgen_lora.prepare.progress_bars`) or when the output is not a terminal."""
    return datasets.utils.tqdm(disable=None, **kwargs)


def _as_rows(batch: dict[str, list]) -> list[dict[str, Any]]:
    """A batch of columns (``dataset[start:stop]``) as a list of rows."""
    return [dict(zip(batch, values)) for values in zip(*batch.values())]


def encode_dataset(
    dataset: datasets.Dataset,
    model: PreTrainedModel,
    cache_root: Path,
    codec_fingerprint: str | None = None,
    chroma_extractor: Any = None,
    loudness_lufs: float | None = None,
    num_workers: int | None = None,
) -> datasets.Dataset:
    """Codes of every clip (columns ``codes``, ``seconds``, and ``chroma`` for melody), from the cache or encoded once.

    The clips are encoded in shards of :data:`CLIPS_PER_SHARD`, each saved as its own cache entry as soon as it is
    done (keyed by its files' identities and the codec), so an interrupted run continues with the shards it had not
    finished, and a changed file re-encodes only its shard.

    Args:
        dataset: rows with an ``audio`` column (and ``conditional_audio`` for a separate melody source).
        model: the MusicGen model whose ``audio_encoder`` encodes.
        cache_root: folder holding the cache entries (``codes-<key>``).
        codec_fingerprint: precomputed :func:`module_fingerprint` of the codec (computed when None).
        chroma_extractor: melody models' feature extractor; its chroma of each clip (or of its conditional audio)
            is stored too.
        loudness_lufs: when set, each clip is normalised to this integrated loudness before encoding.
        num_workers: encode in this many processes (None or 1: in this one); the codes are the same.
    """
    spec = AudioSpec.of(model)
    codec_fingerprint = codec_fingerprint or module_fingerprint(model.audio_encoder)
    settings = _encoding_settings(codec_fingerprint, spec, chroma_extractor, loudness_lufs)
    encoder = ClipEncoder(model.audio_encoder, spec, chroma_extractor, loudness_lufs)
    audio = dataset.select_columns(_audio_columns(dataset))
    shards = []
    for start in range(0, len(dataset), CLIPS_PER_SHARD):  # a slice at a time: audio bytes never all in memory
        stop = min(start + CLIPS_PER_SHARD, len(dataset))
        whole = start == 0 and stop == len(dataset)  # one shard: the same key as the whole dataset's
        content = dataset._fingerprint if whole else f"{dataset._fingerprint}[{start}:{stop}]"
        key = _codes_key(settings, audio[start:stop], content)
        shards.append((range(start, stop), cache_root / f"codes-{key}"))
    todo = [(rows, target) for rows, target in shards if not _is_saved(target)]
    if todo:
        clips = sum(len(rows) for rows, _ in todo)
        logger.info(
            "Encoding %d of %d clips with EnCodec (%d of %d shards already cached in %s)",
            clips, len(dataset), len(shards) - len(todo), len(shards), cache_root,
        )  # fmt: skip
        jobs = ((_as_rows(audio[rows.start : rows.stop]), target) for rows, target in todo)  # read shard by shard
        encode_shards(encoder, jobs, clips, num_workers, len(todo))
    else:
        logger.info("Using cached EnCodec codes from %s (no encoding needed)", cache_root)
    if not shards:
        return datasets.Dataset.from_list([], features=encoder.features)
    parts = [datasets.load_from_disk(str(target)) for _, target in shards]
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def _open_stream(args: FinetuneArguments, split: str) -> datasets.IterableDataset:
    """One split of ``dataset_name`` as a ``datasets`` stream with columns ``audio`` (undecoded) and ``text``."""
    name = args.dataset_name
    try:
        stream = datasets.load_dataset(name, args.dataset_config_name, split=split, streaming=True, cache_dir=args.cache_dir)
    except Exception as err:  # noqa: BLE001 - datasets raises many kinds (connection, missing split, bad config)
        raise UserError(
            f"cannot stream dataset '{name}' split '{split}': {one_line(err)[:300]}; check the id, "
            "dataset_config_name and split names (or set streaming false)"
        ) from None
    columns = list(stream.features or {}) or stream.column_names or []
    if args.audio_column_name not in columns:
        raise UserError(
            f"audio column '{args.audio_column_name}' not found in '{name}'; columns are: {', '.join(columns)}; set "
            "audio_column_name"
        )
    if args.text_column_name not in columns and args.instance_prompt is None:
        raise UserError(
            f"caption column '{args.text_column_name}' not found in '{name}'; columns are: {', '.join(columns)}; set "
            "text_column_name, or set instance_prompt to caption every clip"
        )
    stream = stream.cast_column(args.audio_column_name, datasets.Audio(decode=False))  # decoded here, no torchcodec
    keep = [args.audio_column_name] + ([args.text_column_name] if args.text_column_name in columns else [])
    return stream.select_columns(keep)


def _stream_rows(stream: datasets.IterableDataset, args: FinetuneArguments) -> Iterator[dict[str, Any]]:
    """Rows ``{"audio", "text", "source"}`` of a stream (closed properly when not read to the end)."""
    with contextlib.closing(iter(stream)) as rows:
        try:
            for index, row in enumerate(rows):
                audio = row[args.audio_column_name]
                source = audio.get("path") if isinstance(audio, dict) and audio.get("path") else f"row {index}"
                text = row.get(args.text_column_name)
                yield {"audio": audio, "text": None if text is None else str(text), "source": str(source)}
        except ImportError as err:  # datasets' folder builders encode audio files through torchcodec
            raise UserError(
                f"streaming '{args.dataset_name}' needs {one_line(err)}; streaming is for Hub datasets (Parquet): set "
                "streaming false to read a local folder directly"
            ) from None


def encode_stream(
    args: FinetuneArguments,
    split: str,
    model: PreTrainedModel,
    cache_root: Path,
    codec_fingerprint: str,
    chroma_extractor: Any = None,
    limit: int | None = None,
) -> datasets.Dataset:
    """Codes of a streamed split (``streaming``): each clip is decoded and encoded as it arrives and only its codes,
    caption and source name are kept (columns ``codes``, ``seconds``, ``text``, ``source``, and ``chroma``).

    The stream is identified by its name, config and split (its content cannot be known without reading it), and
    encoded in shards of :data:`CLIPS_PER_SHARD` saved as they finish: an interrupted run reads the finished shards'
    clips again without encoding them, and once all are done, a manifest lets later runs skip the stream.
    """
    spec = AudioSpec.of(model)
    settings = _encoding_settings(codec_fingerprint, spec, chroma_extractor, args.loudness_target_lufs)
    identity = json.dumps([settings, "stream", args.dataset_name, args.dataset_config_name, split, limit, CLIPS_PER_SHARD])
    key = hashlib.sha256(identity.encode()).hexdigest()[:24]
    manifest = cache_root / f"stream-{key}.json"
    if not manifest.is_file():
        stream = _open_stream(args, split)
        if limit is not None:
            stream = stream.take(limit)
        targets: list[Path] = []

        def jobs() -> Iterator[tuple[list[dict[str, Any]], Path]]:
            rows = _stream_rows(stream, args)
            while shard := list(itertools.islice(rows, CLIPS_PER_SHARD)):
                target = cache_root / f"codes-{key}-{len(targets):05d}"
                targets.append(target)
                if not _is_saved(target):
                    yield shard, target

        logger.info("Streaming '%s' split '%s': clips are encoded as they arrive, only their codes are kept", args.dataset_name, split)
        encoder = ClipEncoder(model.audio_encoder, spec, chroma_extractor, args.loudness_target_lufs)
        encode_shards(encoder, jobs(), None, args.preprocessing_num_workers, shards=None)
        if not targets:
            raise UserError(f"streamed dataset '{args.dataset_name}' split '{split}' has no rows; check the split name")
        cache_root.mkdir(parents=True, exist_ok=True)
        staging = manifest.with_suffix(f".{os.getpid()}.tmp")
        staging.write_text(json.dumps([t.name for t in targets]), encoding="utf-8")
        os.replace(staging, manifest)
    else:
        logger.info("Using cached EnCodec codes of streamed '%s' split '%s' (%s)", args.dataset_name, split, manifest)
    names = json.loads(manifest.read_text(encoding="utf-8"))
    return datasets.concatenate_datasets([datasets.load_from_disk(str(cache_root / name)) for name in names])


def chroma_window(chroma: list, start: int, frames: int, ratio: float) -> list:
    """The chroma frames that span code frames [start, start + frames) (at least one)."""
    first = min(int(start * ratio), len(chroma) - 1)
    return chroma[first : first + max(1, math.ceil(frames * ratio))]


def fixed_windows(
    dataset: datasets.Dataset, max_frames: int, min_frames: int, chroma_ratio: float | None = None
) -> datasets.Dataset:
    """Split clips into consecutive windows of ``max_frames`` (evaluation must not depend on random crops)."""

    def split_rows(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {name: [] for name in batch}
        for index, (codes, text) in enumerate(zip(batch["codes"], batch["text"])):
            frames = len(codes[0])
            for start in range(0, frames, max_frames):
                if min(max_frames, frames - start) >= min_frames:
                    out["codes"].append([row[start : start + max_frames] for row in codes])
                    out["text"].append(text)
                    if "chroma" in batch:
                        out["chroma"].append(chroma_window(batch["chroma"][index], start, max_frames, chroma_ratio))
                    for name in batch.keys() - {"codes", "text", "chroma"}:  # e.g. a chunk's source and offset
                        out[name].append(batch[name][index])
        return out

    return dataset.map(split_rows, batched=True, remove_columns=dataset.column_names, desc="Cutting evaluation windows")


def prepare_split(
    args: FinetuneArguments,
    split: str,
    model: PreTrainedModel,
    codec_fingerprint: str,
    is_eval: bool,
    chroma_extractor: Any = None,
    seed: int = 42,
    stats: dict[str, Any] | None = None,
) -> datasets.Dataset:
    """One split ready for the collator: columns ``codes`` (K, frames), ``text`` (and ``chroma`` for melody).

    Args:
        seed: which tracks eval_split_percentage holds out.
        stats: when given, filled with what preparation found and left out (for the data report).

    Raises:
        UserError: on bad input, or when no clip is long enough.
    """
    cache_root = cache_root_of(args)
    limit = args.max_eval_samples if is_eval else args.max_train_samples
    encoded = None
    if args.streaming:  # audio never stored: codes, captions and source names come from the stream
        encoded = encode_stream(args, split, model, cache_root, codec_fingerprint, chroma_extractor, limit)
        raw = encoded.select_columns(["source", "text"]).rename_column("source", "audio")
        encoded = encoded.remove_columns(["source", "text"])
    elif args.eval_split_percentage > 0:  # both sides come from the training split, whole tracks on one side
        raw = load_split(args, args.train_split_name)
        if len(raw) < 2:
            raise UserError(
                f"eval_split_percentage needs at least 2 tracks, '{args.dataset_name}' has {len(raw)}; add audio or "
                "set eval_split_percentage to 0"
            )
        train_tracks, eval_tracks = split_tracks(len(raw), args.eval_split_percentage, seed)
        raw = raw.select(eval_tracks if is_eval else train_tracks)
        split = "eval" if is_eval else "train"
    else:
        raw = load_split(args, split)
    if limit is not None and not args.streaming:
        raw = raw.select(range(min(limit, len(raw))))
    stats = {} if stats is None else stats
    if not args.streaming:  # every file checked once (cached): bad ones skipped and listed, or an error with strict
        raw = screen_split(raw, args.dataset_name, split, cache_root, args.strict, stats)
    stats.update(tracks=len(raw), own_captions=sum(bool((t or "").strip()) for t in raw["text"]), auto_captioned=0)
    if args.demucs_model_path:  # each track's instrumental (cached) is what gets captioned and encoded
        raw = remove_vocals(raw, args.demucs_model_path, cache_root, progress)
    # caption_template filled with instance_prompt, own caption, measured tempo/key/level words and CLAP tags (each
    # measurement cached per file apart from the codes, so a caption option never re-encodes)
    captions, measured = caption_tracks(raw, args, cache_root, stats, progress)
    if args.add_metadata:  # each track's estimated tempo and key, for the data report's distribution
        stats["track_metadata"] = [found.get("metadata") or {} for found in measured]
    if encoded is None:
        encoded = encode_dataset(
            raw, model, cache_root, codec_fingerprint, chroma_extractor, args.loudness_target_lufs,
            args.preprocessing_num_workers,
        )  # fmt: skip
    if args.push_metadata_repo_id:  # audio + final captions to a Hub dataset, after the (cached) encoding
        push_captioned_split(raw, captions, measured, args, "eval" if is_eval else "train", cache_root)
    encoded = encoded.add_column("text", captions)
    seconds = encoded["seconds"]
    long_enough = [i for i, s in enumerate(seconds) if s >= args.min_duration_in_seconds]
    stats.update(
        seconds_found=float(sum(seconds)), too_short=len(encoded) - len(long_enough),
        seconds_too_short=float(sum(seconds) - sum(seconds[i] for i in long_enough)), silent_tracks=0,
    )  # fmt: skip
    stats.setdefault("skipped_files", []).extend(
        skipped_entry(describe_source(raw[i]["audio"]), f"too short: {s:.2f} s < min_duration_in_seconds")
        for i, s in enumerate(seconds) if s < args.min_duration_in_seconds
    )  # fmt: skip
    if len(long_enough) < len(encoded):
        logger.warning(
            "%d of %d %s clips are shorter than min_duration_in_seconds=%g and are left out",
            len(encoded) - len(long_enough), len(encoded), split, args.min_duration_in_seconds,
        )  # fmt: skip
    if not long_enough:
        raise UserError(
            f"no {split} clip is at least min_duration_in_seconds={args.min_duration_in_seconds:g} s long; lower "
            "min_duration_in_seconds or add longer audio"
        )
    encoded = encoded.select(long_enough).remove_columns(["seconds"])
    spec = AudioSpec.of(model)
    max_frames = int(args.max_duration_in_seconds * spec.frame_rate)
    min_frames = max(1, int(args.min_duration_in_seconds * spec.frame_rate))
    ratio = chroma_frames_per_code_frame(chroma_extractor, spec) if chroma_extractor is not None else None
    levels = None
    if args.silence_threshold_db is not None:  # each track's level per codec frame, measured once and cached
        frame_rate = spec.frame_rate
        levels = [
            cached_measure(raw[i]["audio"], cache_root, f"levels|{frame_rate}", partial(frame_levels, frame_rate=frame_rate))
            for i in progress(iterable=long_enough, desc="Measuring levels", unit="track")
        ]
    if args.silence_threshold_db is not None and not args.chunk_long_tracks:
        loud = [i for i, track in enumerate(levels) if level_db(track, 0, len(track)) >= args.silence_threshold_db]
        if len(loud) < len(encoded):
            logger.warning(
                "%d of %d %s tracks are quieter than silence_threshold_db=%g dBFS and are left out",
                len(encoded) - len(loud), len(encoded), split, args.silence_threshold_db,
            )  # fmt: skip
        stats["silent_tracks"] = len(encoded) - len(loud)
        stats.setdefault("skipped_files", []).extend(
            skipped_entry(describe_source(raw[long_enough[j]]["audio"]), f"silent: {db:.1f} dBFS")
            for j, track in enumerate(levels) if (db := level_db(track, 0, len(track))) < args.silence_threshold_db
        )  # fmt: skip
        encoded = encoded.select(loud)
        if not loud:
            raise UserError(
                f"every {split} track is quieter than silence_threshold_db={args.silence_threshold_db:g} dBFS; lower "
                "the threshold (or unset it) or check the audio"
            )
    if args.chunk_long_tracks:
        silence = None
        if args.tail_policy == "pad":
            silence = encode_clip(
                model.audio_encoder.eval(),
                np.zeros((spec.channels, int((max_frames + 2) * spec.sampling_rate / spec.frame_rate)), np.float32),
            )
        sources = [describe_source(raw[i]["audio"]) for i in long_enough]
        tracks = len(encoded)
        track_frames = [len(codes[0]) for codes in encoded["codes"]]
        stats.update(plan_summary(track_frames, max_frames, min_frames, args.tail_policy, levels, args.silence_threshold_db))
        encoded = chunk_dataset(
            encoded, max_frames, min_frames, args.tail_policy, sources, spec.frame_rate, silence, ratio, levels,
            args.silence_threshold_db,
        )  # fmt: skip
        if args.silence_threshold_db is not None:  # a track none of whose chunks is loud enough is left out whole
            kept = set(encoded["source"])
            stats.setdefault("skipped_files", []).extend(
                skipped_entry(source, "silent: every chunk below silence_threshold_db") for source in sources
                if source not in kept
            )  # fmt: skip
        if not len(encoded) and args.silence_threshold_db is not None:
            raise UserError(
                f"every {split} chunk is quieter than silence_threshold_db={args.silence_threshold_db:g} dBFS; lower "
                "the threshold (or unset it) or check the audio"
            )
        logger.info("%s split: %d tracks cut into %d chunks (tail_policy=%s)", split, tracks, len(encoded), args.tail_policy)
    if is_eval:
        encoded = fixed_windows(encoded, max_frames, min_frames, ratio)
    logger.info("%s split: %d examples", split, len(encoded))
    return encoded
