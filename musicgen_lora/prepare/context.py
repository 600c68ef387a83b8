"""What every stage of a preparation reads: one :class:`PrepareContext` (the data options, the model whose EnCodec
encodes, the codec's fingerprint, where caches live) and the sources, each listed once (:class:`Sources`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import datasets
from transformers import PreTrainedModel, ProcessorMixin

from ..config.arguments import DataArguments, ParsedConfig
from ..files import cache_root
from ..models.loading import is_melody_model
from ..models.spec import AudioSpec
from .cache_keys import codec_fingerprint
from .sources import Listing, list_source


class Sources:
    """Each source split of ``dataset_name`` listed once per preparation (:func:`~.sources.list_source`), shared by
    the fingerprint and every split built from it: a listing reads metadata, scans folders and warns once."""

    def __init__(self, data_args: DataArguments, hub_cache_dir: str | None = None) -> None:
        self.data_args = data_args
        self.hub_cache_dir = hub_cache_dir
        self._listed: dict[str, Listing] = {}
        self._remembered: dict[str, Any] = {}

    def listing(self, split: str) -> Listing:
        if split not in self._listed:
            self._listed[split] = list_source(self.data_args, split, self.hub_cache_dir)
        return self._listed[split]

    def tracks(self, split: str) -> datasets.Dataset:
        """The split's tracks as listed (columns ``audio``, ``text``, ...)."""
        return self.listing(split).tracks

    def remembered(self, key: str) -> Any:
        """What :meth:`remember` kept under ``key`` during this preparation (None: nothing)."""
        return self._remembered.get(key)

    def remember(self, key: str, value: Any) -> Any:
        """Keep ``value`` (e.g. a screened listing both sides of a split use) for this preparation; returns it."""
        self._remembered[key] = value
        return value


@dataclasses.dataclass(frozen=True)
class PrepareContext:
    """One preparation's settings and shared state, handed to every stage.

    Attributes:
        data: the data options.
        model: the MusicGen model whose ``audio_encoder`` encodes (and whose audio format the codes have).
        codec: :func:`~.cache_keys.module_fingerprint` of that EnCodec (part of the codes' cache keys).
        chroma_extractor: a melody model's feature extractor (its chroma is stored with the codes), else None.
        seed: which tracks ``eval_split_percentage`` holds out.
        hub_cache_dir: where Hub datasets are downloaded (the ``cache_dir`` model option).
        tokenizer: the text encoder's tokenizer, to keep captions within what it reads (None: not checked).
        sources: the source listings, each read once.
    """

    data: DataArguments
    model: PreTrainedModel
    codec: str
    chroma_extractor: Any = None
    seed: int = 42
    hub_cache_dir: str | None = None
    tokenizer: Any = None
    sources: Sources | None = None

    def __post_init__(self) -> None:
        if self.sources is None:
            object.__setattr__(self, "sources", Sources(self.data, self.hub_cache_dir))

    @classmethod
    def of(
        cls,
        parsed: ParsedConfig,
        model: PreTrainedModel,
        processor: ProcessorMixin | None = None,
        sources: Sources | None = None,
    ) -> PrepareContext:
        """The context of a run's preparation (its config, its loaded model and processor, the listings so far)."""
        root = cache_root(parsed.data.data_cache_dir)
        melody = processor is not None and is_melody_model(model)
        return cls(
            data=parsed.data,
            model=model,
            codec=codec_fingerprint(parsed.model, root, model),
            chroma_extractor=processor.feature_extractor if melody else None,
            seed=parsed.training.seed,
            hub_cache_dir=parsed.model.cache_dir,
            tokenizer=getattr(processor, "tokenizer", None),
            sources=sources,
        )

    @property
    def root(self) -> Path:
        """The cache folder (``data_cache_dir``)."""
        return cache_root(self.data.data_cache_dir)

    @property
    def spec(self) -> AudioSpec:
        return AudioSpec.of(self.model)
