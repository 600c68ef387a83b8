"""The model card of a finished run, from its files (``finetune_config.json``, ``adapter_config.json``,
``*_results.json``, ``trainer_state.json``, ``prepared_data/data_report.json``, ``evaluation/metrics.json``,
``samples/final/``), so a card can be written long after training (``python -m musicgen_lora.push``).

The text comes from the Jinja template ``card_template.md`` (``ModelCard.from_template``) and the metadata from
``huggingface_hub.ModelCardData``. PEFT writes the *local path* of the base model into ``adapter_config.json``
(``base_model_name_or_path``); on the Hub that path means nothing and leaks the user's directory layout, so the card
names the base by its Hub id (``model_name_or_path`` when it is one, the id of a Hub cache folder, or the
``base_model_id`` option) or not at all, and :func:`fix_adapter_config` writes that id into ``adapter_config.json``."""

from __future__ import annotations

import importlib.metadata
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData, try_to_load_from_cache

from .. import __version__
from ..config.arguments import RESOLVED_CONFIG_NAME
from ..config.parsing import build_parser
from ..files import hub_id_of, is_local_path, looks_like_hub_id, read_json_object
from ..models.spec import new_tokens_for

CARD_NAME = "README.md"
# Ends every card this project writes (invisible on the Hub), so a later run knows the README.md is its own.
CARD_MARKER = "<!-- written by musicgen-lora -->"


def is_our_card(path: Path) -> bool:
    """Whether a README.md is a model card written by this project (cards from before the marker say how they were
    trained)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return CARD_MARKER in text or "trained with musicgen-lora" in text


PLOT_NAME = "loss_curves.png"


SAMPLES_FOLDER = "samples/final"
DATA_REPORT = "prepared_data/data_report.json"
MEMORISATION_FILE = "memorisation.json"  # the training samples' copy scores (written by train.samples)
EVALUATION_METRICS = "evaluation/metrics.json"  # evaluate.py --config OUTPUT_DIR writes here
TEMPLATE = Path(__file__).with_name("card_template.md")
MUSICGEN_FRAME_RATE = 50  # codec frames per second of every MusicGen checkpoint (for the snippet's max_new_tokens)
CODEBOOKS_PER_CHANNEL = 4  # every MusicGen checkpoint's


# Every MusicGen checkpoint of facebook/ is released under CC-BY-NC 4.0 (weights); an adapter inherits its terms.
KNOWN_LICENSES = {"facebook/musicgen": "cc-by-nc-4.0"}


def fix_adapter_config(output_dir: str | Path, base_id: str | None) -> bool:
    """Write the base model's Hub id into ``adapter_config.json`` in place of PEFT's local path; without an id, a
    relative local path becomes absolute (run from the training's folder); True if changed.

    Read from another folder later (a card, a push, ``generate --adapter``), a relative ``models/tiny`` would look
    like a Hub id; an absolute path never does, and a push leaves it out."""
    path = Path(output_dir) / "adapter_config.json"
    if not path.is_file():
        return False
    config = json.loads(path.read_text(encoding="utf-8"))
    recorded = config.get("base_model_name_or_path")
    if base_id is None and isinstance(recorded, str) and recorded and Path(recorded).expanduser().exists():
        base_id = str(Path(recorded).expanduser().resolve())
    if base_id is None or recorded == base_id:
        return False
    config["base_model_name_or_path"] = base_id
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return True


def base_model_license(base_id: str | None, local_folder: str | None = None) -> str | None:
    """The base model's licence: from its card (local folder or Hub cache), else known for MusicGen checkpoints."""
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


def build_model_card(output_dir: str | Path, repo_id: str | None = None) -> ModelCard:
    """The model card of a finished run, rendered from ``card_template.md`` (Jinja) with its metadata validated by
    ``huggingface_hub.ModelCardData``.

    Args:
        output_dir: the run's output folder.
        repo_id: the Hub repository the card is for; the usage snippet loads the adapter from it (from the card's own
            folder, ``"."``, when None).

    Returns:
        A ``ModelCard`` whose metadata names the base model by Hub id (never a local path; none when only a local
        folder is known), ``library_name: peft`` (``transformers`` for a full fine-tune), ``pipeline_tag:
        text-to-audio``, tags, datasets, licence, samples as widget examples and evaluation results; and whose text
        says how to use it, what it was trained on and how, its evaluations, its intended uses and limits, and the
        framework versions.
    """
    output_dir = Path(output_dir)
    run = _RunFiles.read(output_dir)
    base = _base_model(run)
    trigger = run.settings.get("instance_prompt")
    name = repo_id.split("/")[-1] if repo_id else output_dir.name
    prompt = (run.settings.get("sample_prompts") or [None])[0] or "lofi hip hop, piano"
    if trigger and trigger not in prompt:
        prompt = f"{trigger}, {prompt}"  # as the training captions were built
    seconds = 8.0
    context = {
        "name": name,
        "lora": run.lora,
        "base_id": base["id"],
        "melody": base["melody"],
        "trigger": trigger,
        "hub_dataset": run.hub_dataset,
        "base_ref": base["id"] or "BASE_MODEL_ID",
        "adapter_ref": repo_id or ".",
        "prompt_json": json.dumps(prompt),
        "seconds": f"{seconds:g}",
        "max_new_tokens": new_tokens_for(round(seconds * MUSICGEN_FRAME_RATE), CODEBOOKS_PER_CHANNEL),
        "samples": _samples(output_dir),
        "seed": run.settings.get("seed", 42),
        "data_splits": _data_splits(run),
        "window": _number(run.settings.get("max_duration_in_seconds")),
        "hyperparameters": _hyperparameters(run, base),
        "plot": PLOT_NAME if (output_dir / PLOT_NAME).is_file() else None,
        "evaluations": _evaluations(run),
        "licence": base["licence"],
        "versions": _versions(),
        "marker": CARD_MARKER,
        "memorisation": _memorisation(run),
    }
    card_data = _card_data(run, base, name, trigger, context["samples"])
    text = str(ModelCard.from_template(card_data, template_str=TEMPLATE.read_text(encoding="utf-8"), **context))
    return ModelCard(re.sub(r"\n{3,}", "\n\n", text))  # the template's blocks leave runs of blank lines


@dataclass
class _RunFiles:
    """What a card is made from: the files a finished run left in its folder."""

    folder: Path
    settings: dict[str, Any]  # every option of the run (finetune_config.json over the defaults)
    adapter_config: dict[str, Any]
    state: dict[str, Any]  # trainer_state.json
    train_results: dict[str, Any]
    eval_results: dict[str, Any]
    data_report: dict[str, Any]  # prepared_data/data_report.json
    evaluation: dict[str, Any]  # evaluate.py's metrics.json in OUTPUT_DIR/evaluation
    memorisation: dict[str, Any]  # the training samples' memorisation check (memorisation.json)

    @classmethod
    def read(cls, folder: Path) -> _RunFiles:
        return cls(
            folder,
            run_settings(folder),
            read_json_object(folder / "adapter_config.json"),
            read_json_object(folder / "trainer_state.json"),
            read_json_object(folder / "train_results.json"),
            read_json_object(folder / "eval_results.json"),
            read_json_object(folder / DATA_REPORT),
            read_json_object(folder / EVALUATION_METRICS),
            read_json_object(folder / MEMORISATION_FILE),
        )

    @property
    def lora(self) -> bool:
        return bool(self.adapter_config) or (
            not (self.folder / "config.json").is_file() and bool(self.settings.get("use_lora", True))
        )

    @property
    def hub_dataset(self) -> str | None:
        dataset = self.settings.get("dataset_name")
        return dataset if dataset and not is_local_path(dataset) and looks_like_hub_id(dataset) else None


def _base_model(run: _RunFiles) -> dict[str, Any]:
    """The base model: its Hub id (None when only a local folder is known), its local folder, melody or not, licence."""
    recorded = run.adapter_config.get("base_model_name_or_path")
    model_path = run.settings.get("model_name_or_path") or recorded
    base_id = hub_id_of(model_path, run.settings.get("base_model_id"))
    if base_id is None and not is_local_path(recorded) and looks_like_hub_id(recorded):
        base_id = recorded  # the Hub id training wrote into adapter_config.json
    local = model_path if model_path and Path(model_path).expanduser().is_dir() else None
    config = read_json_object(Path(local) / "config.json") if local else {}
    melody = config.get("model_type") == "musicgen_melody" or "melody" in (base_id or "")
    return {"id": base_id, "local": local, "melody": melody, "licence": base_model_license(base_id, local)}


def _card_data(
    run: _RunFiles, base: dict[str, Any], name: str, trigger: str | None, samples: list[tuple[str, str]]
) -> ModelCardData:
    """The card's metadata; the trigger word is ``instance_prompt`` and in the text and widget, not a tag."""
    base_id = base["id"]
    tags = ["musicgen", "text-to-audio", "music", "transformers"]
    tags += ["lora", "peft"] if run.lora else ["full-finetune"]
    if base_id:
        tags.append(f"base_model:{'adapter' if run.lora else 'finetune'}:{base_id}")
    evals = None
    if run.eval_results and run.hub_dataset:
        split = run.settings.get("eval_split_name") or "held-out"
        evals = [
            EvalResult(
                task_type="text-to-audio",
                dataset_type=run.hub_dataset,
                dataset_name=run.hub_dataset,
                dataset_split=split,
                metric_type=metric,
                metric_name=label,
                metric_value=float(run.eval_results[key]),
            )
            for key, metric, label in (
                ("eval_loss", "loss", "cross-entropy (mean over codebooks)"),
                ("eval_ppl", "perplexity", "perplexity"),
            )
            if isinstance(run.eval_results.get(key), (int, float))
        ]
    return ModelCardData(
        base_model=base_id,
        base_model_relation=("adapter" if run.lora else "finetune") if base_id else None,
        library_name="peft" if run.lora else "transformers",
        pipeline_tag="text-to-audio",
        tags=tags,
        datasets=[run.hub_dataset] if run.hub_dataset else None,
        license=base["licence"],
        model_name=name if evals else None,
        eval_results=evals or None,
        widget=[{"text": prompt, "output": {"url": path}} for path, prompt in samples] or None,
        instance_prompt=trigger,
    )


def _data_splits(run: _RunFiles) -> list[dict[str, Any]]:
    """Per prepared split: tracks, hours kept, examples, caption coverage and files left out (data_report.json)."""
    splits = []
    for name, part in (run.data_report.get("splits") or {}).items():
        captions = part.get("captions") or {}
        splits.append(
            {
                "name": name,
                "tracks": part.get("tracks"),
                "hours": f"{part.get('hours_kept', 0):.2f}",
                "examples": part.get("examples"),
                "own_captions": captions.get("tracks_with_own_caption"),
                "measured": captions.get("tracks_with_added_tempo_key"),
                "left_out": (part.get("files") or {}).get("skipped"),
            }
        )
    return splits


def _hyperparameters(run: _RunFiles, base: dict[str, Any]) -> list[tuple[str, Any]]:
    """The training settings table, in the order a reader wants them."""
    settings, adapter_config = run.settings, run.adapter_config
    if run.lora:
        method = "DoRA" if settings.get("use_dora") else "rsLoRA" if settings.get("use_rslora") else "LoRA"
    else:
        method = "full fine-tuning of the decoder"
    rows: list[tuple[str, Any]] = [("base model", base["id"] or "(local model)"), ("method", method)]
    if run.lora:
        targets = settings.get("lora_target_modules") or []
        rows += [
            (
                "rank r / alpha / dropout",
                f"{settings.get('lora_r', adapter_config.get('r'))} / "
                f"{_number(settings.get('lora_alpha', adapter_config.get('lora_alpha')))} / "
                f"{settings.get('lora_dropout')}",
            ),
            (
                "target modules",
                f"regex `{settings['lora_target_regex']}`" if settings.get("lora_target_regex") else ", ".join(targets),
            ),
        ]
    precision = run.train_results.get("precision")  # what training ran in (fp16 falls back to fp32 on a CPU)
    if precision is None:
        precision = "bf16" if settings.get("bf16") else "fp16" if settings.get("fp16") else "fp32"
    state = run.state
    rows += [
        ("text encoder", "adapted" if settings.get("train_text_encoder") else "frozen"),
        (
            "learning rate / scheduler / warmup",
            f"{_number(settings.get('learning_rate'))} / {settings.get('lr_scheduler_type')} / "
            f"{settings.get('warmup_steps')}",
        ),
        (
            "batch size per device x accumulation",
            f"{settings.get('per_device_train_batch_size')} x {settings.get('gradient_accumulation_steps')}",
        ),
        (
            "optimizer steps / epochs",
            f"{state.get('global_step', settings.get('max_steps'))} / "
            f"{_number(state.get('epoch', settings.get('num_train_epochs')))}",
        ),
        ("training window", f"{_number(settings.get('max_duration_in_seconds'))} s (random crops of longer clips)"),
        ("caption dropout (for guidance)", _number(settings.get("text_dropout_prob"))),
        ("precision", precision),
        ("seed", settings.get("seed")),
    ]
    if settings.get("quantize_base"):  # the base was quantized for training only; the adapter is not
        rows.append(("frozen base while training", f"quantize_base {settings['quantize_base']} (bitsandbytes): load "
                     "the adapter onto the unquantized base, as shown above"))  # fmt: skip
    if settings.get("instance_prompt"):
        rows.append(("instance prompt (trigger word)", f"`{settings['instance_prompt']}`"))
    if isinstance(run.train_results.get("train_loss"), (int, float)):
        rows.append(("final training loss (mean over the run)", _number(run.train_results["train_loss"])))
    return rows


def _evaluations(run: _RunFiles) -> list[dict[str, Any]]:
    """One table per evaluation: the held-out loss of training's eval split, and evaluate.py's comparison."""
    tables = []
    if run.eval_results:
        settings = run.settings
        if settings.get("eval_split_name"):
            where = f"the `{settings['eval_split_name']}` split"
        else:
            where = (
                f"{_number(settings.get('eval_split_percentage'))} % of the tracks, held out (eval_split_percentage)"
            )
        rows = [
            (key.removeprefix("eval_"), _number(value))
            for key, value in run.eval_results.items()
            if key.startswith("eval_")
            and isinstance(value, (int, float))
            and not key.endswith(("runtime", "per_second", "epoch"))
        ]
        tables.append(
            {
                "title": f"After training, on {where} (cross-entropy per codebook, as audiocraft reports it):",
                "header": ["metric", "value"],
                "rows": rows,
            }
        )
    models = run.evaluation.get("models") or {}
    if models:
        header = [
            "model",
            "cross-entropy",
            "Fréchet (EnCodec latent)",
            "tempo within 4 %",
            "key score",
            "loudness (LUFS)",
        ]
        rows = []
        for model, block in models.items():
            ce = next(iter((block.get("cross_entropy") or {}).values()), {})
            frechet = next(iter((block.get("frechet") or {}).values()), {})
            adherence, health = block.get("adherence") or {}, block.get("health") or {}
            rows.append(
                [
                    model,
                    _number(ce.get("ce")),
                    _number((frechet.get("encodec_latent") or {}).get("value")),
                    _number(adherence.get("tempo_within_4pct")),
                    _number(adherence.get("key_score_mean")),
                    _number(health.get("loudness_lufs_mean")),
                ]
            )
        comparison = run.evaluation.get("comparison") or {}
        tables.append(
            {
                "title": "evaluate.py, the base model against this one (same prompts and seeds; "
                "`evaluation/report.html` to listen):",
                "header": header,
                "rows": rows,
                # each model against the base in words: paired bootstrap, 95 % intervals (evaluate.py's verdict)
                "verdicts": [
                    (name, block["verdict"])
                    for name, block in comparison.items()
                    if isinstance(block, dict) and isinstance(block.get("verdict"), str)
                ],
            }
        )
    return tables


def _memorisation(run: _RunFiles) -> dict[str, Any] | None:
    """The final samples' copy scores from the memorisation check during training (None without it)."""
    final = run.memorisation.get("final") or {}
    if not isinstance(final.get("copy_score"), (int, float)):
        return None
    return {**final, "threshold": run.memorisation.get("copy_threshold") or 0.0}


def _versions() -> list[tuple[str, str]]:
    """The versions of the libraries that trained the model (and this project's)."""
    found = []
    for package in ("torch", "transformers", "peft", "datasets", "accelerate", "huggingface_hub"):
        try:
            found.append((package, importlib.metadata.version(package)))
        except importlib.metadata.PackageNotFoundError:
            continue
    return [*found, ("musicgen-lora", __version__)]


def write_model_card(output_dir: str | Path, repo_id: str | None = None) -> Path:
    """Render :func:`build_model_card` to ``OUTPUT_DIR/README.md`` (replacing PEFT's template card); returns its
    path."""
    path = Path(output_dir) / CARD_NAME
    build_model_card(output_dir, repo_id).save(path)
    return path
