"""Load the base MusicGen, fix its configs for training, freeze it, and add LoRA adapters (or unfreeze the decoder)."""

from __future__ import annotations

import contextlib
import logging
import re
import types
from collections.abc import Iterator
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForTextToWaveform,
    MusicgenForConditionalGeneration,
    MusicgenMelodyForConditionalGeneration,
    PreTrainedModel,
    ProcessorMixin,
)

from .config import DEFAULT_LORA_TARGETS, FinetuneArguments, MusicgenTrainingArguments
from .errors import UserError, one_line
from .lora_speed import use_packed_bits_dropout
from .processors import load_processor

logger = logging.getLogger(__name__)

# Module-name patterns (full names inside MusicgenForConditionalGeneration) for each LoRA target name.
_LAYER = r"decoder\.model\.decoder\.layers\.\d+"
_TARGET_PATTERNS = {
    "q_proj": rf"{_LAYER}\.(self_attn|encoder_attn)\.q_proj",
    "k_proj": rf"{_LAYER}\.(self_attn|encoder_attn)\.k_proj",
    "v_proj": rf"{_LAYER}\.(self_attn|encoder_attn)\.v_proj",
    "out_proj": rf"{_LAYER}\.(self_attn|encoder_attn)\.out_proj",
    "fc1": rf"{_LAYER}\.fc1",
    "fc2": rf"{_LAYER}\.fc2",
    "enc_to_dec_proj": r"enc_to_dec_proj",
    "audio_enc_to_dec_proj": r"audio_enc_to_dec_proj",
    "lm_heads": r"decoder\.lm_heads\.\d+",
    "embed_tokens": r"decoder\.model\.decoder\.embed_tokens\.\d+",
}
# T5 attention projections of the text encoder, adapted only with train_text_encoder.
TEXT_ENCODER_PATTERN = r"text_encoder\.encoder\.block\.\d+\.layer\.0\.SelfAttention\.(q|k|v|o)"
_INDEXED_TARGET = re.compile(r"^(lm_heads|embed_tokens)\.(\d+)$")


def load_model_and_processor(
    args: FinetuneArguments, dtype: torch.dtype | None = None
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Load a MusicGen model and its processor, ready for training.

    Args:
        dtype: load the text encoder, decoder and projections in this dtype straight from the checkpoint (EnCodec
            stays fp32, exactly as stored), so a half-precision run never holds the fp32 model: the frozen-base
            cast of :func:`cast_frozen_base` without its peak. None: everything as stored (fp32).

    Raises:
        UserError: the path/id cannot be loaded, or it is not a (mono, text-conditioned) MusicGen model.
    """
    name = args.model_name_or_path
    try:
        with _half_precision_loading(dtype):
            model = AutoModelForTextToWaveform.from_pretrained(
                name, cache_dir=args.cache_dir, trust_remote_code=args.trust_remote_code, dtype=dtype,
                # the decoder's and text encoder's kernel; EnCodec has no attention to choose
                attn_implementation={"decoder": args.attn_implementation, "text_encoder": args.attn_implementation},
            )  # fmt: skip
        processor = load_processor(name, cache_dir=args.cache_dir, trust_remote_code=args.trust_remote_code)
    except ImportError as err:  # melody processors need torchaudio unless the model is a local folder
        raise UserError(
            f"cannot load the processor of '{name}': {one_line(err)[:200]}; install torchaudio matching your torch, "
            "or download the model to a local folder (hf download ... --local-dir DIR) and point to it"
        ) from None
    except (OSError, ValueError, KeyError) as err:
        if args.attn_implementation != "sdpa" and "attn" in str(err).lower():
            raise UserError(
                f"attn_implementation '{args.attn_implementation}' is not available here ({one_line(err)[:200]}); "
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
    prepare_for_training(model, train_text_encoder=args.train_text_encoder)
    return model, processor


@contextlib.contextmanager
def _half_precision_loading(dtype: torch.dtype | None) -> Iterator[None]:
    """While loading in half precision: EnCodec stays fp32, and checkpoint files are read, not memory-mapped.

    transformers' "keep these modules in fp32 whatever dtype is asked" list names the codec. Its fp32 tensors would
    otherwise be views into the memory-mapped checkpoint, which then stays mapped (its pages resident: the whole fp32
    file, 2.2 GB for musicgen-small, counted in the process' memory for the rest of the run); reading each tensor
    (safetensors' pread backend) peaks at the half-precision model plus one tensor.
    """
    if dtype is None or dtype == torch.float32:
        yield
        return
    import transformers.modeling_utils as loading

    classes = [MusicgenForConditionalGeneration, MusicgenMelodyForConditionalGeneration]
    saved = [cls.__dict__.get("_keep_in_fp32_modules_strict") for cls in classes]
    safe_open = loading.safe_open

    def read_not_mapped(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("backend") == "mmap":
            kwargs["backend"] = "pread"
        return safe_open(*args, **kwargs)

    try:
        for cls in classes:
            cls._keep_in_fp32_modules_strict = ["audio_encoder"]
        loading.safe_open = read_not_mapped
        yield
    finally:
        loading.safe_open = safe_open
        for cls, value in zip(classes, saved):
            if value is None:
                del cls._keep_in_fp32_modules_strict
            else:
                cls._keep_in_fp32_modules_strict = value


def is_melody_model(model: torch.nn.Module) -> bool:
    """MusicGen-Melody conditions on chroma as well as text (prepended to the decoder's input)."""
    config = model.config
    return getattr(config, "model_type", None) == "musicgen_melody"


def prepare_for_training(model: PreTrainedModel, train_text_encoder: bool = False) -> None:
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
    # model.train() every step, which would otherwise switch on T5's dropout and make the conditioning noisy.
    if not train_text_encoder:
        keep_in_eval_mode(model.text_encoder)
    keep_in_eval_mode(model.audio_encoder)


def keep_in_eval_mode(module: torch.nn.Module) -> None:
    """Make ``module.train()`` (called by its parent's ``train()``) leave it, and its children, in eval mode."""

    def train(self: torch.nn.Module, mode: bool = True) -> torch.nn.Module:
        return torch.nn.Module.train(self, False)

    module.train = types.MethodType(train, module)
    module.eval()


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def frozen_base_dtype(args: FinetuneArguments, training: MusicgenTrainingArguments) -> torch.dtype:
    """The dtype the frozen base weights train in: ``base_model_dtype``, where 'auto' follows bf16/fp16 (autocast)."""
    if args.base_model_dtype != "auto":
        return _DTYPES[args.base_model_dtype]
    if training.bf16:
        return torch.bfloat16
    if training.fp16:  # only ever set on a GPU (config turns fp16 off on a CPU)
        return torch.float16
    return torch.float32


def cast_frozen_base(model: PreTrainedModel, dtype: torch.dtype, args: FinetuneArguments) -> list[str]:
    """Keep the frozen parts of the base model in ``dtype`` (before LoRA is added, so adapters stay fp32).

    Under bf16/fp16 autocast a frozen fp32 weight is cast again at every matmul and its half-precision copy kept for
    the backward pass: casting the frozen weights once halves their memory and saves that work. Trainable weights
    (the decoder in full fine-tuning, a fully trained text encoder) stay fp32 for the optimizer; EnCodec stays fp32
    so that encoding (done before this) and decoding the samples are unchanged.

    Returns:
        The names of the parts cast (empty for fp32).
    """
    if dtype == torch.float32:
        return []
    parts = []
    if not (args.train_text_encoder and not args.use_lora):
        parts.append("text_encoder")
    if args.use_lora:
        parts += [name for name in ("decoder", "enc_to_dec_proj", "audio_enc_to_dec_proj") if hasattr(model, name)]
    for name in parts:
        getattr(model, name).to(dtype)
    logger.info("Frozen base weights kept in %s: %s", str(dtype).removeprefix("torch."), ", ".join(parts))
    return parts


def set_decoder_dropout(model: PreTrainedModel, p: float) -> None:
    """Set the decoder's residual and embedding dropout (its layers copy ``config.dropout`` when built)."""
    model.config.decoder.dropout = p
    for module in model.decoder.modules():
        if type(module).__name__.endswith(("DecoderLayer", "Decoder")) and isinstance(getattr(module, "dropout", None), (int, float)):
            module.dropout = p


def lora_target_regex(names: list[str]) -> str:
    """A regex (full match on module names) selecting the decoder modules named in ``lora_target_modules``.

    Raises:
        UserError: an unknown name.
    """
    patterns = []
    for name in names:
        indexed = _INDEXED_TARGET.match(name)
        if indexed:
            base = _TARGET_PATTERNS[indexed.group(1)]
            patterns.append(base.replace(r"\d+", indexed.group(2)))
        elif name in _TARGET_PATTERNS:
            patterns.append(_TARGET_PATTERNS[name])
        else:
            valid = ", ".join([*_TARGET_PATTERNS, "lm_heads.N", "embed_tokens.N"])
            raise UserError(f"unknown LoRA target '{name}' in lora_target_modules; valid names: {valid}")
    return "(" + "|".join(patterns) + ")"


def add_trainable_parts(model: PreTrainedModel, args: FinetuneArguments) -> torch.nn.Module:
    """Wrap the frozen model with LoRA adapters, or unfreeze the decoder for full fine-tuning.

    Returns:
        The model to train: a ``PeftModel`` with LoRA, else the model itself.

    Raises:
        UserError: the targets match no module of this model.
    """
    if args.decoder_dropout is not None:
        set_decoder_dropout(model, args.decoder_dropout)
    if not args.use_lora:
        model.decoder.requires_grad_(True)
        for projection in ("enc_to_dec_proj", "audio_enc_to_dec_proj"):
            if hasattr(model, projection):
                getattr(model, projection).requires_grad_(True)
        if args.train_text_encoder:
            model.text_encoder.requires_grad_(True)
        return model
    regex = args.lora_target_regex or lora_target_regex(args.lora_target_modules)
    if args.train_text_encoder:
        regex = f"({regex}|{TEXT_ENCODER_PATTERN})"
    try:
        compiled = re.compile(regex)
    except re.error as err:
        raise UserError(f"lora_target_regex is not a valid regular expression ({err}); fix it") from None
    matched = [name for name, _ in model.named_modules() if compiled.fullmatch(name)]
    if not matched:
        raise UserError(
            f"LoRA targets match no module of this model (regex {regex!r}); check lora_target_modules or lora_target_regex"
        )
    if not args.lora_target_regex and args.lora_target_modules != DEFAULT_LORA_TARGETS:
        missing = [n for n in args.lora_target_modules if not any(re.fullmatch(lora_target_regex([n]), m) for m in matched)]
        if missing:  # e.g. audio_enc_to_dec_proj only exists in melody models
            logger.warning("LoRA targets not present in this model, skipped: %s", ", ".join(missing))
    config = LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        use_rslora=args.use_rslora,
        use_dora=args.use_dora,
        target_modules=regex,
        init_lora_weights=True,
    )
    peft_model = get_peft_model(model, config)
    use_packed_bits_dropout(peft_model)
    trainable, total = peft_model.get_nb_trainable_parameters()
    logger.info("LoRA on %d modules: %d trainable parameters (%.2f%% of %d)", len(matched), trainable, 100 * trainable / total, total)
    return peft_model
