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
  error says how to retry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config.arguments import RESOLVED_CONFIG_NAME
from ..config.parsing import build_parser
from ..files import hub_id_of, is_local_path, looks_like_hub_id, read_json_object
from ..models.spec import new_tokens_for

CARD_NAME = "README.md"
# Ends every card this project writes (invisible on the Hub), so a later run knows the README.md is its own.
CARD_MARKER = "<!-- written by musicgen-lora -->"


PLOT_NAME = "loss_curves.png"


SAMPLES_FOLDER = "samples/final"


# Every MusicGen checkpoint of facebook/ is released under CC-BY-NC 4.0 (weights); an adapter inherits its terms.
KNOWN_LICENSES = {"facebook/musicgen": "cc-by-nc-4.0"}


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


def run_settings(output_dir: str | Path) -> dict[str, Any]:
    """Every option of the run (``finetune_config.json`` over the defaults); {} when the folder has none."""

    requested = read_json_object(Path(output_dir) / RESOLVED_CONFIG_NAME)
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

    output_dir = Path(output_dir)
    settings = run_settings(output_dir)
    adapter_config = read_json_object(output_dir / "adapter_config.json")
    lora = bool(adapter_config) or (not (output_dir / "config.json").is_file() and bool(settings.get("use_lora", True)))
    model_path = settings.get("model_name_or_path") or adapter_config.get("base_model_name_or_path")
    base_id = hub_id_of(model_path, settings.get("base_model_id"))
    if base_id is None and looks_like_hub_id(adapter_config.get("base_model_name_or_path")):
        base_id = adapter_config["base_model_name_or_path"]  # fixed at training time
    local_base = model_path if model_path and Path(model_path).expanduser().is_dir() else None
    base_config = read_json_object(Path(local_base) / "config.json") if local_base else {}
    melody = base_config.get("model_type") == "musicgen_melody" or "melody" in (base_id or "")
    dataset = settings.get("dataset_name")
    hub_dataset = dataset if dataset and not is_local_path(dataset) and looks_like_hub_id(dataset) else None
    trigger = settings.get("instance_prompt")
    samples = _samples(output_dir)
    train_results = read_json_object(output_dir / "train_results.json")
    eval_results = read_json_object(output_dir / "eval_results.json")
    state = read_json_object(output_dir / "trainer_state.json")

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
    lines.append(_usage(base_ref, adapter_ref, prompt, new_tokens_for(round(seconds * 50), num_delays), seconds, lora, melody))
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
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + f"\n\n{CARD_MARKER}\n")


def write_model_card(output_dir: str | Path, repo_id: str | None = None) -> Path:
    """Render :func:`build_model_card` to ``OUTPUT_DIR/README.md`` (replacing PEFT's template card); returns its path."""
    path = Path(output_dir) / CARD_NAME
    build_model_card(output_dir, repo_id).save(path)
    return path
