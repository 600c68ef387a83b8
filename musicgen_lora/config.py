"""Configuration: dataclasses with help text, JSON + command-line parsing, and validation with clear errors.

A run is described by two dataclasses parsed together by :class:`transformers.HfArgumentParser`:
:class:`FinetuneArguments` (model, data, LoRA, samples) and :class:`MusicgenTrainingArguments`, which is
``transformers.TrainingArguments`` with a few defaults changed for this task, so every standard Trainer option
works from the JSON file. Values come from, in increasing priority: the field defaults, the JSON file, command-line
flags. ``HfArgumentParser`` does not type-check JSON values, so :func:`parse_config` checks types and ranges itself
and raises :class:`~musicgen_lora.errors.UserError` with the fix.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import logging
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser, TrainingArguments

from .compat import translate_foreign_keys
from .captioning import DEFAULT_LABELS as _CLAP_LABELS, check_caption_options
from .errors import UserError, one_line

# MusicGen's decoder was trained on 30 s windows (1500 frames at 50 Hz); longer windows leave the trained range.
MODEL_MAX_SECONDS = 30.0

# Default LoRA targets, as in the popular MusicGen LoRA script: attention and feed-forward projections of the
# decoder, the text-to-decoder projection, and the per-codebook embeddings and output heads (on small models,
# adapters without the heads barely learn).
DEFAULT_LORA_TARGETS = [
    "q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2", "enc_to_dec_proj", "audio_enc_to_dec_proj", "lm_heads",
    "embed_tokens",
]  # fmt: skip

RESOLVED_CONFIG_NAME = "finetune_config.json"

# base_model_dtype values ('auto': the training precision) and the attention kernels transformers offers MusicGen.
BASE_MODEL_DTYPES = ("auto", "float32", "bfloat16", "float16")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2", "flex_attention")

logger = logging.getLogger(__name__)


@dataclass
class FinetuneArguments:
    """Options of this project (model, data, LoRA, samples); Trainer options live in MusicgenTrainingArguments."""

    # --- model ---
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Base MusicGen model: a Hub id such as 'facebook/musicgen-small' or a local folder."},
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Run code shipped with the model repository (only for repositories you trust)."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start over in an output_dir that holds a previous run (its checkpoints are deleted). Without "
            "it, such a run is refused unless resume_from_checkpoint is set."
        },
    )
    base_model_id: str | None = field(
        default=None,
        metadata={
            "help": "Hub id of the base model, written to the model card and adapter_config.json when "
            "model_name_or_path is a local folder (a Hub id or a Hub cache folder is recognised by itself)."
        },
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where downloaded models and Hub datasets are cached (Hugging Face default)."}
    )
    # --- data ---
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Training audio: a Hub dataset id, or a local folder of audio files with metadata.jsonl / "
            "metadata.csv (columns file_name and a caption), or audio files with same-named .txt captions; or one "
            "file: a .csv of paths and captions, an audiocraft .jsonl manifest, or a single audio file."
        },
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "Configuration name of a Hub dataset (None: its default)."}
    )
    train_split_name: str = field(
        default="train",
        metadata={"help": "Split used for training (for a local folder: the whole folder, or its subfolder of that name)."},
    )
    eval_split_name: str | None = field(
        default=None,
        metadata={"help": "Split used for evaluation, e.g. 'validation' (None: no evaluation data)."},
    )
    audio_column_name: str = field(default="audio", metadata={"help": "Column holding the audio."})
    text_column_name: str = field(default="text", metadata={"help": "Column holding each clip's caption."})
    instance_prompt: str | None = field(
        default=None,
        metadata={
            "help": "Caption for every clip when the data has no captions, or a prefix (e.g. a trigger word) "
            "put before each clip's own caption."
        },
    )
    add_metadata: bool = field(
        default=False,
        metadata={
            "help": "Add each track's estimated tempo and key to its caption ('lofi, piano, 84 bpm, A minor'), after "
            "instance_prompt and the track's own caption; a tempo or key the caption already states is kept. "
            "Tracks without captions get these alone. Estimates are cached in data_cache_dir."
        },
    )
    caption_template: str | None = field(
        default=None,
        metadata={
            "help": "How each caption is composed, e.g. '{prompt}, {caption}, {genre}, {brightness}, {bpm} bpm, {key}'. "
            "Fields: {prompt} (instance_prompt), {caption} (the track's own), {bpm}, {key}, {lufs}, {loudness}, "
            "{brightness} (measured with add_metadata), {tags}, {genre}, {mood}, {instrument} (CLAP tags). Cut at "
            "commas/semicolons: a part with an empty field vanishes with its separator. None: '{prompt}, {caption}, "
            "{tags}, {bpm} bpm, {key}'."
        },
    )
    clap_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Local folder of a transformers ClapModel (e.g. laion/clap-htsat-unfused downloaded elsewhere) "
            "for zero-shot genre/mood/instrument tags in the captions; tags are cached per file and checkpoint."
        },
    )
    clap_genre_labels: list[str] = field(
        default_factory=lambda: list(_CLAP_LABELS["genre"]),
        metadata={"help": "Genres CLAP chooses from ({genre}); an empty list turns genre tags off."},
    )
    clap_mood_labels: list[str] = field(
        default_factory=lambda: list(_CLAP_LABELS["mood"]),
        metadata={"help": "Moods CLAP chooses from ({mood}); an empty list turns mood tags off."},
    )
    clap_instrument_labels: list[str] = field(
        default_factory=lambda: list(_CLAP_LABELS["instrument"]),
        metadata={"help": "Instruments CLAP chooses from ({instrument}); an empty list turns instrument tags off."},
    )
    clap_tag_threshold: float = field(
        default=0.2,
        metadata={
            "help": "A set's best label becomes a tag when its probability among the set's labels (softmax of CLAP's "
            "scaled similarities) reaches this; higher: fewer, surer tags."
        },
    )
    push_metadata_repo_id: str | None = field(
        default=None,
        metadata={
            "help": "Push the captioned tracks (audio files + metadata.jsonl with the final captions and what was "
            "measured) to this Hub dataset repository (created private if missing), so captioning runs once; train "
            "from it later with dataset_name set to it. Token from HF_TOKEN or `hf auth login`."
        },
    )
    demucs_model_path: str | None = field(
        default=None,
        metadata={
            "help": "Remove vocals before captioning and encoding: a local Demucs checkpoint (a .th file, e.g. "
            "htdemucs.th, or a folder with a bag NAME.yaml and its .th files); each track is replaced by the sum of its "
            "non-vocal stems, cached in data_cache_dir. Needs `pip install demucs==4.1.0`."
        },
    )
    max_duration_in_seconds: float = field(
        default=MODEL_MAX_SECONDS,
        metadata={"help": "Longest window trained on; longer clips are cropped at a random place each time."},
    )
    min_duration_in_seconds: float = field(
        default=1.0, metadata={"help": "Clips shorter than this are left out of training."}
    )
    chunk_long_tracks: bool = field(
        default=False,
        metadata={
            "help": "Cut tracks longer than max_duration_in_seconds into consecutive chunks, each seen once per "
            "epoch, with the last piece handled by tail_policy (false: a long track stays one example and each "
            "training step takes a random window of it)."
        },
    )
    tail_policy: str = field(
        default="merge",
        metadata={
            "help": "With chunk_long_tracks, what happens to the last piece of a track shorter than "
            "max_duration_in_seconds: 'merge' (the last chunk is moved back to end at the track's end, full length, "
            "overlapping the previous one: no audio lost), 'drop' (a piece shorter than min_duration_in_seconds "
            "is dropped, a longer one kept as a shorter chunk), 'pad' (padded to full length with the codes of "
            "silence; a piece shorter than min_duration_in_seconds is dropped)."
        },
    )
    eval_split_percentage: float = field(
        default=0.0,
        metadata={
            "help": "Hold out this percentage of the training tracks (whole tracks, all their chunks) for "
            "evaluation, chosen deterministically by seed (0: none). Instead of eval_split_name."
        },
    )
    loudness_target_lufs: float | None = field(
        default=None,
        metadata={
            "help": "Normalise every track to this integrated loudness (ITU-R BS.1770, e.g. -14) before encoding, "
            "with the gain lowered where the peak would exceed full scale (None: keep the recorded level)."
        },
    )
    silence_threshold_db: float | None = field(
        default=None,
        metadata={
            "help": "Leave out tracks (or, with chunk_long_tracks, chunks) whose RMS level is below this many dBFS, "
            "e.g. -50 for near-silence, measured before loudness normalisation (None: keep everything)."
        },
    )
    strict: bool = field(
        default=False,
        metadata={
            "help": "Stop at the first bad audio file (missing, unreadable or corrupt, empty, NaN/Inf samples, a "
            "single sample, a format that needs FFmpeg when torchcodec is not available) with an error naming it and "
            "the fix. Off: such files are skipped with a warning and listed with their reason in data_report.json."
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N training clips (quick experiments, debugging)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N evaluation clips."}
    )
    data_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where the EnCodec codes of each dataset are cached, so a second run does not encode again "
            "(default: $HF_HOME/musicgen_lora, i.e. ~/.cache/huggingface/musicgen_lora)."
        },
    )
    preprocessing_num_workers: int | None = field(
        default=None,
        metadata={
            "help": "Decode and encode the audio in this many processes, each with its own copy of EnCodec and "
            "an equal share of the CPU threads (None or 1: in the main process). The codes are the same either way."
        },
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Read a Hub dataset as a stream (datasets streaming=True) instead of downloading it: each clip is "
            "decoded and encoded on the fly and only its codes are kept, for corpora larger than the disk. Not "
            "combinable with eval_split_percentage, add_metadata, silence_threshold_db, "
            "conditional_audio_column_name, clap_model_name_or_path, push_metadata_repo_id or demucs_model_path."
        },
    )
    conditional_audio_column_name: str | None = field(
        default=None,
        metadata={
            "help": "Melody models: column with the audio whose chroma (melody) conditions each clip, e.g. a "
            "stem or a hummed version. None: the chroma of the clip itself, as MusicGen-Melody was trained."
        },
    )
    chroma_dropout_prob: float = field(
        default=0.5,
        metadata={
            "help": "Melody models: fraction of training clips whose chroma is replaced by the null melody that "
            "generate() uses without audio, so the adapter keeps working from text alone (0 disables)."
        },
    )
    text_dropout_prob: float = field(
        default=0.1,
        metadata={
            "help": "Fraction of training clips whose caption is replaced by the empty (unconditional) input, as "
            "MusicGen was trained, so classifier-free guidance keeps working (0 disables)."
        },
    )
    skip_nonfinite_batches: bool = field(
        default=False,
        metadata={
            "help": "When a batch gives a NaN/infinite loss or gradient: skip its update (true) or stop training "
            "with a message naming the step (false)."
        },
    )
    # --- LoRA ---
    use_lora: bool = field(
        default=True, metadata={"help": "Train LoRA adapters (true) or fine-tune the whole decoder (false)."}
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: float = field(default=32.0, metadata={"help": "LoRA scaling numerator (scale = alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input, in [0, 1)."})
    decoder_dropout: float | None = field(
        default=None,
        metadata={
            "help": "Dropout inside the decoder (its embeddings' and layers' residual dropout) while training, in "
            "[0, 1); None keeps the checkpoint's (0.1 in the Hub configs, the converter's default). 0 is how MusicGen "
            "was pretrained (audiocraft's transformer_lm dropout) and makes CPU steps faster."
        },
    )
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_LORA_TARGETS),
        metadata={
            "help": "Decoder modules that get adapters, by name: q_proj k_proj v_proj out_proj (self and cross "
            "attention), fc1 fc2, enc_to_dec_proj, lm_heads (all output heads), embed_tokens (all codebook "
            "embeddings), audio_enc_to_dec_proj (melody models' chroma projection), or lm_heads.N / embed_tokens.N for one "
            "codebook."
        },
    )
    use_rslora: bool = field(
        default=False, metadata={"help": "Rank-stabilised LoRA: scale alpha / sqrt(r) instead of alpha / r (PEFT)."}
    )
    use_dora: bool = field(
        default=False, metadata={"help": "DoRA: weight-decomposed LoRA (PEFT); slower, sometimes better at low rank."}
    )
    train_text_encoder: bool = field(
        default=False,
        metadata={
            "help": "Also adapt the T5 text encoder: LoRA on its attention (q, k, v, o) with use_lora, else full "
            "fine-tuning of it. Off by default: the text encoder is frozen, as in MusicGen's own training."
        },
    )
    lora_target_regex: str | None = field(
        default=None,
        metadata={
            "help": "Instead of lora_target_modules: a regular expression that must match a module's full name "
            "(e.g. 'decoder\\.model\\.decoder\\.layers\\.\\d+\\.self_attn\\.(q|v)_proj')."
        },
    )
    # --- speed and memory ---
    base_model_dtype: str = field(
        default="auto",
        metadata={
            "help": "Dtype of the frozen base weights (text encoder, and with LoRA the decoder) while training: "
            "'auto' keeps them in bf16 with bf16=true and in fp16 with fp16=true (on a GPU), else fp32; or "
            "'float32', 'bfloat16', 'float16'. Trainable weights (LoRA, or the decoder in full fine-tuning) and the "
            "EnCodec stay fp32. Halves the memory of the frozen weights and saves autocast's per-step weight copies."
        },
    )
    attn_implementation: str = field(
        default="sdpa",
        metadata={
            "help": "Attention kernel of the decoder and text encoder: 'sdpa' (torch scaled_dot_product_attention, "
            "fused, less memory), 'eager' (plain matmuls), or 'flash_attention_2' / 'flex_attention' where installed."
        },
    )
    # --- samples ---
    sample_prompts: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Prompts rendered with a fixed seed to WAV files in output_dir/samples/: base/ (the base model, "
            "before training), step-N/ (every sample_every_steps steps) and final/ (after training), and logged as "
            "audio to tensorboard, wandb or trackio when report_to names them (none: no samples)."
        },
    )
    sample_every_steps: int = field(
        default=0,
        metadata={"help": "Render the sample_prompts every N optimizer steps too (0: only before and after training)."},
    )
    sample_duration_in_seconds: float = field(default=8.0, metadata={"help": "Length of each sample."})
    guidance_scale: float = field(
        default=3.0, metadata={"help": "Classifier-free guidance scale used for samples (1: no guidance)."}
    )


@dataclass
class MusicgenTrainingArguments(TrainingArguments):
    """``transformers.TrainingArguments`` with defaults suited to MusicGen LoRA fine-tuning."""

    learning_rate: float = field(
        default=2e-4, metadata={"help": "Peak learning rate (2e-4 works well for LoRA on small datasets)."}
    )
    # The collator needs the caption text, which Trainer would drop as an 'unused' column.
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Must stay false: the collator reads the caption column."}
    )
    # Evaluation needs only the loss; gathering MusicGen's logits (batch x 4 x steps x 2048) would waste memory.
    prediction_loss_only: bool = field(
        default=True, metadata={"help": "Evaluation computes losses only (keep true: logits are huge)."}
    )
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps (or a ratio of all steps if < 1)."})


ALL_ARGUMENT_CLASSES = (FinetuneArguments, MusicgenTrainingArguments)


@dataclass
class ParsedConfig:
    """The two argument objects of a run, and the values the user requested (saved as RESOLVED_CONFIG_NAME)."""

    args: FinetuneArguments
    training: MusicgenTrainingArguments
    requested: dict[str, Any]


class _Parser(HfArgumentParser):
    """HfArgumentParser whose errors become one-line UserErrors instead of usage dumps."""

    def error(self, message: str) -> typing.NoReturn:
        raise UserError(f"{one_line(message)}; run with --help to list every option")


def build_parser() -> HfArgumentParser:
    parser = _Parser(
        ALL_ARGUMENT_CLASSES,
        prog="finetune_musicgen.py",
        description="Fine-tune MusicGen with LoRA adapters. Usage: finetune_musicgen.py [CONFIG.json] [--key value ...]; "
        "command-line flags override keys of the JSON file; with no JSON file the offline demo runs. "
        "--debug (or LOGLEVEL=DEBUG) shows full tracebacks instead of one-line errors.",
        allow_abbrev=False,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    return parser


def _fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for cls in ALL_ARGUMENT_CLASSES for f in dataclasses.fields(cls) if f.init}


def _type_hints() -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for cls in ALL_ARGUMENT_CLASSES:
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
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(
            f"config file '{path}' is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}; fix the "
            "JSON there (keys and strings in double quotes, no trailing commas)"
        ) from None
    except UnicodeDecodeError:
        raise UserError(f"config file '{path}' is not UTF-8 text; save it as UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise UserError(f"config file '{path}' must hold a JSON object {{\"key\": value, ...}}, not {type(data).__name__}")
    return data


def check_json_values(values: dict[str, Any], source: str) -> None:
    """Reject unknown keys (suggesting the nearest valid one) and values of the wrong type."""
    known = _fields()
    hints = _type_hints()
    for key, value in values.items():
        if key not in known:
            raise UserError(f"unknown option '{key}' in {source}{_nearest(key, known)}")
        hint = hints.get(key, Any)
        if not _value_matches(value, hint):
            raise UserError(
                f"option '{key}' in {source} must be of type {_describe(hint)}, got {json.dumps(value)}; "
                f"fix its value (see --help)"
            )


def _check_ranges(args: FinetuneArguments, training: dict[str, Any]) -> None:
    def require(ok: bool, message: str) -> None:
        if not ok:
            if ";" not in message:  # name where to fix it: messages start with the option's name
                option = message.split()[0]
                message += f"; change '{option}' in the config file or with --{option}"
            raise UserError(message)

    require(training["learning_rate"] > 0, f"learning_rate must be > 0, got {training['learning_rate']}")
    require(
        training["per_device_train_batch_size"] >= 1,
        f"per_device_train_batch_size must be >= 1, got {training['per_device_train_batch_size']}",
    )
    require(
        training["gradient_accumulation_steps"] >= 1,
        f"gradient_accumulation_steps must be >= 1, got {training['gradient_accumulation_steps']}",
    )
    require(
        args.base_model_dtype in BASE_MODEL_DTYPES,
        f"base_model_dtype must be one of {', '.join(BASE_MODEL_DTYPES)}, got {args.base_model_dtype!r}",
    )
    require(
        args.attn_implementation in ATTN_IMPLEMENTATIONS,
        f"attn_implementation must be one of {', '.join(ATTN_IMPLEMENTATIONS)}, got {args.attn_implementation!r}",
    )
    require(args.lora_r >= 1, f"lora_r must be a positive integer, got {args.lora_r}")
    require(args.lora_alpha > 0, f"lora_alpha must be > 0, got {args.lora_alpha}")
    require(0 <= args.lora_dropout < 1, f"lora_dropout must be in [0, 1), got {args.lora_dropout}")
    require(
        args.decoder_dropout is None or 0 <= args.decoder_dropout < 1,
        f"decoder_dropout must be in [0, 1) or null, got {args.decoder_dropout}",
    )
    require(0 <= args.text_dropout_prob < 1, f"text_dropout_prob must be in [0, 1), got {args.text_dropout_prob}")
    require(0 <= args.chroma_dropout_prob < 1, f"chroma_dropout_prob must be in [0, 1), got {args.chroma_dropout_prob}")
    require(
        args.use_lora is False or args.lora_target_regex is not None or len(args.lora_target_modules) > 0,
        "lora_target_modules is empty; name at least one module (e.g. q_proj v_proj) or set lora_target_regex",
    )
    require(
        args.min_duration_in_seconds >= 0,
        f"min_duration_in_seconds must be >= 0, got {args.min_duration_in_seconds}",
    )
    require(
        0 < args.max_duration_in_seconds <= MODEL_MAX_SECONDS,
        f"max_duration_in_seconds must be in (0, {MODEL_MAX_SECONDS:g}] (MusicGen's window), "
        f"got {args.max_duration_in_seconds}",
    )
    require(
        args.min_duration_in_seconds <= args.max_duration_in_seconds,
        f"min_duration_in_seconds ({args.min_duration_in_seconds}) is larger than max_duration_in_seconds "
        f"({args.max_duration_in_seconds}); lower the minimum or raise the maximum",
    )
    require(
        args.tail_policy in ("merge", "drop", "pad"),
        f"tail_policy must be 'merge', 'drop' or 'pad', got {args.tail_policy!r}",
    )
    require(
        0 <= args.eval_split_percentage < 100,
        f"eval_split_percentage must be in [0, 100) (0: no held-out tracks), got {args.eval_split_percentage}",
    )
    require(
        not (args.eval_split_percentage > 0 and args.eval_split_name),
        f"eval_split_percentage ({args.eval_split_percentage:g}) and eval_split_name ('{args.eval_split_name}') "
        "are both set; keep one of them",
    )
    require(
        args.loudness_target_lufs is None or -70 < args.loudness_target_lufs < 0,
        f"loudness_target_lufs must be between -70 and 0 LUFS (e.g. -14), or null, got {args.loudness_target_lufs}",
    )
    require(
        args.silence_threshold_db is None or args.silence_threshold_db < 0,
        f"silence_threshold_db must be below 0 dBFS (e.g. -50), or null, got {args.silence_threshold_db}",
    )
    require(
        args.preprocessing_num_workers is None or args.preprocessing_num_workers >= 1,
        f"preprocessing_num_workers must be >= 1 (or null: in the main process), got {args.preprocessing_num_workers}",
    )
    if args.streaming:
        needs_audio = [
            name for name, value in (
                ("eval_split_percentage", args.eval_split_percentage > 0), ("add_metadata", args.add_metadata),
                ("silence_threshold_db", args.silence_threshold_db is not None),
                ("conditional_audio_column_name", args.conditional_audio_column_name is not None),
                ("clap_model_name_or_path", args.clap_model_name_or_path is not None),
                ("push_metadata_repo_id", args.push_metadata_repo_id is not None),
                ("demucs_model_path", args.demucs_model_path is not None),
            ) if value
        ]  # fmt: skip
        require(
            not needs_audio,
            f"streaming reads each clip once and keeps only its codes, so it cannot be combined with "
            f"{', '.join(needs_audio)}; unset {'it' if len(needs_audio) == 1 else 'them'} or set streaming false",
        )
    check_caption_options(args)  # caption_template fields, CLAP folder, labels and threshold
    for name in ("max_train_samples", "max_eval_samples"):
        value = getattr(args, name)
        require(value is None or value >= 1, f"{name} must be >= 1 (or null for all), got {value}")
    require(
        args.sample_duration_in_seconds > 0,
        f"sample_duration_in_seconds must be > 0, got {args.sample_duration_in_seconds}",
    )
    require(
        args.sample_every_steps >= 0,
        f"sample_every_steps must be >= 0 (0 renders samples only before and after training), got {args.sample_every_steps}",
    )
    require(args.guidance_scale >= 1, f"guidance_scale must be >= 1 (1 disables guidance), got {args.guidance_scale}")
    require(
        training["remove_unused_columns"] is False,
        "remove_unused_columns must be false: the collator needs the caption column; remove the option",
    )


def _adapt_to_hardware(training: dict[str, Any]) -> None:
    """Let GPU configs run on a machine without a GPU instead of failing in TrainingArguments."""
    import torch

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
    argv: list[str] | None, defaults: dict[str, Any] | None = None
) -> ParsedConfig:
    """Parse ``[CONFIG.json] [--key value ...]`` into the two argument dataclasses.

    Args:
        argv: command-line words without the program name. If the first word ends in ``.json`` it is read as the
            config file; the remaining words override its keys.
        defaults: values used when neither a JSON file nor a model or dataset is given (the embedded demo config).

    Returns:
        A :class:`ParsedConfig`: both argument objects and the requested values to save beside the adapter.

    Raises:
        UserError: missing or malformed file, unknown key, wrong type, value out of range, or missing required key.
    """
    argv = [word for word in (argv or []) if word != "--debug"]  # the traceback switch is not a config key
    if argv and argv[0].endswith(".json"):
        source = f"'{argv[0]}'"
        values = load_json_config(argv.pop(0))
        values = translate_foreign_keys(values, source, set(_fields()))  # the popular LoRA script's keys
    elif defaults and not any(word.split("=")[0] in ("--model_name_or_path", "--dataset_name") for word in argv):
        source = "the built-in demo config"
        values = dict(defaults)
    else:
        source = "the command line"
        values = {}
    check_json_values(values, source)

    parser = build_parser()
    parser.set_defaults(**values)
    namespace, unknown = parser.parse_known_args(argv)
    if unknown:
        flag = next((word for word in unknown if word.startswith("-")), unknown[0])
        name = flag.lstrip("-").split("=")[0]
        raise UserError(f"unknown option '{flag}'{_nearest(name, _fields())}")

    merged = vars(namespace)
    own = FinetuneArguments(**{f.name: merged[f.name] for f in dataclasses.fields(FinetuneArguments) if f.init})
    training_values = {
        f.name: merged[f.name] for f in dataclasses.fields(MusicgenTrainingArguments) if f.init and f.name in merged
    }
    _check_ranges(own, training_values)
    if own.model_name_or_path is None:
        raise UserError("model_name_or_path is not set; set it to e.g. 'facebook/musicgen-small' or a local model folder")
    if own.dataset_name is None:
        raise UserError("dataset_name is not set; set it to a Hub dataset id or a local folder of audio files")
    if training_values.get("output_dir") is None:
        raise UserError("output_dir is not set; set it to the folder where the adapter and checkpoints should go")
    requested = _requested_values(own, training_values)
    _adapt_to_hardware(training_values)
    try:
        training = MusicgenTrainingArguments(**training_values)
    except (ValueError, TypeError, ImportError) as err:  # TrainingArguments' own consistency checks
        raise UserError(f"invalid training options: {one_line(err)}") from None
    return ParsedConfig(own, training, requested)


def _requested_values(own: FinetuneArguments, training: dict[str, Any]) -> dict[str, Any]:
    """What the user asked for, as JSON-ready values that parse_config reads back; no tokens, no derived fields.

    Taken before hardware adaptation, so a config saved on a laptop still runs on a GPU as written.
    """
    values: dict[str, Any] = dataclasses.asdict(own)
    defaults = vars(build_parser().parse_known_args([])[0])  # the values argparse would use with no config
    for name, value in training.items():
        if "token" in name:
            continue
        if value != defaults.get(name) or name == "output_dir":
            values[name] = value.value if hasattr(value, "value") else value
    return json.loads(json.dumps(values, default=str))
