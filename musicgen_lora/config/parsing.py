"""Parse ``[CONFIG.json] [--key value ...]`` into the argument dataclasses: JSON types checked, unknown keys named with
the nearest valid one, GPU configs adapted to a CPU.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import torch
from transformers import HfArgumentParser

from ..compat import FieldHookArgumentParser
from ..errors import DefaultsHelpFormatter, UserError, one_line, program_name
from ..files import read_user_text
from .arguments import (
    ARGUMENT_GROUPS,
    DataArguments,
    LoraArguments,
    ModelArguments,
    MusicgenTrainingArguments,
    ParsedConfig,
)
from .dependencies import check_installed
from .foreign_configs import translate_foreign_keys
from .validation import check_options

logger = logging.getLogger(__name__)

T = TypeVar("T")


class OptionsParser(FieldHookArgumentParser):
    """``HfArgumentParser`` for a command whose options are dataclasses (one definition each: ``--help``, JSON, the
    Studio and the code read the same fields): usage errors are one-line UserErrors naming the option as the docs
    spell it and the command's ``--help``, ``--help`` shows the defaults, and ``prog`` is the name the command was
    started by. Two kinds of field it makes besides HfArgumentParser's flags:

    - ``metadata={"positional": True}``: a positional argument (shown as ``metadata["metavar"]``);
    - ``metadata={"repeat": True}`` on a ``list`` field: a flag given once per value (``--prompt a --prompt b``).
    """

    def __init__(self, dataclass_types: Any, prog: str, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(dataclass_types, prog=program_name(prog), **kwargs)

    def add_special_field(self, parser: Any, field: dataclasses.Field) -> bool:
        metadata = dict(field.metadata)
        if metadata.pop("positional", False):
            parser.add_argument(field.name, **metadata)
            return True
        if metadata.pop("repeat", False):
            (element,) = typing.get_args(field.type)
            flags = [f"--{field.name}"] + ([f"--{field.name.replace('_', '-')}"] if "_" in field.name else [])
            parser.add_argument(*flags, action="append", type=element, default=[], **metadata)
            return True
        return False

    def error(self, message: str) -> typing.NoReturn:
        # "argument --out_dir/--out-dir: ..." names the option as the docs write it: its first spelling
        message = re.sub(r"(--\w+)(/--[\w-]+)+", r"\1", one_line(message))
        raise UserError(f"{message}; run {self.prog} --help for the options")

    def parse(self, argv: list[str] | None) -> tuple[Any, ...]:
        """The dataclasses filled from ``argv`` (then a namespace of any arguments added by hand, e.g. a
        positional); a word that is no option is a usage error."""
        *parsed, unknown = self.parse_args_into_dataclasses(
            args=argv, return_remaining_strings=True, look_for_args_file=False
        )
        if unknown:
            self.error(f"unrecognized arguments: {' '.join(unknown)}")
        return tuple(parsed)


class _Parser(OptionsParser):
    """The training options' parser: its errors point at ``--help`` without repeating the command."""

    def error(self, message: str) -> typing.NoReturn:
        raise UserError(f"{one_line(message)}; run with --help to list every option")


def build_parser(prog: str = "finetune_musicgen.py") -> HfArgumentParser:
    """The parser of a run's options, grouped as the argument dataclasses are (model, data, LoRA, training).

    Args:
        prog: the command's own name, used unless the ``musicgen-lora`` script started it (see
            :func:`~musicgen_lora.errors.invoked_as`).
    """
    prog = program_name(prog)
    return _Parser(
        ARGUMENT_GROUPS,
        prog,
        usage=f"{prog} [CONFIG.json] [--key value ...]",
        description="Command-line flags override keys of the JSON file; with nothing at all on the command line, "
        "the offline demo runs (finetune_musicgen.py and musicgen-lora train only). --debug (or LOGLEVEL=DEBUG) "
        "shows full tracebacks instead of one-line errors. Each option's default is the one a config-file run gets.",
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


# Text options where JSON true and false mean what "true" and "false" mean on the command line.
TEXT_SWITCHES = ("resume_from_checkpoint",)


def _list_items(hint: Any) -> Any:
    """The item type of a list option (None: not one), as HfArgumentParser reads the type (a ``str | list[str]``
    takes several words)."""
    for arg in typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,):
        if typing.get_origin(arg) is list:
            (item,) = typing.get_args(arg) or (str,)
            return item
    return None


def _json_list_words(flag: str, text: str, item: Any) -> list[str] | None:
    """The words of a list option written as a JSON list on the command line (``--sample_prompts '["a", "b"]'``), or
    None when ``text`` is not written as one.

    Raises:
        UserError: it looks like a JSON list of quoted items but is not valid JSON (``['a']``), is empty, or holds
            items of the wrong type.
    """
    stripped = text.strip()
    if not (stripped.startswith("[") and stripped.endswith("]")):
        return None
    try:
        items = json.loads(stripped)
    except json.JSONDecodeError as err:
        if not re.match(r"\[\s*['\"]", stripped):  # "[drums] lofi [outro]" is a prompt, not a broken list
            return None
        raise UserError(
            f'{flag} {text!r} looks like a JSON list but is not valid JSON ({err.msg}); write it as \'["a", "b"]\' '
            "(double quotes), or give the items as separate words"
        ) from None
    if not items:
        raise UserError(f"{flag} is an empty list; leave it out, or set it to [] in a config file")
    wanted = (str,) if item is str else (int, float) if item in (int, float) else (str, int, float)
    wrong = next((v for v in items if not isinstance(v, wanted) or isinstance(v, bool)), None)
    if wrong is not None:
        raise UserError(f"{flag} holds {json.dumps(wrong)}, not {_describe(item)}; fix the list (see --help)")
    return [v if isinstance(v, str) else json.dumps(v) for v in items]


def expand_json_lists(argv: list[str]) -> list[str]:
    """Command-line words with every list option written as a JSON list (``--sample_prompts '["lofi"]'``, as a
    config file writes it) turned into the separate words argparse takes, instead of one literal item."""
    hints = _type_hints()
    words: list[str] = []
    index = 0
    while index < len(argv):
        word = argv[index]
        name, has_value, value = word[2:].partition("=") if word.startswith("--") else ("", "", "")
        item = _list_items(hints.get(name.replace("-", "_"))) if name else None
        if item is not None and not has_value and index + 1 < len(argv):
            has_value, value, index = "=", argv[index + 1], index + 1
        expanded = _json_list_words(f"--{name}", value, item) if item is not None and has_value else None
        if expanded is not None:
            words += [f"--{name}", *expanded]
        else:
            words += [word] if item is None or not has_value else [f"--{name}", value]
        index += 1
    return words


def check_json_values(values: dict[str, Any], source: str) -> None:
    """Reject unknown keys (suggesting the nearest valid one) and values of the wrong type. A JSON ``true`` or
    ``false`` for an option the command line takes as text (``resume_from_checkpoint``) becomes ``"true"`` or
    ``"false"``, and a JSON ``false`` for another option that can be null (off: ``deepspeed``...) becomes null, in
    place."""
    known = _fields()
    hints = _type_hints()
    for key, value in values.items():
        if key not in known:
            raise UserError(f"unknown option '{key}' in {source}{_nearest(key, known)}")
        hint = hints.get(key, Any)
        if value is False and key in TEXT_SWITCHES:
            values[key] = value = "false"  # as the command line writes it: an explicit "do not resume"
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
    namespace, unknown = parser.parse_known_args(expand_json_lists(argv))
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
    if training_values.get("disable_tqdm") is None and not sys.stderr.isatty():
        training_values["disable_tqdm"] = True  # bars only where a person watches them, not into a log file
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


# List options whose order (and repeats) mean nothing: the same set of LoRA targets adapts the same modules.
UNORDERED_OPTIONS = frozenset({"lora_target_modules"})


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
        if key in UNORDERED_OPTIONS and isinstance(old, list) and isinstance(new, list):
            old, new = sorted(set(map(str, old))), sorted(set(map(str, new)))  # the same modules, in any order
        if old != new:
            differences.append(f"{key}: {json.dumps(old)} -> {json.dumps(new)}")
    return differences
