"""Fixtures of the data-preparation tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def model(tiny_model):
    """The tiny MusicGen, whose EnCodec the preparation tests encode with."""
    return tiny_model
