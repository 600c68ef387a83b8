"""Publishing: the model card, Hub-safe configs, and pushing an output folder to the Hugging Face Hub.

Everything here works from the files of a finished run (``finetune_config.json``, ``adapter_config.json``,
``*_results.json``, ``trainer_state.json``, ``samples/final/``), so a card can be written, and a folder pushed, long
after training (``python -m musicgen_lora.push OUTPUT_DIR --repo_id user/name``).

What is easy to get wrong, and handled here:

- PEFT writes the *local path* of the base model into its card and into ``adapter_config.json``
  (``base_model_name_or_path``); on the Hub that path means nothing and leaks the user's directory layout. The card
  names the base by its Hub id (``model_name_or_path`` when it is one, the id of a Hub cache folder, or the
  ``base_model_id`` option), and ``adapter_config.json`` is rewritten with that id. No local path is pushed.
- The token (``hub_token``, ``HF_TOKEN`` or ``hf auth login``) is never written to a file: :func:`take_push_request`
  removes it from the training arguments before the Trainer exists (Trainer pickles its arguments into
  ``training_args.bin``), and the Trainer's own push is replaced by :func:`push_folder`.
- A push is one commit (adapter, card, samples together), retried on transient errors (HTTP 408/429/5xx, dropped
  connections) with exponential back-off; when it finally fails, no local file has been touched and the one-line
  error says how to retry.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import UserError, one_line

T = TypeVar("T")

logger = logging.getLogger(__name__)

CARD_NAME = "README.md"
PLOT_NAME = "loss_curves.png"
SAMPLES_FOLDER = "samples/final"
PUSH_COMMAND = "python -m musicgen_lora.push"
# Every MusicGen checkpoint of facebook/ is released under CC-BY-NC 4.0 (weights); an adapter inherits its terms.
KNOWN_LICENSES = {"facebook/musicgen": "cc-by-nc-4.0"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")
_CACHE_FOLDER = re.compile(r"^models--(?P<org>[^/]+?)--(?P<name>[^/]+)$")
# Files of an output folder that go to the Hub (besides the card, which is rendered for the repo). Not pushed:
# checkpoints, best/, logs, training_args.bin, trainer_state.json (hold local paths), base and step samples.
PUSHED_FILES = (
    "adapter_config.json", "adapter_model.safetensors", "adapter_model.bin",  # LoRA
    "config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",  # full fine-tune
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "spiece.model",  # processor
    "processor_config.json", "preprocessor_config.json",
    "finetune_config.json", "train_results.json", "eval_results.json", "all_results.json", PLOT_NAME,
)  # fmt: skip
TRANSIENT_STATUS = (408, 429, 500, 502, 503, 504)


# ------------------------------------------------------------------------------------------------ base model id


def looks_like_hub_id(name: str | None) -> bool:
    """``org/name`` or ``name`` as the Hub spells repository ids (no path syntax)."""
    return bool(name) and bool(_HUB_ID.match(name)) and ".." not in name and not name.endswith((".", "-"))


def hub_id_of(model_name_or_path: str | None, base_model_id: str | None = None) -> str | None:
    """The Hub id of a base model, or None when only a local folder is known.

    ``base_model_id`` wins; else ``model_name_or_path`` when it is a Hub id (and not an existing local folder); else
    the id encoded in a Hub cache folder (``.../models--facebook--musicgen-small/snapshots/<sha>``).
    """
    if base_model_id:
        return base_model_id
    if not model_name_or_path:
        return None
    path = Path(model_name_or_path).expanduser()
    if not path.exists() and looks_like_hub_id(model_name_or_path):
        return model_name_or_path
    for part in path.absolute().parts:
        match = _CACHE_FOLDER.match(part)
        if match:
            return f"{match['org']}/{match['name']}"
    return None


def is_local_path(value: Any) -> bool:
    """A string that names a file or folder on this machine (absolute, ``~``/``.`` relative, or existing)."""
    if not isinstance(value, str) or not value:
        return False
    return value.startswith(("/", "~", "./", "../")) or os.path.isabs(value) or Path(value).expanduser().exists()


def fix_adapter_config(output_dir: str | Path, base_id: str | None) -> bool:
    """Write the base model's Hub id into ``adapter_config.json`` in place of PEFT's local path; True if changed."""
    path = Path(output_dir) / "adapter_config.json"
    if base_id is None or not path.is_file():
        return False
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("base_model_name_or_path") == base_id:
        return False
    config["base_model_name_or_path"] = base_id
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return True


def base_model_license(base_id: str | None, local_folder: str | None = None) -> str | None:
    """The base model's licence: from its card (local folder or Hub cache), else known for MusicGen checkpoints."""
    from huggingface_hub import ModelCard, try_to_load_from_cache

    candidates = []
    if local_folder:
        candidates.append(Path(local_folder).expanduser() / CARD_NAME)
    if base_id:
        try:
            cached = try_to_load_from_cache(base_id, CARD_NAME)
        except Exception:  # noqa: BLE001 - an unusual id must not stop the card
            cached = None
        if isinstance(cached, str):
            candidates.append(Path(cached))
    for card_path in candidates:
        if card_path.is_file():
            try:
                license_ = ModelCard.load(card_path, ignore_metadata_errors=True).data.license
            except Exception:  # noqa: BLE001
                license_ = None
            if license_:
                return license_
    for prefix, license_ in KNOWN_LICENSES.items():
        if base_id and base_id.startswith(prefix):
            return license_
    return None


# ------------------------------------------------------------------------------------------------ model card


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run_settings(output_dir: str | Path) -> dict[str, Any]:
    """Every option of the run (``finetune_config.json`` over the defaults); {} when the folder has none."""
    from .config import RESOLVED_CONFIG_NAME, build_parser

    requested = _read_json(Path(output_dir) / RESOLVED_CONFIG_NAME)
    if not requested:
        return {}
    defaults = vars(build_parser().parse_known_args([])[0])
    return {**{k: (v.value if hasattr(v, "value") else v) for k, v in defaults.items()}, **requested}


def _samples(output_dir: Path) -> list[tuple[str, str]]:
    """``(relative wav path, prompt)`` for each final sample."""
    listing = output_dir / SAMPLES_FOLDER / "prompts.txt"
    if not listing.is_file():
        return []
    samples = []
    for line in listing.read_text(encoding="utf-8").splitlines():
        name, _, prompt = line.partition("\t")
        if name and (output_dir / SAMPLES_FOLDER / name).is_file():
            samples.append((f"{SAMPLES_FOLDER}/{name}", prompt))
    return samples


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _usage(base_ref: str, adapter_ref: str, prompt: str, max_new_tokens: int, seconds: float, lora: bool, melody: bool) -> str:
    load = (
        f'base = AutoModelForTextToWaveform.from_pretrained("{base_ref}")\n'
        f'model = PeftModel.from_pretrained(base, "{adapter_ref}")\n'
        if lora
        else f'model = AutoModelForTextToWaveform.from_pretrained("{adapter_ref}")\n'
    )
    imports = "from peft import PeftModel\n" if lora else ""
    melody_note = "# (MusicGen-Melody's processor needs torchaudio)\n" if melody else ""
    return (
        "```python\n"
        "import soundfile as sf\n"
        "import torch\n"
        f"{imports}"
        "from transformers import AutoModelForTextToWaveform, AutoProcessor\n\n"
        f"{load}"
        f"{melody_note}"
        f'processor = AutoProcessor.from_pretrained("{base_ref if lora else adapter_ref}")\n\n'
        f"inputs = processor(text=[{json.dumps(prompt)}], padding=True, return_tensors=\"pt\")\n"
        "torch.manual_seed(0)\n"
        f"audio = model.generate(**inputs, do_sample=True, guidance_scale=3.0, max_new_tokens={max_new_tokens})"
        f"  # {seconds:g} s: (batch, channels, samples)\n"
        'sf.write("sample.wav", audio[0].T.numpy(), model.config.audio_encoder.sampling_rate)\n'
        "```\n"
    )


def build_model_card(output_dir: str | Path, repo_id: str | None = None) -> Any:
    """The model card of a finished run, as a ``huggingface_hub.ModelCard``.

    Args:
        output_dir: the run's output folder.
        repo_id: the Hub repository the card is for; the usage snippet loads the adapter from it (from the card's own
            folder, ``"."``, when None).

    Returns:
        A ``ModelCard`` whose metadata names the base model by Hub id (never a local path), ``library_name: peft``
        (``transformers`` for a full fine-tune), ``pipeline_tag: text-to-audio``, tags, datasets, licence, samples as
        widget examples, and evaluation results when the run evaluated.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from .generation import new_tokens_for

    output_dir = Path(output_dir)
    settings = run_settings(output_dir)
    adapter_config = _read_json(output_dir / "adapter_config.json")
    lora = bool(adapter_config) or (not (output_dir / "config.json").is_file() and bool(settings.get("use_lora", True)))
    model_path = settings.get("model_name_or_path") or adapter_config.get("base_model_name_or_path")
    base_id = hub_id_of(model_path, settings.get("base_model_id"))
    if base_id is None and looks_like_hub_id(adapter_config.get("base_model_name_or_path")):
        base_id = adapter_config["base_model_name_or_path"]  # fixed at training time
    local_base = model_path if model_path and Path(model_path).expanduser().is_dir() else None
    base_config = _read_json(Path(local_base) / "config.json") if local_base else {}
    melody = base_config.get("model_type") == "musicgen_melody" or "melody" in (base_id or "")
    dataset = settings.get("dataset_name")
    hub_dataset = dataset if dataset and not is_local_path(dataset) and looks_like_hub_id(dataset) else None
    trigger = settings.get("instance_prompt")
    samples = _samples(output_dir)
    train_results = _read_json(output_dir / "train_results.json")
    eval_results = _read_json(output_dir / "eval_results.json")
    state = _read_json(output_dir / "trainer_state.json")

    tags = ["musicgen", "lora" if lora else "full-finetune", "text-to-audio", "music"]
    if trigger:
        tags.append(trigger)
    name = repo_id.split("/")[-1] if repo_id else output_dir.name
    evals = None
    if eval_results and hub_dataset:
        split = settings.get("eval_split_name")
        evals = [
            EvalResult(
                task_type="text-to-audio", dataset_type=hub_dataset, dataset_name=hub_dataset, dataset_split=split,
                metric_type=metric, metric_name=label, metric_value=float(eval_results[key]),
            )  # fmt: skip
            for key, metric, label in (("eval_loss", "loss", "cross-entropy (mean over codebooks)"), ("eval_ppl", "perplexity", "perplexity"))
            if isinstance(eval_results.get(key), (int, float))
        ]
    data = ModelCardData(
        base_model=base_id,
        library_name="peft" if lora else "transformers",
        pipeline_tag="text-to-audio",
        tags=tags,
        datasets=[hub_dataset] if hub_dataset else None,
        license=base_model_license(base_id, local_base),
        model_name=name if evals else None,
        eval_results=evals or None,
        widget=[{"text": prompt, "output": {"url": path}} for path, prompt in samples] or None,
        instance_prompt=trigger,
    )

    base_ref = base_id or "BASE_MODEL_ID"  # unknown: the reader fills it in (the card never holds a local path)
    adapter_ref = repo_id or "."
    prompt = (settings.get("sample_prompts") or [None])[0] or "lofi hip hop, piano"
    if trigger and trigger not in prompt:
        prompt = f"{trigger}, {prompt}"  # as the training captions were built
    num_delays = 4  # codebooks per channel of every MusicGen checkpoint
    seconds = 8.0
    lines = [f"# {name}", ""]
    what = "LoRA adapter" if lora else "Fine-tuned version"
    base_text = f"[{base_id}](https://huggingface.co/{base_id})" if base_id else "a MusicGen model"
    lines.append(f"{what} for {base_text}, trained with musicgen-lora on "
                 + (f"[{hub_dataset}](https://huggingface.co/datasets/{hub_dataset})" if hub_dataset else "a private collection of music")
                 + ".")  # fmt: skip
    if base_id is None:
        lines += ["", "The base model's Hub id was not recorded (set `base_model_id` when training from a local folder): "
                  "replace `BASE_MODEL_ID` below with it."]  # fmt: skip
    if trigger:
        lines += ["", f"**Trigger word:** `{trigger}` — put it in your prompts (training captions began with it)."]
    lines += ["", "## Use it", "", "```bash", "pip install transformers peft soundfile" + (" torchaudio" if melody else ""), "```", ""]
    lines.append(_usage(base_ref, adapter_ref, prompt, new_tokens_for(seconds, 50, num_delays), seconds, lora, melody))
    lines += [
        "Longer than MusicGen's 30 s window, several prompts at once, WAV or MP3, melody conditioning"
        + (", and merging into a standalone model" if lora else "") + " with this project's command line:",
        "",
        "```bash",
        f"python -m musicgen_lora.generate --base_model {base_ref} "
        + (f"--adapter {adapter_ref} " if lora else "")
        + f"--prompt {json.dumps(prompt)} --duration 45 --guidance_scale 3 --seed 0 --out_dir out/",
        "```",
    ]  # fmt: skip
    if samples:
        lines += ["", "## Samples", "", "Rendered at the end of training (seed " + str(settings.get("seed", 42)) + "):", ""]
        for path, sample_prompt in samples:
            lines += [f"- {sample_prompt} — [{Path(path).name}]({path})", "", f'  <audio controls src="{path}"></audio>', ""]
    lines += ["", "## Training", ""]
    hyper = [
        ("base model", base_id or "(local model)"),
        ("method", ("DoRA" if settings.get("use_dora") else "rsLoRA" if settings.get("use_rslora") else "LoRA") if lora else "full fine-tuning of the decoder"),
    ]  # fmt: skip
    if lora:
        hyper += [
            ("rank r / alpha / dropout", f"{settings.get('lora_r', adapter_config.get('r'))} / "
             f"{_number(settings.get('lora_alpha', adapter_config.get('lora_alpha')))} / {settings.get('lora_dropout')}"),
            ("target modules", ", ".join(settings.get("lora_target_modules") or []) if not settings.get("lora_target_regex") else f"regex `{settings['lora_target_regex']}`"),
        ]  # fmt: skip
    hyper += [
        ("text encoder", "adapted" if settings.get("train_text_encoder") else "frozen"),
        ("learning rate / scheduler / warmup", f"{_number(settings.get('learning_rate'))} / {settings.get('lr_scheduler_type')} / {settings.get('warmup_steps')}"),
        ("batch size per device x accumulation", f"{settings.get('per_device_train_batch_size')} x {settings.get('gradient_accumulation_steps')}"),
        ("optimizer steps / epochs", f"{state.get('global_step', settings.get('max_steps'))} / {_number(state.get('epoch', settings.get('num_train_epochs')))}"),
        ("training window", f"{_number(settings.get('max_duration_in_seconds'))} s (random crops of longer clips)"),
        ("caption dropout (for guidance)", _number(settings.get("text_dropout_prob"))),
        ("precision", "bf16" if settings.get("bf16") else "fp16" if settings.get("fp16") else "fp32"),
        ("seed", settings.get("seed")),
    ]  # fmt: skip
    if trigger:
        hyper.append(("instance prompt (trigger word)", f"`{trigger}`"))
    if isinstance(train_results.get("train_loss"), (int, float)):
        hyper.append(("final training loss (mean over the run)", _number(train_results["train_loss"])))
    lines += ["| setting | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in hyper)]
    if eval_results:
        rows = [(k.removeprefix("eval_"), v) for k, v in eval_results.items() if k.startswith("eval_") and isinstance(v, (int, float))
                and not k.endswith(("runtime", "per_second", "epoch"))]  # fmt: skip
        lines += ["", "## Evaluation", "", f"On the `{settings.get('eval_split_name')}` split (held-out cross-entropy per codebook, as audiocraft reports it):", "",
                  "| metric | value |", "|---|---|", *(f"| {k} | {_number(v)} |" for k, v in rows)]  # fmt: skip
    if (output_dir / PLOT_NAME).is_file():
        lines += ["", f"![loss curves]({PLOT_NAME})"]
    lines += ["", "## Licence", "", (f"Inherits the base model's licence ({data.license})." if data.license else
              "See the base model's licence.") + " Train only on music you have the rights to."]  # fmt: skip
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")


def write_model_card(output_dir: str | Path, repo_id: str | None = None) -> Path:
    """Render :func:`build_model_card` to ``OUTPUT_DIR/README.md`` (replacing PEFT's template card); returns its path."""
    path = Path(output_dir) / CARD_NAME
    build_model_card(output_dir, repo_id).save(path)
    return path


# ------------------------------------------------------------------------------------------------ push


@dataclass
class PushRequest:
    """What ``push_to_hub`` asked for, taken out of the training arguments (so the token is never saved)."""

    repo_id: str
    token: str | None
    private: bool | None


def _token_available(token: str | None) -> bool:
    from huggingface_hub import get_token

    return bool(token or get_token())


def _check_can_push(token: str | None) -> None:
    from huggingface_hub import constants

    if constants.is_offline_mode() or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        raise UserError("cannot push to the Hub: HF_HUB_OFFLINE is set; unset it (or set push_to_hub false)")
    if not _token_available(token):
        raise UserError(
            "pushing to the Hub needs a token; set HF_TOKEN, run `hf auth login`, or set hub_token (never saved to a file)"
        )


def take_push_request(parsed: Any) -> PushRequest | None:
    """Before training: check ``push_to_hub`` can work, and move the push settings out of the training arguments.

    The Trainer then neither pushes by itself (it would push at every save, in the background, with PEFT's card) nor
    pickles the token into ``training_args.bin``. Also checks ``base_model_id``.

    Raises:
        UserError: invalid ``base_model_id``, offline mode or no token while ``push_to_hub`` is set.
    """
    base_model_id = parsed.args.base_model_id
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
        raise UserError(f"hub_model_id '{repo_id}' is not a Hub repository id; set it like 'your-name/musicgen-lora-jazz'")
    _check_can_push(token)
    return PushRequest(repo_id=repo_id, token=token, private=training.hub_private_repo)


def _is_transient(err: BaseException) -> bool:
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(err, HfHubHTTPError):
        response = getattr(err, "response", None)
        return response is not None and response.status_code in TRANSIENT_STATUS
    transport: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    for module in ("httpx2", "httpx"):
        try:
            transport += (__import__(module).TransportError,)
        except (ImportError, AttributeError):
            pass
    return isinstance(err, transport)


def _describe(err: BaseException) -> str:
    response = getattr(err, "response", None)
    status = f"HTTP {response.status_code}: " if getattr(response, "status_code", None) else ""
    return status + (one_line(str(err))[:200] or type(err).__name__)


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
        config = _read_json(path)
        if not is_local_path(config.get("base_model_name_or_path")):
            return None
        if base_id is None:
            logger.warning("The base model's Hub id is unknown (trained from a local folder): adapter_config.json is "
                           "pushed without base_model_name_or_path; set base_model_id to record it")  # fmt: skip
        config["base_model_name_or_path"] = base_id
        return (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()
    if name == "finetune_config.json":
        config = _read_json(path)
        for key in ("output_dir", "data_cache_dir", "cache_dir", "logging_dir", "resume_from_checkpoint"):
            config.pop(key, None)
        for key, value in list(config.items()):
            if is_local_path(value):
                config[key] = base_id if key == "model_name_or_path" and base_id else Path(value).name
        return (json.dumps(config, indent=2) + "\n").encode()
    return None


def call_with_retries(action: Callable[[], T], what: str, advice: str, attempts: int = 4, wait_seconds: float = 2.0) -> T:
    """``action()``, retried with back-off (``wait_seconds``, doubled each time) on transient Hub errors (HTTP 408,
    429, 5xx, dropped connections), ``attempts`` tries in all.

    Raises:
        UserError: one line, ``"<what> failed (<why>); <advice>"``, for a permanent error or the last transient one.
    """
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001 - every failure of the client becomes the one-line error below
            if not _is_transient(err):
                raise UserError(f"{what} failed ({_describe(err)}); {advice}") from None
            if attempt == attempts:
                raise UserError(f"{what} failed {attempts} times ({_describe(err)}); {advice}") from None
            delay = wait_seconds * 2 ** (attempt - 1)
            logger.warning("Push attempt %d/%d failed (%s); retrying in %.1f s", attempt, attempts, _describe(err), delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


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
    from huggingface_hub import CommitOperationAdd, HfApi

    output_dir = Path(output_dir)
    if not ((output_dir / "adapter_config.json").is_file() or (output_dir / "config.json").is_file()):
        raise UserError(
            f"'{output_dir}' holds no adapter (adapter_config.json) or model (config.json); give the output_dir of a "
            "finished training run"
        )
    if not looks_like_hub_id(repo_id):
        raise UserError(f"'{repo_id}' is not a Hub repository id; use the form 'your-name/musicgen-lora-jazz'")
    _check_can_push(token)
    settings = run_settings(output_dir)
    adapter_base = _read_json(output_dir / "adapter_config.json").get("base_model_name_or_path")
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
                CommitOperationAdd(path_in_repo=name, path_or_fileobj=content if content is not None else str(output_dir / name))
            )
        api.create_commit(repo_url.repo_id, operations, commit_message=commit_message)
        return repo_url, card_text

    repo_url, card_text = call_with_retries(push_once, f"pushing '{output_dir}' to '{repo_id}'", retry, attempts, wait_seconds)
    # the folder now mirrors the repository: its card names the repository in the usage snippet
    (output_dir / CARD_NAME).write_text(card_text, encoding="utf-8")
    logger.info("Pushed %s to %s", output_dir, repo_url)
    return str(repo_url)


# ------------------------------------------------------------------------------------------------ end of a run


def finish_run(output_dir: str | Path, model_name_or_path: str | None, base_model_id: str | None,
               log_history: list[dict[str, Any]], push: PushRequest | None) -> dict[str, Any]:  # fmt: skip
    """After training, on the main process: Hub id into ``adapter_config.json``, loss plot, model card, push.

    Returns:
        ``{"card": path, "plot": path or None, "hub_url": url or None}``.

    Raises:
        UserError: the push failed (everything else is written by then; the message says how to retry).
    """
    from .plots import plot_loss_curves_if_possible

    output_dir = Path(output_dir)
    base_id = hub_id_of(model_name_or_path, base_model_id)
    if fix_adapter_config(output_dir, base_id):
        logger.info("adapter_config.json names the base model by its Hub id, %s", base_id)
    plot = plot_loss_curves_if_possible(log_history, output_dir / PLOT_NAME)
    card = write_model_card(output_dir, push.repo_id if push else None)
    url = push_folder(output_dir, push.repo_id, token=push.token, private=push.private) if push else None
    return {"card": str(card), "plot": str(plot) if plot else None, "hub_url": url}
