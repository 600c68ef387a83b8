"""A quantized frozen base (``quantize_base: int8 | nf4``): the decoder's frozen linear layers held in 8 or 4 bits by
bitsandbytes, through transformers' ``BitsAndBytesConfig``, as peft's QLoRA recipes do; LoRA trains in full precision
on top (peft wraps bitsandbytes' ``Linear8bitLt`` / ``Linear4bit`` with its own LoRA layers).

Why bitsandbytes rather than torchao's NF4 (torchtune's QLoRA), measured on this project's 2-core CPU (bench/RESULTS.md,
*Quantized base*): the same NF4 error (0.0919 mean relative error of a 1024->4096 layer's output, both) and the same
speed within the machine's noise, 27 % vs 26 % of the bf16 bytes; but bitsandbytes gives int8 and nf4 through one
``from_pretrained`` option that transformers and peft support end to end (loading, LoRA layers, saving), where
torchao's NF4 has no transformers config or peft layer (we would swap modules by hand), and an installed torchao is
imported by every transformers model load (+3.3 s here, with warnings about its missing CUDA kernels).

Not quantized: the text encoder, EnCodec (its codes must not change), the codebook embeddings and output heads
(``lm_heads``: LoRA targets of their own, kept exact), and the text-to-decoder projections.
"""

from __future__ import annotations

from typing import Any

import torch
from accelerate import PartialState
from transformers import BitsAndBytesConfig

from ..config.dependencies import require_bitsandbytes

# Module names (prefixes of full names, as transformers' should_convert_module matches them) kept unquantized.
NOT_QUANTIZED = [
    "text_encoder",
    "audio_encoder",
    "decoder.lm_heads",
    "decoder.model.decoder.embed_tokens",
    "enc_to_dec_proj",
    "audio_enc_to_dec_proj",
]

# Bytes per weight of a quantized linear layer, scales included (bitsandbytes' layouts): nf4 packs two weights in a
# byte with one fp32 absmax per 64-weight block, itself quantized to 8 bits with one fp32 scale per 256 blocks
# (double quantization); int8 keeps one fp32 scale per output row (counted per weight by the planner).
BYTES_PER_WEIGHT = {"nf4": 0.5 + 1 / 64 + 4 / (64 * 256), "int8": 1.0}


def quantization_config(kind: str, compute_dtype: torch.dtype | None) -> BitsAndBytesConfig:
    """transformers' config for ``quantize_base`` ``kind`` ('int8' or 'nf4'); nf4 computes in ``compute_dtype``
    (the frozen base's dtype: bf16 under bf16 training, else fp32), with double quantization as QLoRA does."""
    if kind == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype or torch.float32,
            llm_int8_skip_modules=list(NOT_QUANTIZED),
        )
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(NOT_QUANTIZED))


def quantized_loading(kind: str | None, compute_dtype: torch.dtype | None) -> dict[str, Any]:
    """Keyword arguments of ``from_pretrained`` that load the base with its decoder quantized (none for None).

    The quantized weights are placed on this process' device at load time (bitsandbytes quantizes as it places
    them; Trainer does not move a quantized model).

    Raises:
        UserError: bitsandbytes is missing or cannot run here, with the install command.
    """
    if kind is None:
        return {}
    require_bitsandbytes(f"quantize_base '{kind}'")
    device = PartialState().device
    return {"quantization_config": quantization_config(kind, compute_dtype), "device_map": {"": str(device)}}


def quantized_linear_layers(model: torch.nn.Module) -> dict[str, str]:
    """The model's quantized linear layers: full name -> 'nf4' or 'int8' (read from the weights' classes)."""
    layers = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        kind = type(weight).__name__
        if kind == "Params4bit":
            layers[name] = str(getattr(weight, "quant_type", "nf4"))
        elif kind == "Int8Params":
            layers[name] = "int8"
    return layers
