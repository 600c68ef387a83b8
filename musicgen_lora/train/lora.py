"""What trains: LoRA adapters on the frozen base (or the whole decoder), the frozen base's dtype, and the decoder's
dropout.
"""

from __future__ import annotations

import logging
import re

import torch
from peft import LoraConfig, get_peft_model
from transformers import PreTrainedModel

from ..compat import compute_in_fp32, kept_in_fp32_names, set_decoder_dropout
from ..config.arguments import (
    DEFAULT_LORA_TARGETS,
    INDEXED_LORA_TARGET,
    LORA_TARGET_NAMES,
    LoraArguments,
    ModelArguments,
    MusicgenTrainingArguments,
)
from ..errors import UserError
from .lora_speed import use_packed_bits_dropout

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


assert set(_TARGET_PATTERNS) == set(LORA_TARGET_NAMES), "config.LORA_TARGET_NAMES and the patterns must agree"
# T5 attention projections of the text encoder, adapted only with train_text_encoder.
TEXT_ENCODER_PATTERN = r"text_encoder\.encoder\.block\.\d+\.layer\.0\.SelfAttention\.(q|k|v|o)"


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def frozen_base_dtype(model_args: ModelArguments, training: MusicgenTrainingArguments) -> torch.dtype:
    """The dtype the frozen base weights train in: ``base_model_dtype``, where 'auto' follows bf16/fp16 (autocast)."""
    if model_args.base_model_dtype != "auto":
        return _DTYPES[model_args.base_model_dtype]
    if training.bf16:
        return torch.bfloat16
    if training.fp16:  # only ever set on a GPU (config turns fp16 off on a CPU)
        return torch.float16
    return torch.float32


def kept_in_fp32(model: PreTrainedModel, dtype: torch.dtype) -> re.Pattern | None:
    """The parameters that the model classes keep in fp32 when loaded in ``dtype``, as one pattern searched in
    full parameter names, exactly as ``from_pretrained(dtype=...)`` matches them; None when none are.

    transformers lists them per class (:func:`musicgen_lora.compat.kept_in_fp32_names`): T5 keeps its feed-forward
    output projections ``wo`` in fp32 under fp16 (their activations exceed fp16's range in the real checkpoints).
    """
    names = kept_in_fp32_names(model, dtype)
    if not names:
        return None
    # as transformers' dtype plan (core_model_loading.build_glob_alternation) reads them: '*' is any text, the rest
    # a regex, searched anywhere in the parameter's name
    return re.compile("|".join("(" + name.replace("*", ".*") + ")" for name in sorted(names)))


def cast_frozen_base(model: PreTrainedModel, dtype: torch.dtype, lora_args: LoraArguments) -> list[str]:
    """Keep the frozen parts of the base model in ``dtype`` (before LoRA is added, so adapters stay fp32).

    Under bf16/fp16 autocast a frozen fp32 weight is cast again at every matmul and its half-precision copy kept for
    the backward pass: casting the frozen weights once halves their memory and saves that work. Trainable weights
    (the decoder in full fine-tuning, a fully trained text encoder) stay fp32 for the optimizer; EnCodec stays fp32
    so that encoding (done before this) and decoding the samples are unchanged; and what the model classes keep in
    fp32 (:func:`kept_in_fp32`, e.g. T5's ``wo`` under fp16) stays fp32, as when loading in ``dtype``, and computes
    in fp32 even under autocast (:func:`~musicgen_lora.compat.compute_in_fp32`).

    Returns:
        The names of the parts cast (empty for fp32).
    """
    if dtype == torch.float32:
        return []
    parts = []
    if not (lora_args.train_text_encoder and not lora_args.use_lora):
        parts.append("text_encoder")
    if lora_args.use_lora:
        parts += [name for name in ("decoder", "enc_to_dec_proj", "audio_enc_to_dec_proj") if hasattr(model, name)]
    kept = kept_in_fp32(model, dtype)
    for name in parts:
        for module_name, module in getattr(model, name).named_modules(prefix=name):
            own = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
            protected = {n for n, _ in own if kept is not None and kept.search(f"{module_name}.{n}")}
            for tensor_name, tensor in own:
                if tensor.is_floating_point() and tensor_name not in protected:
                    tensor.data = tensor.data.to(dtype)  # in place, as Module.to does: tied weights stay tied
            if protected:
                compute_in_fp32(module)
    logger.info("Frozen base weights kept in %s: %s", str(dtype).removeprefix("torch."), ", ".join(parts))
    return parts


def lora_target_regex(names: list[str]) -> str:
    """A regex (full match on module names) selecting the decoder modules named in ``lora_target_modules``.

    Raises:
        UserError: an unknown name.
    """
    patterns = []
    for name in names:
        indexed = INDEXED_LORA_TARGET.match(name)
        if indexed:
            base = _TARGET_PATTERNS[indexed.group(1)]
            patterns.append(base.replace(r"\d+", indexed.group(2)))
        elif name in _TARGET_PATTERNS:
            patterns.append(_TARGET_PATTERNS[name])
        else:
            valid = ", ".join([*_TARGET_PATTERNS, "lm_heads.N", "embed_tokens.N"])
            raise UserError(f"unknown LoRA target '{name}' in lora_target_modules; valid names: {valid}")
    return "(" + "|".join(patterns) + ")"


def check_lora_targets(
    model: PreTrainedModel, lora_args: LoraArguments, report_missing: bool = True
) -> tuple[str, list[str]]:
    """The LoRA targets as one regex, and the names of the modules of ``model`` it matches (none without LoRA).

    Args:
        report_missing: warn about named targets this model does not have (e.g. a melody projection).

    Raises:
        UserError: the regex is invalid, or the targets match no module of this model.
    """
    if not lora_args.use_lora:
        return "", []
    regex = lora_args.lora_target_regex or lora_target_regex(lora_args.lora_target_modules)
    if lora_args.train_text_encoder:
        regex = f"({regex}|{TEXT_ENCODER_PATTERN})"
    try:
        compiled = re.compile(regex)
    except re.error as err:
        raise UserError(f"lora_target_regex is not a valid regular expression ({err}); fix it") from None
    matched = [name for name, _ in model.named_modules() if compiled.fullmatch(name)]
    if not matched:
        raise UserError(
            f"LoRA targets match no module of this model (regex {regex!r}); check lora_target_modules or "
            f"lora_target_regex"
        )
    if report_missing and not lora_args.lora_target_regex and lora_args.lora_target_modules != DEFAULT_LORA_TARGETS:
        missing = [
            n
            for n in lora_args.lora_target_modules
            if not any(re.fullmatch(lora_target_regex([n]), m) for m in matched)
        ]
        if missing:  # e.g. audio_enc_to_dec_proj only exists in melody models
            logger.warning("LoRA targets not present in this model, skipped: %s", ", ".join(missing))
    return regex, matched


def add_trainable_parts(model: PreTrainedModel, lora_args: LoraArguments) -> torch.nn.Module:
    """Wrap the frozen model with LoRA adapters, or unfreeze the decoder for full fine-tuning.

    Returns:
        The model to train: a ``PeftModel`` with LoRA, else the model itself.

    Raises:
        UserError: the targets match no module of this model.
    """
    if lora_args.decoder_dropout is not None:
        set_decoder_dropout(model, lora_args.decoder_dropout)
    if not lora_args.use_lora:
        model.decoder.requires_grad_(True)
        for projection in ("enc_to_dec_proj", "audio_enc_to_dec_proj"):
            if hasattr(model, projection):
                getattr(model, projection).requires_grad_(True)
        if lora_args.train_text_encoder:
            model.text_encoder.requires_grad_(True)
        return model
    regex, matched = check_lora_targets(model, lora_args, report_missing=False)  # run_training reported them
    config = LoraConfig(
        r=lora_args.lora_r,
        lora_alpha=lora_args.lora_alpha,
        lora_dropout=lora_args.lora_dropout,
        use_rslora=lora_args.use_rslora,
        use_dora=lora_args.use_dora,
        target_modules=regex,
        init_lora_weights=True,
    )
    peft_model = get_peft_model(model, config)
    use_packed_bits_dropout(peft_model)
    trainable, total = peft_model.get_nb_trainable_parameters()
    logger.info(
        "LoRA on %d modules: %d trainable parameters (%.2f%% of %d)",
        len(matched),
        trainable,
        100 * trainable / total,
        total,
    )
    return peft_model
