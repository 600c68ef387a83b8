"""Encode every clip once with the frozen EnCodec, in shards cached as they finish, in this process or in worker
processes; from a loaded split or a stream.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, as_completed, wait
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from transformers import PreTrainedModel

from ..audio.analysis import integrated_loudness
from ..audio.io import decode_audio, load_audio, resample, set_channels
from ..errors import UserError
from ..files import atomic_write_json, is_saved_dataset, save_dataset_atomically
from ..logs import progress
from ..models.codec import encode_clip
from ..models.spec import AudioSpec
from .cache_keys import audio_columns, codes_key, encoding_settings, module_fingerprint
from .context import PrepareContext
from .measurements import cached_measures
from .sources import open_stream, stream_rows

logger = logging.getLogger(__name__)


CODES_FEATURES = datasets.Features(
    {
        "codes": datasets.List(datasets.List(datasets.Value("int16"))),  # (num_codebooks, frames)
        "seconds": datasets.Value("float32"),
    }
)


# Melody models also store each clip's chroma, (chroma_frames, 12), to crop it with the codes.
CHROMA_FEATURES = datasets.Features(
    {**CODES_FEATURES, "chroma": datasets.List(datasets.List(datasets.Value("float16")))}
)


def chroma_of(extractor: Any, mono: np.ndarray) -> np.ndarray:
    """Chroma of a whole mono clip, (chroma_frames, num_chroma), as MusicGen-Melody's processor computes it.

    The feature extractor pads or cuts audio to 30 s unless told the length; long clips keep all their chroma here,
    and the collator crops it together with the codes.
    """
    features = extractor(
        mono,
        sampling_rate=extractor.sampling_rate,
        max_length=len(mono),
        truncation=False,
        padding=False,
        return_tensors="pt",
    ).input_features
    return features[0].numpy().astype(np.float16)


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


def share_rows(rows: int, index: int, count: int) -> list[int]:
    """The rows of process ``index`` of ``count`` in a several-process preparation: every ``count``-th shard of
    :data:`CLIPS_PER_SHARD` rows, starting at shard ``index``.

    Whole shards in their order, so :func:`encode_dataset` of these rows alone forms exactly those shards, with the
    cache keys the whole split's encoding looks for; and interleaved, so that each process gets about as much audio,
    and an interrupted preparation rerun with as many processes leaves each about as much to do.
    """
    shards = range(index, math.ceil(rows / CLIPS_PER_SHARD), count)
    return [row for shard in shards for row in range(shard * CLIPS_PER_SHARD, min((shard + 1) * CLIPS_PER_SHARD, rows))]


# What is measured of each track while it is decoded for its codes: ``{cache kind: compute(audio, sr)}`` (see
# :func:`~.measurements.cached_measures`), cached under the cache folder given with it.
Measures = dict[str, Callable[[np.ndarray, int], Any]]


class ClipEncoder:
    """Decodes each clip once, measures it (``measures``: caption fields, levels; cached in ``cache_root``),
    normalises and encodes it (and computes melody chroma): all that one process needs.

    Pickled once per worker process: the codec travels as its class, config and weights and is rebuilt there, so it
    is never re-pickled per clip (and parametrised modules, which refuse to pickle, are no problem).
    """

    def __init__(
        self,
        codec: torch.nn.Module,
        spec: AudioSpec,
        chroma_extractor: Any = None,
        loudness_lufs: float | None = None,
        measured: tuple[Measures, Path] | None = None,
    ) -> None:
        self.codec = codec.eval()
        self.spec = spec
        self.chroma_extractor = chroma_extractor
        self.loudness_lufs = loudness_lufs
        self.measured = measured
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
        decoded = decode_audio(row["audio"])  # the track's one decode: measured and encoded from it
        if self.measured is not None:
            measures, cache_root = self.measured
            cached_measures(row["audio"], cache_root, measures, decoded)
        audio = resample(set_channels(decoded[0], spec.channels), decoded[1], spec.sampling_rate)  # (channels, samples)
        del decoded
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
            features = datasets.Features(
                {**features, "text": datasets.Value("string"), "source": datasets.Value("string")}
            )
        save_dataset_atomically(datasets.Dataset.from_list(encoded, features=features), target)
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
    encoder: ClipEncoder,
    jobs: Iterable[tuple[list[dict[str, Any]], Path]],
    clips: int | None,
    num_workers: int | None,
    shards: int | None,
) -> None:
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
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_start_worker, initargs=(encoder, threads)
        ) as pool:
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


def _as_rows(batch: dict[str, list]) -> list[dict[str, Any]]:
    """A batch of columns (``dataset[start:stop]``) as a list of rows."""
    return [dict(zip(batch, values, strict=False)) for values in zip(*batch.values(), strict=False)]


def encode_dataset(
    dataset: datasets.Dataset,
    model: PreTrainedModel,
    cache_root: Path,
    codec_fingerprint: str | None = None,
    *,
    chroma_extractor: Any = None,
    loudness_lufs: float | None = None,
    num_workers: int | None = None,
    measures: Measures | None = None,
) -> datasets.Dataset:
    """Codes of every clip (columns ``codes``, ``seconds``, and ``chroma`` for melody), from the cache or encoded once;
    each clip encoded now is decoded once, and ``measures`` are taken (and cached) from that decode.

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
        measures: what else to measure of each clip while it is decoded (a clip whose codes are cached is decoded
            for them only when one is not cached yet).
    """
    spec = AudioSpec.of(model)
    codec_fingerprint = codec_fingerprint or module_fingerprint(model.audio_encoder)
    settings = encoding_settings(codec_fingerprint, spec, chroma_extractor, loudness_lufs)
    measured = (measures, cache_root) if measures else None
    encoder = ClipEncoder(model.audio_encoder, spec, chroma_extractor, loudness_lufs, measured)
    audio = dataset.select_columns(audio_columns(dataset))
    shards = []
    for start in range(0, len(dataset), CLIPS_PER_SHARD):  # a slice at a time: audio bytes never all in memory
        stop = min(start + CLIPS_PER_SHARD, len(dataset))
        key = codes_key(settings, audio[start:stop])
        shards.append((range(start, stop), cache_root / f"codes-{key}"))
    todo = [(rows, target) for rows, target in shards if not is_saved_dataset(target)]
    if todo:
        clips = sum(len(rows) for rows, _ in todo)
        logger.info(
            "Encoding %d of %d clips with EnCodec (%d of %d shards already cached in %s)",
            clips,
            len(dataset),
            len(shards) - len(todo),
            len(shards),
            cache_root,
        )
        jobs = ((_as_rows(audio[rows.start : rows.stop]), target) for rows, target in todo)  # read shard by shard
        encode_shards(encoder, jobs, clips, num_workers, len(todo))
    else:
        logger.info("Using cached EnCodec codes from %s (no encoding needed)", cache_root)
    if measures:  # clips whose codes were cached already: measured where something is missing (decoded only then)
        encoded_now = {target for _, target in todo}
        cached_rows = [row for rows, target in shards if target not in encoded_now for row in rows]
        for source in progress(iterable=dataset.select(cached_rows)["audio"], desc="Measuring tracks", unit="track"):
            cached_measures(source, cache_root, measures)
    if not shards:
        return datasets.Dataset.from_list([], features=encoder.features)
    parts = [datasets.load_from_disk(str(target)) for _, target in shards]
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def encode_stream(context: PrepareContext, split: str, limit: int | None = None) -> datasets.Dataset:
    """Codes of a streamed split (``streaming``): each clip is decoded and encoded as it arrives and only its codes,
    caption and source name are kept (columns ``codes``, ``seconds``, ``text``, ``source``, and ``chroma``).

    The stream is identified by its name, config and split (its content cannot be known without reading it), and
    encoded in shards of :data:`CLIPS_PER_SHARD` saved as they finish: an interrupted run reads the finished shards'
    clips again without encoding them, and once all are done, a manifest lets later runs skip the stream.

    Args:
        limit: read only the first ``limit`` clips.
    """
    data_args, model, cache_root, chroma_extractor = context.data, context.model, context.root, context.chroma_extractor
    spec = AudioSpec.of(model)
    settings = encoding_settings(context.codec, spec, chroma_extractor, data_args.loudness_target_lufs)
    identity = json.dumps(
        [settings, "stream", data_args.dataset_name, data_args.dataset_config_name, split, limit, CLIPS_PER_SHARD]
    )
    key = hashlib.sha256(identity.encode()).hexdigest()[:24]
    manifest = cache_root / f"stream-{key}.json"
    if not manifest.is_file():
        stream = open_stream(data_args, split, context.hub_cache_dir)
        if limit is not None:
            stream = stream.take(limit)
        targets: list[Path] = []

        def jobs() -> Iterator[tuple[list[dict[str, Any]], Path]]:
            rows = stream_rows(stream, data_args)
            while shard := list(itertools.islice(rows, CLIPS_PER_SHARD)):
                target = cache_root / f"codes-{key}-{len(targets):05d}"
                targets.append(target)
                if not is_saved_dataset(target):
                    yield shard, target

        logger.info(
            "Streaming '%s' split '%s': clips are encoded as they arrive, only their codes are kept",
            data_args.dataset_name,
            split,
        )
        encoder = ClipEncoder(model.audio_encoder, spec, chroma_extractor, data_args.loudness_target_lufs)
        encode_shards(encoder, jobs(), None, data_args.preprocessing_num_workers, shards=None)
        if not targets:
            raise UserError(
                f"streamed dataset '{data_args.dataset_name}' split '{split}' has no rows; check the split name"
            )
        cache_root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(manifest, [t.name for t in targets])
    else:
        logger.info(
            "Using cached EnCodec codes of streamed '%s' split '%s' (%s)", data_args.dataset_name, split, manifest
        )
    names = json.loads(manifest.read_text(encoding="utf-8"))
    return datasets.concatenate_datasets([datasets.load_from_disk(str(cache_root / name)) for name in names])
