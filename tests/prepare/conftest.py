"""Fixtures of the data-preparation tests."""

from __future__ import annotations

from typing import Any

import datasets
import pytest
from transformers import PreTrainedModel

from musicgen_lora.config.arguments import DataArguments
from musicgen_lora.prepare.context import PrepareContext
from musicgen_lora.prepare.pipeline import prepare_split


@pytest.fixture(scope="session")
def model(tiny_model):
    """The tiny MusicGen, whose EnCodec the preparation tests encode with."""
    return tiny_model


def prepared_split(
    data_args: DataArguments,
    split: str | None,
    model: PreTrainedModel,
    codec: str,
    is_eval: bool,
    chroma_extractor: Any = None,
    seed: int = 42,
) -> datasets.Dataset:
    """The examples of one split as a run prepares them (:func:`~musicgen_lora.prepare.pipeline.prepare_split`)."""
    context = PrepareContext(data_args, model, codec, chroma_extractor, seed)
    return prepare_split(context, split, is_eval).examples
