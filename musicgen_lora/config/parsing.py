"""Parse ``[CONFIG.json] [--key value ...]`` into the argument dataclasses: JSON types checked, unknown keys named with
the nearest valid one, GPU configs adapted to a CPU.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import torch
from transformers import HfArgumentParser

from ..errors import DefaultsHelpFormatter, UserError, one_line
from ..files import read_user_text
from .arguments import (
    ARGUMENT_GROUPS,
    DataArguments,
    LoraArguments,
    ModelArguments,
    MusicgenTrainingArguments,
    ParsedConfig,
)
from .compat import translate_foreign_keys
from .dependencies import check_installed
from .validation import check_options

logger = logging.getLogger(__name__)

T = TypeVar("T")


class _Parser(HfArgumentParser):
    """HfArgumentParser whose errors become one-line UserErrors instead of usage dumps."""

    def error(self, message: str) -> typing.NoReturn:
        raise UserError(f"{one_line(message)}; run with --help to list every option")


def build_parser(prog: str = "finetune_musicgen.py") -> HfArgumentParser:
    """The parser of a run's options, grouped as the argument dataclasses are (model, data, LoRA, training)."""
    return _Parser(
        ARGUMENT_GROUPS,
        prog=prog,
        usage=f"{prog} [CONFIG.json] [--key value ...]",
        description="Command-line flags override keys of the JSON file; with no JSON file at all, the offline demo "
        "runs (finetune_musicgen.py only). --debug (or LOGLEVEL=DEBUG) shows full tracebacks instead of one-line "
        "errors. Each option's default is the one a config-file run gets.",
        allow_abbrev=False,
        formatter_class=DefaultsHelpFormatter,
    )


def _fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for cls in ARGUMENT_GROUPS for f in dataclasses.fields(cls) if f.init}


def _type_hints() -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for cls in ARGUMENT_GROUPS:
        hints.update(typing.get_type_hints(cls))
    return hints


# Names other MusicGen training scripts use (musicgen_trainer, audiocraft, home-made LoRA scripts) -> ours.
_FOREIGN_NAMES = {
    "lora_rank": "lora_r", "rank": "lora_r", "lr": "learning_rate", "batch_size": "per_device_train_batch_size",
    "epochs": "num_train_epochs", "num_epochs": "num_train_epochs", "grad_acc": "gradient_accumulation_steps",
    "dataset_path": "dataset_name", "data_dir": "dataset_name", "model_id": "model_name_or_path",
    "model_path": "model_name_or_path", "max_duration": "max_duration_in_seconds", "save_step": "save_steps",
    "warmup_ratio": "warmup_steps",
}  # fmt: skip


def _nearest(name: str, choices: typing.Iterable[str]) -> str:
    if name in _FOREIGN_NAMES:
        return f"; did you mean '{_FOREIGN_NAMES[name]}'?"
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else "; run with --help to list every option"


def _describe(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _value_matches(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a dataclass field's type hint (JSON numbers may be ints where floats are expected)."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_value_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is list or hint is list:
        args = typing.get_args(hint)
        return isinstance(value, list) and (not args or all(_value_matches(v, args[0]) for v in value))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if isinstance(hint, type) and issubclass(hint, str):  # str-valued enums such as IntervalStrategy
        return isinstance(value, str)
    return True  # exotic types: leave the check to the library


def load_json_config(path: str | Path) -> dict[str, Any]:
    """Read a JSON config file, turning every problem into a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file '{path}' not found; check the path (see example_configs/ for examples)")
    text = read_user_text(path, "config file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(
            f"config file '{path}' is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}; fix the "
            "JSON there (keys and strings in double quotes, no trailing commas)"
        ) from None
    if not isinstance(data, dict):
        raise UserError(
            f"config file '{path}' must hold a JSON object {{\"key\": value, ...}}, not {type(data).__name__}"
        )
    return data


def _config_file_index(argv: list[str]) -> int | None:
    """Where the config file stands on the command line: the first word that is not an option or an option's value,
    and names a ``.json`` file (any case) or a file whose text starts with ``{``; None without one."""
    for index, word in enumerate(argv):
        takes_value = index > 0 and argv[index - 1].startswith("-") and "=" not in argv[index - 1]
        if word.startswith("-") or takes_value:
            continue
        if word.lower().endswith(".json"):
            return index
        try:
            with open(word, "rb") as handle:
                if handle.read(256).lstrip().removeprefix(b"\xef\xbb\xbf").startswith(b"{"):
                    return index
        except OSError:
            pass
    return None


def check_json_values(values: dict[str, Any], source: str) -> None:
    """Reject unknown keys (suggesting the nearest valid one) and values of the wrong type. A JSON ``true`` for an
    option the command line takes as text (``resume_from_checkpoint``) becomes ``"true"``, and a JSON ``false`` for
    an option that can be null (off: ``resume_from_checkpoint``, ``deepspeed``...) becomes null, in place."""
    known = _fields()
    hints = _type_hints()
    for key, value in values.items():
        if key not in known:
            raise UserError(f"unknown option '{key}' in {source}{_nearest(key, known)}")
        hint = hints.get(key, Any)
        if value is False and not _value_matches(value, hint) and _value_matches(None, hint):
            values[key] = value = None  # "false" would read as a file name for deepspeed or accelerator_config
        if value is True and not _value_matches(value, hint) and _value_matches("true", hint):
            values[key] = value = "true"  # as the command line writes it
        if not _value_matches(value, hint):
            raise UserError(
                f"option '{key}' in {source} must be of type {_describe(hint)}, got {json.dumps(value)}; "
                f"fix its value (see --help)"
            )


def _adapt_to_hardware(training: dict[str, Any]) -> None:
    """Let GPU configs run on a machine without a GPU instead of failing in TrainingArguments."""

    has_accelerator = torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())
    has_accelerator = has_accelerator or torch.backends.mps.is_available()
    if has_accelerator:
        return
    if not training.get("use_cpu"):
        training["use_cpu"] = True  # TrainingArguments refuses bf16 without a GPU unless use_cpu is set
    if training.get("fp16"):
        # fp16 autocast needs a CUDA GPU; Trainer would otherwise train in fp32 without saying so.
        logger.warning("fp16 needs a CUDA GPU: on this CPU training runs in fp32 (set bf16 for mixed precision on CPU)")
        training["fp16"] = False


def parse_config(
    argv: list[str] | None, defaults: dict[str, Any] | None = None, prog: str = "finetune_musicgen.py"
) -> ParsedConfig:
    """Parse ``[CONFIG.json] [--key value ...]`` into the argument groups.

    Args:
        argv: command-line words without the program name: a config file (a ``.json`` file, or one holding a JSON
            object) anywhere among them, and ``--key value`` flags, which override its keys.
        defaults: the values used when the command line is empty (the embedded demo config); any word at all
            means the user's own run, which never falls back to them.
        prog: the command's name, for --help and its usage line.

    Returns:
        A :class:`ParsedConfig`: the argument groups and the requested values to save beside the adapter.

    Raises:
        UserError: missing or malformed file, unknown key, wrong type, value out of range, or missing required key.
    """
    argv = [word for word in (argv or []) if word != "--debug"]  # the traceback switch is not a config key
    config = _config_file_index(argv)
    if config is not None:
        path = argv.pop(config)
        source = f"'{path}'"
        values = load_json_config(path)
        values = translate_foreign_keys(values, source, set(_fields()))  # the popular LoRA script's keys
    elif defaults is not None and not argv:  # nothing at all on the command line: the demo
        source = "the built-in demo config"
        values = dict(defaults)
    else:
        source = "the command line"
        values = {}
    check_json_values(values, source)

    parser = build_parser(prog)
    parser.set_defaults(**values)
    namespace, unknown = parser.parse_known_args(argv)
    if unknown:
        if config is not None and _config_file_index(unknown) is not None:
            raise UserError(
                f"two config files ({source} and '{unknown[_config_file_index(unknown)]}'); give one, and any other "
                "setting as --key value"
            )
        flag = next((word for word in unknown if word.startswith("-")), unknown[0])
        name = flag.lstrip("-").split("=")[0]
        raise UserError(f"unknown option '{flag}'{_nearest(name, _fields())}")

    merged = vars(namespace)
    model, data, lora = (_group(cls, merged) for cls in (ModelArguments, DataArguments, LoraArguments))
    training_values = {
        f.name: merged[f.name] for f in dataclasses.fields(MusicgenTrainingArguments) if f.init and f.name in merged
    }
    check_options(model, data, lora, training_values)
    check_installed(model, data, lora, training_values)  # before TrainingArguments, which words a missing one badly
    if not (model.model_name_or_path or "").strip():
        state = "empty" if model.model_name_or_path is not None else "not set"
        raise UserError(
            f"model_name_or_path is {state}; set it to e.g. 'facebook/musicgen-small' or a local model folder"
        )
    if not (data.dataset_name or "").strip():
        state = "empty" if data.dataset_name is not None else "not set"
        raise UserError(f"dataset_name is {state}; set it to a Hub dataset id or a local folder of audio files")
    if not str(training_values.get("output_dir") or "").strip():
        state = "empty" if training_values.get("output_dir") is not None else "not set"
        raise UserError(f"output_dir is {state}; set it to the folder where the adapter and checkpoints should go")
    requested = _requested_values((model, data, lora), training_values)
    _adapt_to_hardware(training_values)
    try:
        training = MusicgenTrainingArguments(**training_values)
    # TrainingArguments' own checks; a missing deepspeed or accelerator_config file is an OSError
    except (ValueError, TypeError, ImportError, OSError) as err:
        raise UserError(f"invalid training options: {one_line(err)}; fix the option it names (see --help)") from None
    return ParsedConfig(model, data, lora, training, requested)


def _group(cls: type[T], merged: dict[str, Any]) -> T:
    """One argument group built from the parsed values."""
    return cls(**{f.name: merged[f.name] for f in dataclasses.fields(cls) if f.init})


def _requested_values(groups: tuple[Any, ...], training: dict[str, Any]) -> dict[str, Any]:
    """What the user asked for, as JSON-ready values that parse_config reads back; no tokens, no derived fields.

    Taken before hardware adaptation, so a config saved on a laptop still runs on a GPU as written.
    """
    values: dict[str, Any] = {k: v for group in groups for k, v in dataclasses.asdict(group).items()}
    defaults = vars(build_parser().parse_known_args([])[0])  # the values argparse would use with no config
    for name, value in training.items():
        if "token" in name:
            continue
        if value != defaults.get(name) or name == "output_dir":
            values[name] = value.value if hasattr(value, "value") else value
    return json.loads(json.dumps(values, default=str))


# Options that change how a run reports, saves, shares or renders its samples, not what it trains: the same command
# run again with another value of these still continues the run (see ``musicgen_lora.train.rerun``).
RERUN_FREE_OPTIONS = frozenset({
    "output_dir", "overwrite_output_dir", "resume_from_checkpoint", "cache_dir", "data_cache_dir",
    "preprocessing_num_workers", "push_metadata_repo_id", "strict", "report_to", "run_name", "project",
    "trackio_space_id", "trackio_static_space_id", "trackio_bucket_id", "logging_steps", "logging_strategy",
    "logging_first_step", "logging_nan_inf_filter", "log_level", "log_level_replica", "log_on_each_node",
    "disable_tqdm", "push_to_hub", "hub_model_id", "hub_private_repo", "hub_strategy", "hub_always_push",
    "hub_revision", "save_steps", "save_strategy", "save_total_limit", "save_on_each_node", "save_only_model",
    "dataloader_num_workers", "dataloader_persistent_workers", "dataloader_pin_memory", "dataloader_prefetch_factor",
    "skip_memory_metrics", "ddp_timeout", "torch_empty_cache_steps", "use_cpu", "sample_prompts",
    "sample_every_steps", "sample_duration_in_seconds", "copy_threshold", "guidance_scale",
})  # fmt: skip


def with_absolute_local_paths(requested: dict[str, Any]) -> dict[str, Any]:
    """The requested values with a local model or data folder written as an absolute path: read from another folder
    later (a card, a push, evaluate.py --config), a relative 'songs/jazz' would look like a Hub id."""
    values = dict(requested)
    for key in ("model_name_or_path", "dataset_name"):
        value = values.get(key)
        if isinstance(value, str) and value and Path(value).expanduser().exists():
            values[key] = str(Path(value).expanduser().resolve())
    return values


def config_differences(saved: dict[str, Any], requested: dict[str, Any]) -> list[str]:
    """The options that would make a run train something else than the run saved as ``saved`` (its
    finetune_config.json), as ``"key: old -> new"``; an option one side does not name counts as its default.
    Options in :data:`RERUN_FREE_OPTIONS` are left out."""
    defaults = json.loads(json.dumps(vars(build_parser().parse_known_args([])[0]), default=str))
    saved, requested = with_absolute_local_paths(saved), with_absolute_local_paths(requested)
    differences = []
    for key in sorted(set(saved) | set(requested)):
        if key in RERUN_FREE_OPTIONS or "token" in key:
            continue
        old, new = saved.get(key, defaults.get(key)), requested.get(key, defaults.get(key))
        if old != new:
            differences.append(f"{key}: {json.dumps(old)} -> {json.dumps(new)}")
    return differences
