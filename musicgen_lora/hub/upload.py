"""Push a finished run to a Hub model repository: adapter (or model), processor, card and samples in one commit, with
no local path or token in any pushed file.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, HfApi

from ..config.arguments import RESOLVED_CONFIG_NAME
from ..errors import UserError
from ..files import hub_id_of, is_local_path, looks_like_hub_id, read_json_object
from .card import CARD_NAME, PLOT_NAME, SAMPLES_FOLDER, build_model_card, is_our_card, run_settings
from .retries import call_with_retries, check_can_push

logger = logging.getLogger(__name__)


PUSH_COMMAND = "python -m musicgen_lora.push"


# Files of an output folder that go to the Hub (besides the card, which is rendered for the repo). Not pushed:
# checkpoints, best/, logs, training_args.bin, trainer_state.json (hold local paths), base and step samples.
PUSHED_FILES = (
    "adapter_config.json", "adapter_model.safetensors", "adapter_model.bin",  # LoRA
    "config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",  # full fine-tune
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "spiece.model",  # processor
    "processor_config.json", "preprocessor_config.json",
    "finetune_config.json", "train_results.json", "eval_results.json", "all_results.json", PLOT_NAME,
)  # fmt: skip


@dataclass
class PushRequest:
    """What ``push_to_hub`` asked for, taken out of the training arguments (so the token is never saved)."""

    repo_id: str
    token: str | None
    private: bool | None


def take_push_request(parsed: Any) -> PushRequest | None:
    """Before training: check ``push_to_hub`` can work, and move the push settings out of the training arguments.

    The Trainer then neither pushes by itself (it would push at every save, in the background, with PEFT's card) nor
    pickles the token into ``training_args.bin``. Also checks ``base_model_id``.

    Raises:
        UserError: invalid ``base_model_id``, offline mode or no token while ``push_to_hub`` is set.
    """
    base_model_id = parsed.model.base_model_id
    if base_model_id is not None and not looks_like_hub_id(base_model_id):
        raise UserError(f"base_model_id '{base_model_id}' is not a Hub id; set it like 'facebook/musicgen-small'")
    training = parsed.training
    token = training.hub_token
    training.hub_token = None
    if not training.push_to_hub:
        return None
    training.push_to_hub = False
    repo_id = training.hub_model_id or Path(training.output_dir).name
    if not looks_like_hub_id(repo_id):
        raise UserError(
            f"hub_model_id '{repo_id}' is not a Hub repository id; set it like 'your-name/musicgen-lora-jazz'"
        )
    check_can_push(token)
    return PushRequest(repo_id=repo_id, token=token, private=training.hub_private_repo)


def files_to_push(output_dir: str | Path) -> list[str]:
    """Paths (relative, POSIX) of the files of ``output_dir`` that a push uploads, besides the card."""
    output_dir = Path(output_dir)
    files = [name for name in PUSHED_FILES if (output_dir / name).is_file()]
    files += [p.relative_to(output_dir).as_posix() for p in sorted(output_dir.glob("model-*.safetensors"))]
    samples = output_dir / SAMPLES_FOLDER
    if samples.is_dir():
        files += [p.relative_to(output_dir).as_posix() for p in sorted(samples.iterdir()) if p.is_file()]
    return files


def _hub_safe_json(path: Path, name: str, base_id: str | None) -> bytes | None:
    """The bytes to push for a JSON file that may hold local paths (None: push the file as it is)."""
    if name == "adapter_config.json":
        config = read_json_object(path)
        if not is_local_path(config.get("base_model_name_or_path")):
            return None
        if base_id is None:
            logger.warning(
                "The base model's Hub id is unknown (trained from a local folder): adapter_config.json is "
                "pushed without base_model_name_or_path; set base_model_id to record it"
            )
        config["base_model_name_or_path"] = base_id
        return (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()
    if name == "finetune_config.json":
        config = read_json_object(path)
        for key in ("output_dir", "data_cache_dir", "cache_dir", "logging_dir", "resume_from_checkpoint"):
            config.pop(key, None)
        for key, value in list(config.items()):
            if is_local_path(value):
                config[key] = base_id if key == "model_name_or_path" and base_id else Path(value).name
        return (json.dumps(config, indent=2) + "\n").encode()
    return None


def push_folder(
    output_dir: str | Path,
    repo_id: str,
    token: str | None = None,
    private: bool | None = None,
    attempts: int = 4,
    wait_seconds: float = 2.0,
    commit_message: str = "Upload MusicGen LoRA adapter, model card and samples",
) -> str:
    """Push a finished run to a Hub model repository in one commit: adapter (or model), processor, card, samples.

    Args:
        output_dir: the run's output folder.
        repo_id: ``user/name`` (or ``name``: the token owner's namespace); created if missing.
        token: Hub token; None uses ``HF_TOKEN`` or the saved login.
        private: create the repository private (None: the Hub's default; an existing repository keeps its setting).
        attempts: tries in all; transient errors (HTTP 408, 429, 5xx, dropped connections) are retried.
        wait_seconds: wait before the first retry, doubled at each further one.

    Returns:
        The URL of the repository.

    Raises:
        UserError: no adapter or model in ``output_dir``, offline, no token, or the push failed (after the retries for
            transient errors); local files are never modified by a failed push.
    """

    output_dir = Path(output_dir)
    if not output_dir.exists():
        raise UserError(f"'{output_dir}' not found; give the output_dir of a finished training run")
    if not output_dir.is_dir():
        raise UserError(f"'{output_dir}' is a file, not a run's folder; give the output_dir of a finished training run")
    if not ((output_dir / "adapter_config.json").is_file() or (output_dir / "config.json").is_file()):
        raise UserError(
            f"'{output_dir}' holds no adapter (adapter_config.json) or model (config.json); give the output_dir of a "
            "finished training run"
        )
    if not looks_like_hub_id(repo_id):
        raise UserError(
            f"'{repo_id}' is not a Hub repository id (letters, digits, '-', '_', '.'; no '--' or '..', no '.git' "
            "ending); use the form 'your-name/musicgen-lora-jazz'"
        )
    check_can_push(token)
    settings = run_settings(output_dir)
    adapter_base = read_json_object(output_dir / "adapter_config.json").get("base_model_name_or_path")
    base_id = hub_id_of(settings.get("model_name_or_path") or adapter_base, settings.get("base_model_id"))
    if base_id is None and looks_like_hub_id(adapter_base) and not is_local_path(adapter_base):
        base_id = adapter_base
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    retry = f"the local files are untouched; retry with: {PUSH_COMMAND} {output_dir} --repo_id {repo_id}"

    def push_once() -> tuple[Any, str]:
        repo_url = api.create_repo(repo_id, private=private, exist_ok=True)
        card_text = str(build_model_card(output_dir, repo_url.repo_id))
        operations = [CommitOperationAdd(path_in_repo=CARD_NAME, path_or_fileobj=card_text.encode("utf-8"))]
        for name in files_to_push(output_dir):
            content = _hub_safe_json(output_dir / name, name, base_id) if name.endswith(".json") else None
            operations.append(
                CommitOperationAdd(
                    path_in_repo=name, path_or_fileobj=content if content is not None else str(output_dir / name)
                )
            )
        api.create_commit(repo_url.repo_id, operations, commit_message=commit_message)
        return repo_url, card_text

    repo_url, card_text = call_with_retries(
        push_once, f"pushing '{output_dir}' to '{repo_id}'", retry, attempts, wait_seconds
    )
    # a run's folder now mirrors the repository: its card names the repository in the usage snippet (a checkpoint,
    # or a card this project did not write, is left as it was)
    card = output_dir / CARD_NAME
    if (output_dir / RESOLVED_CONFIG_NAME).is_file() and (not card.exists() or is_our_card(card)):
        card.write_text(card_text, encoding="utf-8")
    logger.info("Pushed %s to %s", output_dir, repo_url)
    return str(repo_url)
