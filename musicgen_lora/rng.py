"""Random state: run a side computation (samples, CLAP crops) without changing what training draws next."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore every random number generator training may draw from: torch's CPU generator and every device's of
    the accelerator in use (``torch.random.fork_rng``: CUDA, XPU, MPS...), numpy's and Python's ``random``."""
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    try:
        # every device named explicitly: fork_rng would otherwise warn once on a machine with several GPUs
        with torch.random.fork_rng(devices=range(torch.accelerator.device_count())):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
