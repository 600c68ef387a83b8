"""Load a MusicGen checkpoint (any variant) with its processor, and make it ready for a loss: configs that
forward(labels=...) needs, everything frozen.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from typing import Any

import torch
from safetensors import SafetensorError
from transformers import AutoModelForTextToWaveform, PreTrainedModel, ProcessorMixin

from ..compat import keep_in_eval_mode, read_not_mapped_loading
from ..config.arguments import ModelArguments, ParsedConfig
from ..errors import UserError, one_line
from ..files import is_local_path
from .processors import load_processor
from .quantize import quantized_loading

logger = logging.getLogger(__name__)


def load_model_and_processor(
    model_args: ModelArguments, dtype: torch.dtype | None = None, train_text_encoder: bool = False
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Load a MusicGen model and its processor, ready for a loss (see :func:`ready_for_training`).

    Args:
        train_text_encoder: leave the text encoder in training mode (it will be trained); else it stays in eval mode.
        dtype: load the text encoder, decoder and projections in this dtype straight from the checkpoint (EnCodec
            stays fp32, exactly as stored), so a half-precision run never holds the fp32 model: the frozen-base
            cast of :func:`cast_frozen_base` without its peak (see
            :func:`musicgen_lora.compat.read_not_mapped_loading`).
            None: everything as stored (fp32).

    Raises:
        UserError: the path/id cannot be loaded, or it is not a (mono, text-conditioned) MusicGen model.
    """
    name = model_args.model_name_or_path
    if is_local_path(name) and not os.path.exists(os.path.expanduser(name)):
        raise UserError(
            f"model folder '{name}' not found; check the path, or give a MusicGen Hub id (e.g. facebook/musicgen-small)"
        )
    try:
        with read_not_mapped_loading(dtype, model_args.quantize_base):  # EnCodec stays fp32; files read, not mapped
            model = AutoModelForTextToWaveform.from_pretrained(
                name,
                cache_dir=model_args.cache_dir,
                trust_remote_code=model_args.trust_remote_code,
                dtype=dtype,
                # the decoder's and text encoder's kernel; EnCodec has no attention to choose
                attn_implementation={
                    "decoder": model_args.attn_implementation,
                    "text_encoder": model_args.attn_implementation,
                },
                **quantized_loading(model_args.quantize_base, dtype),  # quantize_base: the decoder in 8 or 4 bits
            )
        if dtype not in (None, torch.float32) or model_args.quantize_base:
            return_freed_memory()  # the checkpoint's fp32 tensors, read one by one and converted, are garbage now
        processor = load_processor(name, cache_dir=model_args.cache_dir, trust_remote_code=model_args.trust_remote_code)
    except ImportError as err:  # melody processors need torchaudio unless the model is a local folder
        raise UserError(
            f"cannot load the processor of '{name}': {one_line(err)[:200]}; install torchaudio matching your torch, "
            "or download the model to a local folder (hf download ... --local-dir DIR) and point to it"
        ) from None
    except (OSError, ValueError, KeyError, SafetensorError) as err:  # a damaged weights file: SafetensorError
        if model_args.attn_implementation != "sdpa" and "attn" in str(err).lower():
            raise UserError(
                f"attn_implementation '{model_args.attn_implementation}' is not available here "
                f"({one_line(err)[:200]}); "
                "use 'sdpa' (the default) or 'eager', or install the kernel's package"
            ) from None
        raise UserError(
            f"cannot load model '{name}': {one_line(err)[:300]}; give a MusicGen Hub id (e.g. facebook/musicgen-small, "
            "needs network) or a local model folder"
        ) from None
    model_type = getattr(model.config, "model_type", None)
    if model_type not in ("musicgen", "musicgen_melody"):
        raise UserError(
            f"model '{name}' is a '{model_type}' model, not MusicGen; use facebook/musicgen-small/-medium/-large, "
            "-stereo-*, -melody, or a folder made by `python -m musicgen_lora.tiny`"
        )
    ready_for_training(model, train_text_encoder=train_text_encoder)
    return model, processor


def return_freed_memory() -> bool:
    """Hand the memory the C allocator keeps after frees back to the system (glibc's ``malloc_trim``); False where
    there is no glibc (macOS, Windows, musl), where it is not needed the same way.

    A half-precision or quantized load reads each fp32 tensor of the checkpoint, converts it and frees it; glibc
    keeps those freed pages in its heaps, so the process stays as large as if it still held them: musicgen-medium
    with an nf4 base stayed at 3.72 GiB resident after loading and fell to 2.15 GiB after this call (1.58 GiB of
    parameters; bench/RESULTS.md, *Memory planner*).
    """
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None
    if trim is None:
        return False
    trim(0)
    return True


def is_melody_model(model: torch.nn.Module) -> bool:
    """MusicGen-Melody conditions on chroma as well as text (prepended to the decoder's input)."""
    config = model.config
    return getattr(config, "model_type", None) == "musicgen_melody"


def check_melody_options(model: torch.nn.Module, parsed: ParsedConfig) -> None:
    """Options that only a melody model uses, on a model without melody conditioning: the melody audio column is
    refused (it would be read and ignored), a changed ``chroma_dropout_prob`` is flagged (running on is harmless).

    Raises:
        UserError: ``conditional_audio_column_name`` set for a model that is not MusicGen-Melody.
    """
    if is_melody_model(model):
        return
    name = parsed.model.model_name_or_path
    if parsed.data.conditional_audio_column_name is not None:
        raise UserError(
            f"conditional_audio_column_name is set but '{name}' is not a melody model, so that melody audio would be "
            "ignored; unset it, or train a melody model such as facebook/musicgen-melody"
        )
    if "chroma_dropout_prob" in parsed.requested:
        logger.warning("chroma_dropout_prob has no effect: '%s' is not a melody model (it has no chroma input)", name)


def ready_for_training(model: PreTrainedModel, train_text_encoder: bool = False) -> None:
    """Fix configs that ``forward(labels=...)`` and Trainer need, and freeze everything."""
    generation = model.generation_config
    decoder = model.config.decoder
    # forward() raises without decoder.decoder_start_token_id; the checkpoints keep it in the generation config.
    start = generation.decoder_start_token_id if generation.decoder_start_token_id is not None else decoder.bos_token_id
    decoder.decoder_start_token_id = start
    if decoder.pad_token_id is None:
        decoder.pad_token_id = generation.pad_token_id if generation.pad_token_id is not None else decoder.vocab_size
    # MusicGen's forward takes **kwargs, so Trainer would pass num_items_in_batch into it and skip its own loss
    # scaling; trainer.MusicgenTrainer computes the loss itself, from num_items_in_batch.
    model.accepts_loss_kwargs = False
    model.requires_grad_(False)
    # The frozen text encoder and codec run in inference mode even while the decoder trains: Trainer calls
    # model.train() every step, which would otherwise switch on T5's dropout and make the conditioning noisy
    # (keep_in_eval_mode: see musicgen_lora.compat).
    if not train_text_encoder:
        keep_in_eval_mode(model.text_encoder)
    keep_in_eval_mode(model.audio_encoder)


def pick_device(device: str | None) -> torch.device:
    """The torch device to run on: ``device``, else CUDA when there is one, else the CPU.

    Raises:
        UserError: not a device name, or a device this machine does not have.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device '{device}' is not a device; use cpu, cuda or cuda:N") from None
    if chosen.type == "cuda" and (not torch.cuda.is_available() or (chosen.index or 0) >= torch.cuda.device_count()):
        raise UserError(f"--device {device}: this machine has no such CUDA GPU; use --device cpu (or leave it out)")
    backend = getattr(torch, chosen.type, None)  # torch.mps, torch.xpu, ... (each says whether it is usable)
    if chosen.type not in ("cpu", "cuda") and not (backend is not None and _available(backend)):
        raise UserError(f"--device {device}: not available here; use --device cpu")
    return chosen


def _available(backend: Any) -> bool:
    """Whether a torch device backend module (torch.mps, torch.xpu...) has a usable device on this machine."""
    try:
        return bool(backend.is_available()) if hasattr(backend, "is_available") else False
    except (RuntimeError, AssertionError):  # builds without the backend raise instead of answering False
        return False
