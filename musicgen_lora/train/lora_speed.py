"""Cheaper LoRA layers for training: dropout masks from packed random bits on the CPU, and no fp32 round trip of
the layer inputs under autocast.

Measured on a real-size musicgen-small step (bf16, batch 1 x 10 s, 2 CPU cores; bench/RESULTS.md): torch's CPU
dropout draws one random number per element (``bernoulli_``) and took about a third of the step for the LoRA inputs
of 10 projections in each of 24 layers. Under autocast PEFT also casts every bf16 input to the adapter's fp32 before
dropout, and autocast casts it straight back to bf16 for the adapter's matmul: two copies per adapted module."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ..compat import lora_input_casting, replace_lora_dropout

# Dropout probabilities are quantised to 1/65536: each mask element is one 16-bit lane of a 64-bit random draw.
_LANES = 65536


class PackedBitsDropout(torch.nn.Module):
    """Dropout whose CPU masks come from 64 random bits per 4 elements (one generator call instead of four).

    The mask distribution is the same as ``nn.Dropout``'s up to ``p`` rounded to a multiple of 1/65536 (the kept
    values are scaled by the exact inverse of the rounded keep probability, so the expectation is unchanged). Draws
    come from torch's default CPU generator, so seeding, gradient checkpointing's RNG replay and exact resume work as
    with ``nn.Dropout``. Tensors on other devices use ``F.dropout`` (fused and cheap on GPUs).
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        dropped = round(p * _LANES)
        self.threshold = dropped - _LANES // 2  # a signed 16-bit lane >= threshold is kept
        self.scale = _LANES / (_LANES - dropped)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        count = x.numel()
        bits = torch.empty((count + 3) // 4, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
        keep = bits.view(torch.int16)[:count].view(x.shape) >= self.threshold
        return x * keep * self.scale

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_packed_bits_dropout(model: torch.nn.Module) -> int:
    """Replace every LoRA layer's ``nn.Dropout`` by :class:`PackedBitsDropout`; returns how many were replaced.

    Dropout modules hold no weights, so saved adapters and ``PeftModel.from_pretrained`` are unaffected.
    """
    return replace_lora_dropout(model, PackedBitsDropout)


@contextlib.contextmanager
def inputs_kept_in_autocast_dtype(layers: list[torch.nn.Module], active: bool = True) -> Iterator[None]:
    """Within the block, LoRA layers (:func:`musicgen_lora.compat.lora_layers`) pass their (half-precision) input to
    the adapter as it is.

    Only correct under autocast, which casts it for the adapter's matmul anyway; outside autocast an fp32 adapter
    needs PEFT's cast (e.g. generating samples from a bf16 base). Wrap forward *and* backward, so that recomputation
    under gradient checkpointing sees the same dtypes as the forward.
    """
    if not active:
        yield
        return
    with lora_input_casting(layers, enabled=False):
        yield
