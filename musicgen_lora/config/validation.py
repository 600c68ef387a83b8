"""Ranges and combinations of option values, checked before any file is touched; each problem is one line naming the
option and the fix.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Any

from transformers.integrations import INTEGRATION_TO_CALLBACK

from ..errors import MAX_SEED, UserError
from ..files import looks_like_hub_id
from .arguments import (
    ATTN_IMPLEMENTATIONS,
    BASE_MODEL_DTYPES,
    INDEXED_LORA_TARGET,
    LORA_TARGET_NAMES,
    MODEL_MAX_SECONDS,
    QUANTIZE_BASE_CHOICES,
    TAIL_POLICIES,
    DataArguments,
    LoraArguments,
    ModelArguments,
)
from .caption_template import ANALYSIS_FIELDS, TAG_FIELDS, TAG_SETS, effective_template
from .dependencies import DEMUCS, require_importable

MAX_INTEGER = MAX_SEED + 1  # every integer option is checked against it: no option needs more
REPORT_TO_NAMES = ("none", "all", *INTEGRATION_TO_CALLBACK)  # checked before the run (Trainer checks it late)
MAX_LORA_RANK = 4096  # twice the widest MusicGen layer (large: 2048); a rank above a layer's width adds nothing


def _require(ok: bool, message: str) -> None:
    """Raise ``message`` as a UserError unless ``ok``; a message without its fix gets one naming the option."""
    if not ok:
        if ";" not in message:  # name where to fix it: messages start with the option's name
            option = message.split()[0]
            message += f"; change '{option}' in the config file or with --{option}"
        raise UserError(message)


def check_options(model: ModelArguments, data: DataArguments, lora: LoraArguments, training: dict[str, Any]) -> None:
    """Check every group's values (``training``: the Trainer options as parsed, before ``TrainingArguments`` exists).

    Raises:
        UserError: the first value out of range or combination that cannot work, naming the option and the fix.
    """
    for group in (dataclasses.asdict(model), dataclasses.asdict(data), dataclasses.asdict(lora), training):
        for name, value in group.items():
            _require(
                not isinstance(value, float) or math.isfinite(value), f"{name} must be a finite number, got {value}"
            )
            # a JSON integer has no size limit; past 2**32 no option makes sense, and the libraries fail deep inside
            _require(
                not isinstance(value, int) or abs(value) < MAX_INTEGER,
                f"{name} must be below {MAX_INTEGER}, got {value}",
            )
    check_model_options(model)
    check_data_options(data)
    check_lora_options(lora)
    _require(
        model.quantize_base is None or lora.use_lora,
        f"quantize_base '{model.quantize_base}' needs use_lora true (a quantized decoder cannot be fine-tuned whole); "
        "set use_lora true or quantize_base null",
    )
    check_training_options(training)


def check_model_options(model: ModelArguments) -> None:
    """Raises UserError for a model option out of range."""
    _require(
        model.base_model_dtype in BASE_MODEL_DTYPES,
        f"base_model_dtype must be one of {', '.join(BASE_MODEL_DTYPES)}, got {model.base_model_dtype!r}",
    )
    _require(
        model.attn_implementation in ATTN_IMPLEMENTATIONS,
        f"attn_implementation must be one of {', '.join(ATTN_IMPLEMENTATIONS)}, got {model.attn_implementation!r}",
    )
    _require(
        model.quantize_base is None or model.quantize_base in QUANTIZE_BASE_CHOICES,
        f"quantize_base must be null, {' or '.join(repr(c) for c in QUANTIZE_BASE_CHOICES)}, "
        f"got {model.quantize_base!r}",
    )


def check_lora_options(lora: LoraArguments) -> None:
    """Raises UserError for a LoRA option out of range."""
    _require(lora.lora_r >= 1, f"lora_r must be a positive integer, got {lora.lora_r}")
    _require(
        lora.lora_r <= MAX_LORA_RANK,
        f"lora_r must be at most {MAX_LORA_RANK} (a rank above a layer's width adds nothing), got {lora.lora_r}",
    )
    _require(lora.lora_alpha > 0, f"lora_alpha must be > 0, got {lora.lora_alpha}")
    _require(0 <= lora.lora_dropout < 1, f"lora_dropout must be in [0, 1), got {lora.lora_dropout}")
    _require(
        lora.decoder_dropout is None or 0 <= lora.decoder_dropout < 1,
        f"decoder_dropout must be in [0, 1) or null, got {lora.decoder_dropout}",
    )
    _require(
        lora.use_lora is False or lora.lora_target_regex is not None or len(lora.lora_target_modules) > 0,
        "lora_target_modules is empty; name at least one module (e.g. q_proj v_proj) or set lora_target_regex",
    )
    unknown = [n for n in lora.lora_target_modules if n not in LORA_TARGET_NAMES and not INDEXED_LORA_TARGET.match(n)]
    _require(
        not unknown or lora.lora_target_regex is not None,
        f"unknown LoRA target '{unknown[0] if unknown else ''}' in lora_target_modules; valid names: "
        f"{', '.join(LORA_TARGET_NAMES)}, lm_heads.N, embed_tokens.N",
    )
    if lora.lora_target_regex is not None:
        try:
            re.compile(lora.lora_target_regex)
        except re.error as err:
            raise UserError(f"lora_target_regex is not a valid regular expression ({err}); fix it") from None


def check_data_options(data: DataArguments) -> None:
    """Raises UserError for a data option out of range, or options that cannot be combined."""
    _require(
        data.min_duration_in_seconds >= 0,
        f"min_duration_in_seconds must be >= 0, got {data.min_duration_in_seconds}",
    )
    _require(
        0 < data.max_duration_in_seconds <= MODEL_MAX_SECONDS,
        f"max_duration_in_seconds must be in (0, {MODEL_MAX_SECONDS:g}] (MusicGen's window), "
        f"got {data.max_duration_in_seconds}",
    )
    _require(
        data.min_duration_in_seconds <= data.max_duration_in_seconds,
        f"min_duration_in_seconds ({data.min_duration_in_seconds}) is larger than max_duration_in_seconds "
        f"({data.max_duration_in_seconds}); lower the minimum or raise the maximum",
    )
    _require(
        data.tail_policy in TAIL_POLICIES,
        f"tail_policy must be {', '.join(repr(p) for p in TAIL_POLICIES[:-1])} or {TAIL_POLICIES[-1]!r}, "
        f"got {data.tail_policy!r}",
    )
    _require(
        0 <= data.eval_split_percentage < 100,
        f"eval_split_percentage must be in [0, 100) (0: no held-out tracks), got {data.eval_split_percentage}",
    )
    _require(
        not (data.eval_split_percentage > 0 and data.eval_split_name),
        f"eval_split_percentage ({data.eval_split_percentage:g}) and eval_split_name ('{data.eval_split_name}') "
        "are both set; keep one of them",
    )
    _require(
        data.loudness_target_lufs is None or -70 < data.loudness_target_lufs < 0,
        f"loudness_target_lufs must be between -70 and 0 LUFS (e.g. -14), or null, got {data.loudness_target_lufs}",
    )
    _require(
        data.silence_threshold_db is None or data.silence_threshold_db < 0,
        f"silence_threshold_db must be below 0 dBFS (e.g. -50), or null, got {data.silence_threshold_db}",
    )
    _require(
        data.preprocessing_num_workers is None or data.preprocessing_num_workers >= 1,
        f"preprocessing_num_workers must be >= 1 (or null: in the main process), got {data.preprocessing_num_workers}",
    )
    if data.streaming:
        needs_audio = [
            name
            for name, value in (
                ("eval_split_percentage", data.eval_split_percentage > 0),
                ("add_metadata", data.add_metadata),
                ("silence_threshold_db", data.silence_threshold_db is not None),
                ("conditional_audio_column_name", data.conditional_audio_column_name is not None),
                ("clap_model_name_or_path", data.clap_model_name_or_path is not None),
                ("push_metadata_repo_id", data.push_metadata_repo_id is not None),
                ("demucs_model_path", data.demucs_model_path is not None),
            )
            if value
        ]
        _require(
            not needs_audio,
            f"streaming reads each clip once and keeps only its codes, so it cannot be combined with "
            f"{', '.join(needs_audio)}; unset {'it' if len(needs_audio) == 1 else 'them'} or set streaming false",
        )
    check_caption_options(data)  # caption_template fields, CLAP folder, labels and threshold
    for name in ("max_train_samples", "max_eval_samples"):
        value = getattr(data, name)
        _require(value is None or value >= 1, f"{name} must be >= 1 (or null for all), got {value}")


def check_training_options(training: dict[str, Any]) -> None:
    """Raises UserError for a Trainer option (or one of ours in that group) out of range."""
    _require(training["learning_rate"] > 0, f"learning_rate must be > 0, got {training['learning_rate']}")
    _require(
        training["per_device_train_batch_size"] >= 1,
        f"per_device_train_batch_size must be >= 1, got {training['per_device_train_batch_size']}",
    )
    _require(
        training["gradient_accumulation_steps"] >= 1,
        f"gradient_accumulation_steps must be >= 1, got {training['gradient_accumulation_steps']}",
    )
    _require(
        training["max_steps"] == -1 or training["max_steps"] >= 1,
        f"max_steps must be >= 1 (or -1: train num_train_epochs epochs), got {training['max_steps']}",
    )
    _require(
        training["max_steps"] >= 1 or training["num_train_epochs"] > 0,
        f"num_train_epochs must be > 0 (or set max_steps), got {training['num_train_epochs']}",
    )
    for name in ("seed", "data_seed"):
        value = training.get(name)
        _require(value is None or 0 <= value <= MAX_SEED, f"{name} must be between 0 and {MAX_SEED}, got {value}")
    reports = training.get("report_to")
    unknown = [n for n in ([reports] if isinstance(reports, str) else reports or []) if n not in REPORT_TO_NAMES]
    _require(
        not unknown,
        f"report_to '{unknown[0] if unknown else ''}' is not a logging backend; use none, all or some of "
        f"{', '.join(INTEGRATION_TO_CALLBACK)}",
    )
    # transformers accepts 0 and negative intervals and then silently never saves, logs or evaluates
    for name in ("save_steps", "logging_steps", "eval_steps"):
        value = training.get(name)
        _require(value is None or value > 0, f"{name} must be > 0 (a ratio of all steps if below 1), got {value}")
    for name in ("text_dropout_prob", "chroma_dropout_prob"):
        _require(0 <= training[name] < 1, f"{name} must be in [0, 1), got {training[name]}")
    _require(
        training["sample_duration_in_seconds"] > 0,
        f"sample_duration_in_seconds must be > 0, got {training['sample_duration_in_seconds']}",
    )
    _require(
        training["sample_every_steps"] >= 0,
        "sample_every_steps must be >= 0 (0 renders samples only before and after training), got "
        f"{training['sample_every_steps']}",
    )
    _require(
        0 <= training["copy_threshold"] <= 1,
        f"copy_threshold must be between 0 and 1, got {training['copy_threshold']}",
    )
    _require(
        training["guidance_scale"] >= 1,
        f"guidance_scale must be >= 1 (1 disables guidance), got {training['guidance_scale']}",
    )
    _require(
        not (training.get("fp16") and training.get("bf16")),
        "fp16 and bf16 are both set; keep one: bf16 on Ampere or newer GPUs (and on a CPU), fp16 on older GPUs",
    )
    _require(
        training["remove_unused_columns"] is False,
        "remove_unused_columns must be false: the collator needs the caption column; remove the option",
    )
    check_sharding_options(training)


# Why FSDP is refused (accelerate 1.16, torch 2.13; forced on the CPU, the failures are in code that does not depend
# on the device): accelerate enables FSDP for GPUs only, so on a CPU the option is silently ignored (plain DDP); and
# its FSDP2 (transformers' default) cannot shard MusicGen: T5's tied input embeddings (two modules) fall into two FSDP
# groups, which torch refuses; the decoder's output embeddings are a ModuleList, which accelerate shards as a unit
# whose forward never runs, so its weights are never gathered; PEFT's adapter of embed_tokens is saved unsharded.
FSDP_REFUSED = (
    "fsdp is not supported for MusicGen (accelerate's FSDP cannot shard it, and ignores it on a CPU); remove fsdp "
    "and fsdp_config (and accelerate's --use_fsdp): several processes train with DDP by default, or set deepspeed "
    "to a ZeRO-2 config file to shard the optimizer state"
)


def check_sharding_options(training: dict[str, Any]) -> None:
    """Raises UserError for FSDP (see :data:`FSDP_REFUSED`), asked in the config (``fsdp``, or ``fsdp_config`` alone,
    even ``{}``) or through accelerate's launcher."""
    launcher_fsdp = os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("true", "1")
    asked = training.get("fsdp") or training.get("fsdp_config") is not None
    _require(not asked and not launcher_fsdp, FSDP_REFUSED)


def check_caption_options(args: DataArguments) -> None:
    """Config-time checks of the captioning options (called by :func:`musicgen_lora.config.parsing.parse_config`).

    Raises:
        UserError: a bad template, a field the options cannot fill, labels or threshold out of range, no CLAP folder.
    """
    template = effective_template(args.caption_template)
    if args.caption_template is not None:  # an explicit template: every field it names must be fillable
        analysis_fields = sorted(template.fields & set(ANALYSIS_FIELDS))
        if analysis_fields and not args.add_metadata:
            raise UserError(
                f"caption_template names {', '.join('{' + f + '}' for f in analysis_fields)}, which add_metadata "
                "measures; set add_metadata true or take the field out of caption_template"
            )
        tag_fields = sorted(template.fields & set(TAG_FIELDS))
        if tag_fields and not args.clap_model_name_or_path:
            raise UserError(
                f"caption_template names {', '.join('{' + f + '}' for f in tag_fields)}, which CLAP tagging fills; set "
                "clap_model_name_or_path to a local CLAP folder or take the field out of caption_template"
            )
        if args.clap_model_name_or_path and not tag_fields:
            raise UserError(
                "clap_model_name_or_path is set but caption_template names no tag field ({tags}, {genre}, {mood}, "
                "{instrument}); add one, or unset clap_model_name_or_path"
            )
    if not 0 <= args.clap_tag_threshold <= 1:
        raise UserError(
            f"clap_tag_threshold must be a probability in [0, 1], got {args.clap_tag_threshold}; change it (e.g. 0.2)"
        )
    for name in TAG_SETS:
        labels = getattr(args, f"clap_{name}_labels")
        if any(not isinstance(label, str) or not label.strip() for label in labels):
            raise UserError(
                f"clap_{name}_labels holds an empty label; give words like 'jazz' (an empty list turns the set off)"
            )
        if len(set(labels)) != len(labels):
            raise UserError(f"clap_{name}_labels names a label twice; give each label once")
    if args.clap_model_name_or_path:
        check_clap_folder(args.clap_model_name_or_path, "clap_model_name_or_path")
    if args.push_metadata_repo_id is not None:
        if not looks_like_hub_id(args.push_metadata_repo_id):
            raise UserError(
                f"push_metadata_repo_id '{args.push_metadata_repo_id}' is not a Hub repository id; set it "
                "like 'your-name/my-songs-captioned'"
            )
    if args.demucs_model_path:
        check_demucs_path(args.demucs_model_path)
    if args.demucs_model_path and args.streaming:  # (CLAP and the push: checked with streaming)
        raise UserError(
            "streaming keeps only each clip's codes, so it cannot be combined with demucs_model_path; "
            "unset it or set streaming false"
        )


def check_clap_folder(path: str, option: str) -> Path:
    """The folder of a local CLAP checkpoint.

    Raises:
        UserError: ``path`` is not a folder with a ``config.json`` (e.g. a Hub id); names ``option`` to fix.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise UserError(
            f"{option} '{path}' is not a local CLAP checkpoint folder (no config.json there); download one "
            f"elsewhere (hf download laion/clap-htsat-unfused --local-dir clap) and pass the folder, or leave "
            f"{option} out"
        )
    return folder


def require_demucs() -> None:
    """Raises UserError, with the install command, unless demucs can be imported (needed only with
    demucs_model_path; the check is :mod:`.dependencies`')."""
    require_importable("demucs_model_path", DEMUCS, "demucs.apply")


def check_demucs_path(path: str) -> Path:
    """The checkpoint path, checked: a ``.th`` file, or a folder with one ``.yaml`` bag (or one ``.th``).

    Raises:
        UserError: the path does not exist, holds no usable checkpoint, or demucs is not installed.
    """
    checkpoint = Path(path).expanduser()
    if checkpoint.is_file() and checkpoint.suffix == ".th":
        require_demucs()
        return checkpoint
    if checkpoint.is_dir():
        bags, models = sorted(checkpoint.glob("*.yaml")), sorted(checkpoint.glob("*.th"))
        if len(bags) == 1 or (not bags and len(models) == 1):
            require_demucs()
            return checkpoint
        found = ", ".join(p.name for p in bags + models) or "nothing"
        raise UserError(
            f"demucs_model_path '{path}' must hold one bag NAME.yaml with its .th files, or one .th model; found "
            f"{found}; point it at the .th file or a folder with one model"
        )
    raise UserError(
        f"demucs_model_path '{path}' is not a Demucs checkpoint (.th file or folder) on this machine; download one "
        "elsewhere (e.g. htdemucs' .th from Demucs' releases) and give its local path, or unset demucs_model_path"
    )
