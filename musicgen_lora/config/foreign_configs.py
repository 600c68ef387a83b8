"""JSON configs of the popular MusicGen LoRA script (``dreambooth_musicgen.py``) work here unchanged.

That script's keys that have another name here are renamed, each with a one-line notice of our name; keys whose
job is done another way here (or that only tuned that script's own machinery) are accepted with a one-line notice
of what happens instead; keys asking for something this project does not do are rejected with the reason. Only keys
that are not options of ours are translated (``dataset_name``, ``instance_prompt``, ``use_lora``,
``max_duration_in_seconds``, ``guidance_scale``, ``add_metadata``, ``push_metadata_repo_id``, ... mean the same here
and pass through as they are; ``clap_model_name_or_path`` is ours too: a local CLAP folder for caption tags)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..errors import UserError

logger = logging.getLogger(__name__)


SCRIPT = "the popular MusicGen LoRA script"


# their key -> (our key, how the value converts)
RENAMED: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "target_audio_column_name": ("audio_column_name", lambda value: value),
    "evaluation_strategy": ("eval_strategy", lambda value: value),  # TrainingArguments' old name
    "freeze_text_encoder": ("train_text_encoder", lambda value: not value if isinstance(value, bool) else value),
    # their extra prompt rendered during training; ours render every sample_prompts entry
    "full_generation_sample_text": ("sample_prompts", lambda value: [value] if isinstance(value, str) else value),
}


# their key -> what happens here instead (the key is accepted and has no further effect)
ACCEPTED: dict[str, str] = {
    "pad_token_id": "the pad token is read from the model's config here (2048 for MusicGen)",
    "decoder_start_token_id": "the decoder start token is read from the model's config here (2048 for MusicGen)",
    "add_audio_samples_to_wandb": "sample_prompts are rendered before and after training and logged to every "
    "report_to backend (wandb, tensorboard, trackio)",
    "num_samples_to_generate": "the samples rendered here are the sample_prompts",
    "overwrite_cache": "the codes cache is keyed on each file and the codec, so it is never stale",
    "predict_with_generate": "evaluation computes the loss per codebook; listen to samples/ for generations",
    "generation_max_length": "sample_duration_in_seconds sets the length of the samples",
    "generation_num_beams": "samples are drawn by sampling",
    "include_inputs_for_metrics": "evaluation computes the loss per codebook",
    "use_fast_tokenizer": "the fast tokenizer is always used",
    "sortish_sampler": "clips are cropped to random windows instead",
}


# their key -> why it cannot be honoured (rejected unless its value asks for nothing: null, false or the default)
REJECTED: dict[str, tuple[str, tuple[Any, ...]]] = {
    "config_name": ("the model config always comes from model_name_or_path", (None,)),
    "processor_name": ("the processor always comes from model_name_or_path", (None,)),
    "model_revision": (
        "revisions are not selected here; download it to a folder (hf download REPO --revision R --local-dir DIR) "
        "and set model_name_or_path to that folder",
        (None, "main"),
    ),
    "token": ("tokens do not belong in config files; set HF_TOKEN or run `hf auth login`", (None,)),
    "use_auth_token": ("tokens do not belong in config files; set HF_TOKEN or run `hf auth login`", (None, False)),
}


def translate_foreign_keys(values: dict[str, Any], source: str, ours: set[str]) -> dict[str, Any]:
    """Rename or drop the popular script's keys in a JSON config, with a one-line notice for each.

    Args:
        values: the JSON config as read.
        source: where it came from, for messages (``"'config.json'"``).
        ours: every option name of this project; such keys are never translated.

    Returns:
        A new dict with only our option names (unknown keys are left for the usual checks).

    Raises:
        UserError: a key that cannot be honoured, or a renamed key given under both names with different values.
    """
    result = {key: value for key, value in values.items() if key in ours or key not in (*RENAMED, *ACCEPTED, *REJECTED)}
    for key, value in values.items():
        if key in ours:
            continue
        if key in REJECTED:
            reason, harmless = REJECTED[key]
            if any(value is h or value == h for h in harmless):
                logger.warning("config key '%s' (from %s) is ignored: %s", key, SCRIPT, reason)
                continue
            raise UserError(f"config key '{key}' in {source} ({SCRIPT}) is not supported: {reason}; remove it")
        if key in ACCEPTED:
            logger.warning("config key '%s' (from %s) is ignored: %s", key, SCRIPT, ACCEPTED[key])
            continue
        if key in RENAMED:
            name, convert = RENAMED[key]
            converted = convert(value)
            if name == "sample_prompts" and name in result:  # keep both: theirs joins our list
                result[name] = [*converted, *(p for p in result[name] if p not in converted)]
            elif name in result and result[name] != converted:
                raise UserError(
                    f"{source} sets both '{key}' ({SCRIPT}'s name) and '{name}' with different values; keep only "
                    f"'{name}'"
                )
            else:
                result[name] = converted
            inverted = " (inverted)" if key == "freeze_text_encoder" else ""
            logger.warning(
                "config key '%s' (from %s) is called '%s' here%s; using it as '%s'", key, SCRIPT, name, inverted, name
            )
    return result
