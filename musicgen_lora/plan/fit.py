"""The reverse questions: the largest batch x duration of a config that fits a memory size, and the settings to
recommend for a model on a GPU of a given size (the README's "Which GPU" table and the example presets)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from ..config.arguments import MODEL_MAX_SECONDS
from ..errors import UserError
from .architecture import architecture_of
from .memory import GIB, MemoryPlan, plan_settings, read_config, settings_of

BATCHES = (1, 2, 4, 8, 16, 32, 64)
GPU_SIZES_GB = (8, 12, 16, 24, 40, 80)

# Settings tried in order, lightest on speed first: the first with which batch 1 x 30 s fits is recommended.
LADDER: tuple[tuple[str, dict[str, Any]], ...] = (
    ("bf16", {"bf16": True, "gradient_checkpointing": False}),
    ("bf16 + checkpointing", {"bf16": True, "gradient_checkpointing": True}),
    ("nf4 + checkpointing", {"bf16": True, "gradient_checkpointing": True, "quantize_base": "nf4"}),
    (
        "nf4 + checkpointing + 8-bit AdamW",
        {"bf16": True, "gradient_checkpointing": True, "quantize_base": "nf4", "optim": "adamw_bnb_8bit"},
    ),
)


def parse_memory_size(text: str) -> float:
    """'12GB', '12 GiB', '16g', '8000MB' -> bytes (GB and GiB both read as GiB: GPUs are sold by GiB).

    Raises:
        UserError: not a size.
    """
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([gGmM])?(i?[bB])?\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"--fit {text!r} is not a memory size; write it like 12GB or 8000MB")
    scale = 2**20 if (match.group(2) or "g").lower() == "m" else GIB
    return float(match.group(1)) * scale


@dataclass
class Fit:
    """For one batch size, the longest window (whole seconds, at most MusicGen's 30) that fits, and its plan."""

    batch: int
    seconds: int
    plan: MemoryPlan


def largest_fits(config: str | dict[str, Any], memory_bytes: float, device: str = "cuda") -> list[Fit]:
    """Each batch size of :data:`BATCHES` with the longest window that fits ``memory_bytes`` (those where 1 s fits)."""
    values = read_config(config)
    settings = settings_of(values, device)
    arch = architecture_of(settings.model)
    fits = []
    for batch in BATCHES:
        best = None
        for seconds in range(int(MODEL_MAX_SECONDS), 0, -1):  # memory grows with seconds: the first that fits
            plan = plan_settings(arch, dataclasses.replace(settings, batch=batch, seconds=float(seconds)), device)
            if plan.fits(memory_bytes):
                best = Fit(batch, seconds, plan)
                break
        if best is None:
            break
        fits.append(best)
    return fits


@dataclass
class Recommendation:
    """The settings recommended for a model on a GPU, and the batches that fit with them."""

    model: str
    gpu_gb: int
    name: str | None  # a LADDER name, None when nothing fits
    options: dict[str, Any]
    fits: list[Fit]

    def best(self) -> Fit | None:
        """The largest batch x seconds that fits (most audio per step)."""
        return max(self.fits, key=lambda f: f.batch * f.seconds, default=None)


def recommend(model: str, gpu_gb: int, base: dict[str, Any] | None = None) -> Recommendation:
    """The first rung of :data:`LADDER` with which batch 1 x 30 s fits a ``gpu_gb`` GPU, else the last rung that fits
    batch 1 at any duration; ``base``: other options of the config."""
    memory = gpu_gb * GIB
    chosen = None
    for name, options in LADDER:
        config = {**(base or {}), "model_name_or_path": model, **options}
        fits = largest_fits(config, memory, "cuda")
        if fits and fits[0].seconds >= MODEL_MAX_SECONDS:
            return Recommendation(model, gpu_gb, name, options, fits)
        if fits:
            chosen = Recommendation(model, gpu_gb, name, options, fits)
    return chosen or Recommendation(model, gpu_gb, None, {}, [])
