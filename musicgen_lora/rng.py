"""Random state: run a side computation (samples, CLAP crops) without changing what training draws next."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore every random number generator training may draw from (torch CPU and accelerators, numpy, random)."""
    cpu = torch.get_rng_state()
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    devices: list[tuple[Any, Any]] = []
    for name in ("cuda", "xpu"):
        module = getattr(torch, name, None)
        if module is not None and module.is_available():
            devices.append((module, module.get_rng_state_all()))
    mps = torch.backends.mps.is_available()
    mps_state = torch.mps.get_rng_state() if mps else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        for module, states in devices:
            module.set_rng_state_all(states)
        if mps:
            torch.mps.set_rng_state(mps_state)
