"""The options of a run, in four groups as in Hugging Face's example scripts, each a dataclass with help text:

- :class:`ModelArguments`: the base model and how its frozen weights are held;
- :class:`DataArguments`: the training audio and everything that shapes the prepared data;
- :class:`LoraArguments`: what trains (LoRA adapters, or the whole decoder);
- :class:`MusicgenTrainingArguments`: ``transformers.TrainingArguments`` with defaults for this task, plus the
  conditioning dropout, the non-finite guard and the samples rendered while training.

:mod:`.parsing` reads them from one JSON file and the command line; :mod:`.validation` checks their values."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments

from .caption_template import DEFAULT_LABELS as _CLAP_LABELS

# MusicGen's decoder was trained on 30 s windows (1500 frames at 50 Hz); longer windows leave the trained range.
MODEL_MAX_SECONDS = 30.0


# Default LoRA targets, as in the popular MusicGen LoRA script: attention and feed-forward projections of the
# decoder, the text-to-decoder projection, and the per-codebook embeddings and output heads (on small models,
# adapters without the heads barely learn).
DEFAULT_LORA_TARGETS = [
    "q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2", "enc_to_dec_proj", "audio_enc_to_dec_proj", "lm_heads",
    "embed_tokens",
]  # fmt: skip


# Every name lora_target_modules takes (train/lora.py maps each to the modules it selects); lm_heads.N and
# embed_tokens.N select one codebook's head or embedding.
LORA_TARGET_NAMES = (
    "q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2", "enc_to_dec_proj", "audio_enc_to_dec_proj", "lm_heads",
    "embed_tokens",
)  # fmt: skip
INDEXED_LORA_TARGET = re.compile(r"^(lm_heads|embed_tokens)\.(\d+)$")


RESOLVED_CONFIG_NAME = "finetune_config.json"


# base_model_dtype values ('auto': the training precision) and the attention kernels transformers offers MusicGen.
BASE_MODEL_DTYPES = ("auto", "float32", "bfloat16", "float16")


ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2", "flex_attention")


QUANTIZE_BASE_CHOICES = ("int8", "nf4")  # quantize_base values besides null (models/quantize.py loads them)


@dataclass
class ModelArguments:
    """The base model: which checkpoint, how it is loaded, and the dtype and attention kernel of its frozen weights."""

    _argument_group_name = "model options"  # --help lists each group under this title

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Base MusicGen model: a Hub id such as 'facebook/musicgen-small' or a local folder."},
    )
    base_model_id: str | None = field(
        default=None,
        metadata={
            "help": "Hub id of the base model, written to the model card and adapter_config.json when "
            "model_name_or_path is a local folder (a Hub id or a Hub cache folder is recognised by itself)."
        },
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Run code shipped with the model repository (only for repositories you trust)."},
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where downloaded models and Hub datasets are cached (Hugging Face default)."}
    )
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
    quantize_base: str | None = field(
        default=None,
        metadata={
            "help": "Hold the decoder's frozen linear layers in 8 bits ('int8') or 4 bits ('nf4', QLoRA) with "
            "bitsandbytes (pip install .[quant]); LoRA adapters train in full precision on top, the text encoder, "
            "EnCodec, embeddings and output heads stay unquantized. Needs use_lora. The adapter loads onto the "
            "unquantized base. null: no quantization."
        },
    )


@dataclass
class DataArguments:
    """The training audio: where it comes from, how it is captioned, screened, cut and encoded (all of it shapes the
    prepared data)."""

    _argument_group_name = "data options"  # --help lists each group under this title

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
        metadata={
            "help": "Split used for training (for a local folder: the whole folder, or its subfolder of that name)."
        },
    )
    eval_split_name: str | None = field(
        default=None,
        metadata={"help": "Split used for evaluation, e.g. 'validation' (None: no evaluation data)."},
    )
    eval_split_percentage: float = field(
        default=0.0,
        metadata={
            "help": "Hold out this percentage of the training tracks (whole tracks, all their chunks) for "
            "evaluation, chosen deterministically by seed (0: none). Instead of eval_split_name."
        },
    )
    audio_column_name: str = field(default="audio", metadata={"help": "Column holding the audio."})
    text_column_name: str = field(default="text", metadata={"help": "Column holding each clip's caption."})
    conditional_audio_column_name: str | None = field(
        default=None,
        metadata={
            "help": "Melody models: column with the audio whose chroma (melody) conditions each clip, e.g. a "
            "stem or a hummed version. None: the chroma of the clip itself, as MusicGen-Melody was trained."
        },
    )
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
            "help": "How each caption is composed, e.g. '{prompt}, {caption}, {genre}, {brightness}, {bpm} bpm, "
            "{key}'. "
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
            "htdemucs.th, or a folder with a bag NAME.yaml and its .th files); each track is replaced by the sum of "
            "its "
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
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N evaluation clips."})
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
            "an equal share of the CPU threads (None or 1: in the main process). The codes are the same, but for a "
            "rare "
            "frame that rounding under another thread count tips to a neighbouring codebook entry (at most 4 in 1,500)."
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


@dataclass
class LoraArguments:
    """What trains: LoRA adapters (rank, scaling, targets, variants) or the whole decoder, and the dropout while it
    trains."""

    _argument_group_name = "LoRA options"  # --help lists each group under this title

    use_lora: bool = field(
        default=True, metadata={"help": "Train LoRA adapters (true) or fine-tune the whole decoder (false)."}
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: float = field(default=32.0, metadata={"help": "LoRA scaling numerator (scale = alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input, in [0, 1)."})
    use_rslora: bool = field(
        default=False, metadata={"help": "Rank-stabilised LoRA: scale alpha / sqrt(r) instead of alpha / r (PEFT)."}
    )
    use_dora: bool = field(
        default=False, metadata={"help": "DoRA: weight-decomposed LoRA (PEFT); slower, sometimes better at low rank."}
    )
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_LORA_TARGETS),
        metadata={
            "help": "Decoder modules that get adapters, by name: q_proj k_proj v_proj out_proj (self and cross "
            "attention), fc1 fc2, enc_to_dec_proj, lm_heads (all output heads), embed_tokens (all codebook "
            "embeddings), audio_enc_to_dec_proj (melody models' chroma projection), or lm_heads.N / embed_tokens.N "
            "for one "
            "codebook."
        },
    )
    lora_target_regex: str | None = field(
        default=None,
        metadata={
            "help": "Instead of lora_target_modules: a regular expression that must match a module's full name "
            "(e.g. 'decoder\\.model\\.decoder\\.layers\\.\\d+\\.self_attn\\.(q|v)_proj')."
        },
    )
    train_text_encoder: bool = field(
        default=False,
        metadata={
            "help": "Also adapt the T5 text encoder: LoRA on its attention (q, k, v, o) with use_lora, else full "
            "fine-tuning of it. Off by default: the text encoder is frozen, as in MusicGen's own training."
        },
    )
    decoder_dropout: float | None = field(
        default=None,
        metadata={
            "help": "Dropout inside the decoder (its embeddings' and layers' residual dropout) while training, in "
            "[0, 1); None keeps the checkpoint's (0.1 in the Hub configs, the converter's default). 0 is how MusicGen "
            "was pretrained (audiocraft's transformer_lm dropout) and makes CPU steps faster."
        },
    )


@dataclass
class MusicgenTrainingArguments(TrainingArguments):
    """``transformers.TrainingArguments`` with defaults suited to MusicGen LoRA fine-tuning."""

    # --help lists each group under this title
    _argument_group_name = "training (transformers.TrainingArguments and this project's) options"

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
    # --- this project's training options (conditioning dropout, guards, samples) ---
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start over in an output_dir that holds a previous run (its files are kept in "
            "output_dir/previous-run until the new run succeeds, then deleted). Without it, the same config continues "
            "the previous run from its newest complete checkpoint (or reports it finished), and another config is "
            "refused."
        },
    )
    text_dropout_prob: float = field(
        default=0.1,
        metadata={
            "help": "Fraction of training clips whose caption is replaced by the empty (unconditional) input, as "
            "MusicGen was trained, so classifier-free guidance keeps working (0 disables)."
        },
    )
    chroma_dropout_prob: float = field(
        default=0.5,
        metadata={
            "help": "Melody models: fraction of training clips whose chroma is replaced by the null melody that "
            "generate() uses without audio, so the adapter keeps working from text alone (0 disables)."
        },
    )
    skip_nonfinite_batches: bool = field(
        default=False,
        metadata={
            "help": "When a batch gives a NaN/infinite loss or gradient: skip its update (true) or stop training "
            "with a message naming the step (false)."
        },
    )
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
    copy_threshold: float = field(
        default=0.5,  # musicgen_lora.train.copy_score.DEFAULT_COPY_THRESHOLD (measured there)
        metadata={
            "help": "Memorisation check of the samples: each rendered sample's copy score (the share of its code "
            "frames that line up with one training clip, 0-1) is logged as samples/copy_score, and a warning names "
            "the step where a sample reaches this threshold (an adapter that memorised a clip scores about 1)."
        },
    )
    guidance_scale: float = field(
        default=3.0, metadata={"help": "Classifier-free guidance scale used for samples (1: no guidance)."}
    )


# The groups, in the order --help lists them; HfArgumentParser parses them together from one JSON file and the flags.
ARGUMENT_GROUPS = (ModelArguments, DataArguments, LoraArguments, MusicgenTrainingArguments)


@dataclass
class ParsedConfig:
    """The argument groups of a run, and the values the user requested (saved as RESOLVED_CONFIG_NAME)."""

    model: ModelArguments
    data: DataArguments
    lora: LoraArguments
    training: MusicgenTrainingArguments
    requested: dict[str, Any]


TAIL_POLICIES = ("merge", "drop", "pad")
