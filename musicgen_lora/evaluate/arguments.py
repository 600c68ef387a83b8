"""The options of ``evaluate.py``, defined once: dataclasses with help text, read by ``HfArgumentParser`` (each class
is one group of ``--help``); :mod:`.cli` checks their values and resolves them, with a training config, into
:class:`~.data.EvalSettings`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config.arguments import RESOLVED_CONFIG_NAME
from ..memorisation.melody import DEFAULT_MELODY_THRESHOLD
from ..train.copy_score import DEFAULT_COPY_THRESHOLD
from .bootstrap import DEFAULT_BOOTSTRAP_SEED, DEFAULT_RESAMPLES

# The default number of clips per model (prompts x samples), from bench/RESULTS.md ("How many clips a verdict needs"):
# intervals narrow as 1/sqrt(clips); at 32 a per-clip change of about 10 % is called the same way from one seed to
# another, and below 8 no change is called at all (bootstrap.MIN_UNITS). --num_samples is chosen to reach it.
MIN_CLIPS = 32
FEWER_CLIPS_COST = (
    "intervals widen as 1/sqrt(clips): 8 clips give intervals twice as wide as 32 (per-song FAD on the tiny model: 12 "
    "%% vs 5 %% of the base value), so smaller changes go unseen or are called differently with another seed, and "
    "with fewer than 8 clips no change is called at all (bench/RESULTS.md)"
)


@dataclass
class ModelsAndPrompts:
    _argument_group_name = "models and prompts"

    config: str | None = field(
        default=None,
        metadata={
            "help": f"a training {RESOLVED_CONFIG_NAME} (or its output folder): base model, adapter (as 'final', plus "
            "OUTPUT_DIR/best/ as 'best' when there is one), data and prompts are read from it"
        },
    )
    base_model: str | None = field(
        default=None, metadata={"help": "base MusicGen: Hub id or local folder (always evaluated, as 'base')"}
    )
    model: list[str] = field(
        default_factory=list,
        metadata={
            "help": "a fine-tuned model to compare, NAME=DIR: a LoRA output_dir, a checkpoint-N folder, or a fully "
            "fine-tuned model folder (repeatable)",
            "action": "extend",
            "metavar": "NAME=DIR",
        },
    )
    prompts: str | None = field(
        default=None,
        metadata={
            "help": 'a JSON list of prompts (strings, or {"text", "bpm", "key"} objects; any file extension) or a '
            "text file, one prompt per line; default with --config: its sample_prompts"
        },
    )


@dataclass
class Sampling:
    _argument_group_name = "sampling"

    duration: float | None = field(
        default=None, metadata={"help": "seconds of audio per sample (default: the config's sample_duration, else 8)"}
    )
    num_samples: int | None = field(
        default=None,
        metadata={
            "help": f"samples per prompt and model (default: enough for {MIN_CLIPS} clips per model, at least 2: "
            f"{FEWER_CLIPS_COST})"
        },
    )
    seed: int | None = field(
        default=None,
        metadata={
            "help": "seed of the first batch of clips (batch b uses seed + b, the same batches for every model); "
            "default: config's seed, else 0"
        },
    )
    guidance_scale: float | None = field(
        default=None, metadata={"help": "classifier-free guidance (1: none); default: config's, else 3"}
    )
    generation_batch_size: int = field(
        default=8, metadata={"help": "clips per generate() call, prompts and samples mixed (memory vs speed)"}
    )


@dataclass
class Data:
    _argument_group_name = "data"

    eval_dataset: list[str] = field(
        default_factory=list,
        metadata={
            "help": "held-out data for the cross-entropy and the Fréchet reference: a local audio folder (as for "
            "training), a prepared dataset folder (datasets.save_to_disk with codes and text, e.g. a run's "
            "prepared_data/), or a Hub id; repeatable, e.g. in_domain=... out_of_domain=... to measure forgetting. "
            "Default with --config: its eval split, else its training data (labelled not held out)",
            "action": "extend",
            "metavar": "[NAME=]PATH",
        },
    )
    eval_split: str | None = field(
        default=None,
        metadata={
            "help": "split of --eval_dataset (default: a local folder's validation/, test/ or eval/ subfolder if it "
            "has one, else the whole folder)"
        },
    )
    train_dataset: str | None = field(
        default=None,
        metadata={
            "help": "training data for the memorisation check and per-song FAD: a training run's folder, its "
            "prepared_data/, a raw audio folder or a Hub dataset id (default with --config: its dataset)"
        },
    )
    max_train_samples: int | None = field(
        default=None,
        metadata={"help": "use only the first N clips of --train_dataset, as training did (default: config's)"},
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "use only the first N clips of each evaluation dataset"}
    )
    max_duration_in_seconds: float | None = field(
        default=None, metadata={"help": "cross-entropy window length (default: config's, else 30)"}
    )
    instance_prompt: str | None = field(
        default=None, metadata={"help": "caption prefix used in training (default: config's)"}
    )
    text_column_name: str | None = field(
        default=None, metadata={"help": "caption column (default: config's, else text)"}
    )
    audio_column_name: str | None = field(
        default=None, metadata={"help": "audio column (default: config's, else audio)"}
    )
    data_cache_dir: str | None = field(
        default=None, metadata={"help": "EnCodec codes cache (default: config's, else $HF_HOME/musicgen_lora)"}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Hugging Face download cache"})


@dataclass
class Memorisation:
    _argument_group_name = "memorisation check (needs training data: --train_dataset or --config)"

    copy_threshold: float | None = field(
        default=None,
        metadata={
            "help": "flag a clip as a copy when this share of its code frames lines up with one training clip "
            f"(copy_score, 0-1; 0 flags any clip with a lined-up run; default {DEFAULT_COPY_THRESHOLD:g}: an adapter "
            "that memorised a clip scores about 1, the base model 0)"
        },
    )
    melody_threshold: float | None = field(
        default=None,
        metadata={
            "help": "flag a clip as a melodic copy at this chroma correlation with a training excerpt (0-1; default "
            f"{DEFAULT_MELODY_THRESHOLD:g}; the same tune on another instrument scores about 0.9)"
        },
    )
    skip_melody: bool = field(
        default=False,
        metadata={
            "help": "skip the melodic similarity, which decodes every training clip with EnCodec (minutes per hour "
            "of training audio on a CPU)"
        },
    )


@dataclass
class Comparison:
    _argument_group_name = "comparison with the base model"

    bootstrap_resamples: int = field(
        default=DEFAULT_RESAMPLES,
        metadata={"help": "resamples of the paired bootstrap behind each 95 %% interval (at least 100)"},
    )
    bootstrap_seed: int = field(default=DEFAULT_BOOTSTRAP_SEED, metadata={"help": "seed of the bootstrap's resamples"})


@dataclass
class Output:
    _argument_group_name = "output and run"

    output_dir: str | None = field(
        default=None, metadata={"help": "where to write everything (default with --config: OUTPUT_DIR/evaluation)"}
    )
    overwrite: bool = field(default=False, metadata={"help": "replace an earlier evaluation in --output_dir"})
    clap_model: str | None = field(
        default=None,
        metadata={
            "help": "a local CLAP checkpoint folder in transformers' format, laion/larger_clap_music (hf download "
            "laion/larger_clap_music --local-dir FOLDER): FAD on CLAP embeddings and the CLAP text-audio score; "
            "without it both are left out"
        },
    )
    batch_size: int = field(default=4, metadata={"help": "evaluation windows per forward pass (cross-entropy)"})
    device: str | None = field(default=None, metadata={"help": "torch device (default: cuda if available, else cpu)"})
    debug: bool = field(default=False, metadata={"help": "show full tracebacks instead of one-line errors"})


ARGUMENT_GROUPS = (ModelsAndPrompts, Sampling, Data, Memorisation, Comparison, Output)
