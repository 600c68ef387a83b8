"""Compare the base model with fine-tuned adapters: WAVs to listen to, metrics to trust, one page for both.

    python evaluate.py --base_model facebook/musicgen-small \
        --model final=OUTPUT_DIR --model step400=OUTPUT_DIR/checkpoint-400 \
        --prompts prompts.json --duration 15 --num_samples 2 --seed 0 --eval_dataset DATA_FOLDER --output_dir eval/
    python evaluate.py --config OUTPUT_DIR/finetune_config.json [--prompts prompts.json ...]

Writes ``eval/<model>/<prompt>-<sample>.wav`` (+ a spectrogram PNG), ``comparison_results.jsonl``, ``metrics.json``
and ``report.html``; see ``python evaluate.py --help`` and :mod:`musicgen_lora.evaluate` for the metrics."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import re
import sys
from pathlib import Path
from typing import Any

from ..config.arguments import MODEL_MAX_SECONDS, RESOLVED_CONFIG_NAME
from ..config.parsing import check_json_values, load_json_config, parse_config
from ..errors import CommandLineParser, UserError, exit_on_user_error, finite_number, seed_number
from ..files import ensure_writable_folder, kept_aside, read_json_object
from ..logs import setup_logging
from ..memorisation.melody import DEFAULT_MELODY_THRESHOLD
from ..models.loading import pick_device
from ..train.copy_score import DEFAULT_COPY_THRESHOLD
from .data import DatasetSpec, EvalSettings, resolve_split
from .models import BASE, ModelSpec, classify_model_dir
from .prompts import Prompt, read_prompts
from .run import run_evaluation

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(
        prog="evaluate.py",
        description="Render the same prompts with the base MusicGen and each fine-tuned model (same seeds), and "
        "write WAVs, comparison_results.jsonl, metrics.json (held-out cross-entropy per codebook, Fréchet distances, "
        "prompt adherence, audio health, diversity, memorisation, optional CLAP) and report.html. --debug shows "
        "full tracebacks.",
        allow_abbrev=False,
    )
    for add_options in (_add_models_and_prompts, _add_sampling, _add_data, _add_memorisation, _add_output):
        add_options(parser)
    return parser


def _add_models_and_prompts(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument_group("models and prompts").add_argument
    add(
        "--config",
        help=f"a training {RESOLVED_CONFIG_NAME} (or its output folder): base model, adapter "
        "(as 'final', plus OUTPUT_DIR/best/ as 'best' when there is one), data and prompts are read from it",
    )
    add("--base_model", help="base MusicGen: Hub id or local folder (always evaluated, as 'base')")
    add(
        "--model",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a fine-tuned model to compare: a LoRA output_dir, a checkpoint-N folder, or a fully fine-tuned model "
        "folder (repeatable)",
    )
    add(
        "--prompts",
        help='JSON list of prompts (strings, or {"text", "bpm", "key"} objects) or a .txt file, one '
        "per line; default with --config: its sample_prompts",
    )


def _add_sampling(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument_group("sampling").add_argument
    add(
        "--duration",
        type=finite_number,
        help="seconds of audio per sample (default: the config's sample_duration_in_seconds, else 8)",
    )
    add("--num_samples", type=int, default=2, help="samples per prompt and model (diversity needs >= 2)")
    add(
        "--seed",
        type=seed_number,
        help="seed of the first prompt (prompt i uses seed + i, for every model); default: config's seed, else 0",
    )
    add("--guidance_scale", type=finite_number, help="classifier-free guidance (1: none); default: config's, else 3")


def _add_data(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument_group("data").add_argument
    add(
        "--eval_dataset",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="held-out data for the cross-entropy and the Fréchet reference: a local audio folder (as for training), "
        "a prepared dataset folder (datasets.save_to_disk with codes and text, e.g. a run's prepared_data/), or a "
        "Hub id; repeatable, e.g. in_domain=... out_of_domain=... to measure forgetting. Default with --config: its "
        "eval split, else its "
        "training data (labelled not held out)",
    )
    add(
        "--eval_split",
        help="split of --eval_dataset (default: a local folder's validation/, test/ or eval/ "
        "subfolder if it has one, else the whole folder)",
    )
    add("--train_dataset", help="training data for the memorisation check (default with --config: its dataset)")
    add(
        "--max_train_samples",
        type=int,
        help="use only the first N clips of --train_dataset, as training did (default: config's max_train_samples)",
    )
    add("--max_eval_samples", type=int, help="use only the first N clips of each evaluation dataset")
    add(
        "--max_duration_in_seconds", type=finite_number, help="cross-entropy window length (default: config's, else 30)"
    )
    add("--instance_prompt", help="caption prefix used in training (default: config's)")
    add("--text_column_name", help="caption column (default: config's, else text)")
    add("--audio_column_name", help="audio column (default: config's, else audio)")
    add("--data_cache_dir", help="EnCodec codes cache (default: config's, else $HF_HOME/musicgen_lora)")
    add("--cache_dir", help="Hugging Face download cache")


def _add_memorisation(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument_group("memorisation check").add_argument
    add(
        "--copy_threshold",
        type=finite_number,
        default=DEFAULT_COPY_THRESHOLD,
        help="flag a clip as a copy when this share of its code frames lines up with one training clip (copy_score, "
        "0-1; an adapter that memorised a clip scores about 1, the base model 0)",
    )
    add(
        "--melody_threshold",
        type=finite_number,
        default=DEFAULT_MELODY_THRESHOLD,
        help="flag a clip as a melodic copy at this chroma correlation with a training excerpt (0-1; the same tune on "
        "another instrument scores about 0.9)",
    )
    add(
        "--skip_melody",
        action="store_true",
        help="skip the melodic similarity, which decodes every training clip "
        "with EnCodec (minutes per hour of training audio on a CPU)",
    )


def _add_output(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument_group("output and run").add_argument
    add("--output_dir", help="where to write everything (default with --config: OUTPUT_DIR/evaluation)")
    add("--overwrite", action="store_true", help="replace an earlier evaluation in --output_dir")
    add(
        "--clap_model",
        help="a local CLAP checkpoint folder (transformers format, e.g. laion/clap-htsat-unfused "
        "downloaded with hf download) for text-audio similarity; off by default",
    )
    add("--batch_size", type=int, default=4, help="evaluation windows per forward pass (cross-entropy)")
    add("--device", help="torch device (default: cuda if available, else cpu)")
    add("--debug", action="store_true", help="show full tracebacks instead of one-line errors")


def _config_file(path: str) -> Path:
    """The training config that --config names: the file, or a run folder's finetune_config.json."""
    location = Path(path).expanduser()
    return location / RESOLVED_CONFIG_NAME if location.is_dir() else location


def _read_config(path: str) -> tuple[Path, dict[str, Any]]:
    """The run folder and the values of the training config --config names, their types checked (a hand-edited
    file is read as training reads it).

    Raises:
        UserError: missing, not JSON, an unknown key or a value of the wrong type.
    """
    location = _config_file(path)
    values = load_json_config(location)
    check_json_values(values, f"'{location}'")
    return location.parent, values


def _split_name(value: str, default: str) -> tuple[str, str]:
    head, sep, tail = value.partition("=")
    if sep and head and "/" not in head and not Path(value).exists():
        return head, tail
    return default, value


def settings_from_args(args: argparse.Namespace) -> EvalSettings:
    """Turn the parsed options (and the training config, with --config) into :class:`EvalSettings`.

    Raises:
        UserError: anything missing, out of range or inconsistent.
    """
    config: dict[str, Any] = _read_config(args.config)[1] if args.config else {}
    base_model = args.base_model or config.get("model_name_or_path")
    if not base_model:
        raise UserError(
            "no base model; give --base_model (e.g. facebook/musicgen-small) or --config "
            "OUTPUT_DIR/finetune_config.json"
        )
    if args.prompts:
        prompts = read_prompts(args.prompts)
    elif config.get("sample_prompts"):
        prompts = [Prompt.parse(p) for p in config["sample_prompts"]]
    else:
        raise UserError("no prompts; give --prompts prompts.json (a JSON list of prompts)")
    numbers = _checked_numbers(args, config)
    eval_datasets, train_dataset = _datasets(args)
    output_dir = args.output_dir or (str(_read_config(args.config)[0] / "evaluation") if args.config else None)
    if not output_dir:
        raise UserError("no --output_dir; give the folder to write the WAVs, metrics and report.html to")
    _check_output_dir(Path(output_dir), args.overwrite)
    pick_device(args.device)
    return EvalSettings(
        base_model=base_model,
        models=_models(args),
        prompts=prompts,
        output_dir=Path(output_dir),
        num_samples=args.num_samples,
        seed=args.seed if args.seed is not None else int(config.get("seed", 0)),
        eval_datasets=eval_datasets,
        train_dataset=train_dataset,
        clap_model=args.clap_model,
        batch_size=args.batch_size,
        max_eval_samples=args.max_eval_samples,
        min_duration_in_seconds=float(config.get("min_duration_in_seconds", 1.0)),
        instance_prompt=args.instance_prompt if args.instance_prompt is not None else config.get("instance_prompt"),
        text_column_name=args.text_column_name or config.get("text_column_name", "text"),
        audio_column_name=args.audio_column_name or config.get("audio_column_name", "audio"),
        dataset_config_name=config.get("dataset_config_name"),
        data_cache_dir=args.data_cache_dir or config.get("data_cache_dir"),
        cache_dir=args.cache_dir or config.get("cache_dir"),
        device=args.device,
        copy_threshold=args.copy_threshold,
        melody_threshold=args.melody_threshold,
        melody_check=not args.skip_melody,
        **numbers,
    )


EVALUATION_FILES = ("metrics.json", "comparison_results.jsonl", "report.html")


def _check_output_dir(out: Path, overwrite: bool) -> None:
    """Raises UserError when --output_dir is a file, not writable, or holds an earlier evaluation (without
    --overwrite, which lets this one replace it)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--output_dir '{out}' is a file, not a folder; choose a folder")
    earlier = [name for name in EVALUATION_FILES if (out / name).exists()]
    if earlier and not overwrite:
        raise UserError(
            f"--output_dir '{out}' holds an earlier evaluation ({', '.join(earlier)}); choose another --output_dir, or "
            "add --overwrite to replace it"
        )
    ensure_writable_folder(out, "--output_dir")


def _models(args: argparse.Namespace) -> list[ModelSpec]:
    """The models to compare with the base: the run's final adapter and its best checkpoint (with --config), and
    each --model NAME=DIR.

    Raises:
        UserError: a malformed or repeated name, or a folder with no adapter or model.
    """
    models = []
    if args.config:
        run_dir = _read_config(args.config)[0]
        models.append(classify_model_dir("final", str(run_dir)))
        # the best checkpoint: OUTPUT_DIR/best/ (kept by training with load_best_model_at_end), else the one
        # trainer_state.json names, if it still exists
        best = run_dir / "best"
        if not best.is_dir():
            named = read_json_object(run_dir / "trainer_state.json").get("best_model_checkpoint")
            best = Path(named) if named else best
        if best.is_dir() and best.resolve() != run_dir.resolve():
            models.append(classify_model_dir("best", str(best)))
    for item in args.model:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--model {item!r} must be NAME=DIR, e.g. --model final=outputs/my-run")
        if not _NAME.match(name) or name == BASE:
            raise UserError(
                f"model name {name!r} is not allowed; use letters, digits, '_', '-', '.' (and not '{BASE}')"
            )
        models.append(classify_model_dir(name, path))
    names = [m.name for m in models]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"model name(s) {', '.join(duplicates)} given twice; give each --model a different NAME")
    return models


def _checked_numbers(args: argparse.Namespace, config: dict[str, Any]) -> dict[str, Any]:
    """The numeric settings (each option, else the run's config, else the default), checked.

    Raises:
        UserError: a number out of range, naming the option.
    """
    duration = args.duration if args.duration is not None else config.get("sample_duration_in_seconds", 8.0)
    if not 0 < duration <= MODEL_MAX_SECONDS:
        raise UserError(
            f"--duration must be in (0, {MODEL_MAX_SECONDS:g}] seconds (MusicGen's window), got {duration:g}"
        )
    if args.num_samples < 1:
        raise UserError(f"--num_samples must be >= 1, got {args.num_samples}")
    if args.batch_size < 1:
        raise UserError(f"--batch_size must be >= 1, got {args.batch_size}")
    for option in ("max_eval_samples", "max_train_samples"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise UserError(f"--{option} must be >= 1, got {value}")
    for option in ("copy_threshold", "melody_threshold"):
        if not 0 <= getattr(args, option) <= 1:
            raise UserError(f"--{option} must be between 0 and 1, got {getattr(args, option):g}")
    guidance = args.guidance_scale if args.guidance_scale is not None else config.get("guidance_scale", 3.0)
    if guidance < 1:
        raise UserError(f"--guidance_scale must be >= 1 (1 disables guidance), got {guidance:g}")
    window = (
        args.max_duration_in_seconds
        if args.max_duration_in_seconds is not None
        else config.get("max_duration_in_seconds", MODEL_MAX_SECONDS)
    )
    if not 0 < window <= MODEL_MAX_SECONDS:
        raise UserError(f"--max_duration_in_seconds must be in (0, {MODEL_MAX_SECONDS:g}], got {window:g}")
    max_train_samples = (
        args.max_train_samples
        if args.max_train_samples is not None
        else (config.get("max_train_samples") if not args.train_dataset else None)
    )
    return {
        "duration": float(duration),
        "guidance_scale": float(guidance),
        "max_duration_in_seconds": float(window),
        "max_train_samples": max_train_samples,
    }


def _datasets(args: argparse.Namespace) -> tuple[list[DatasetSpec], DatasetSpec | None]:
    """The evaluation datasets and the training dataset (for the memorisation check): each --eval_dataset and
    --train_dataset, else, with --config, the run's own data prepared exactly as training prepared it.

    Raises:
        UserError: two evaluation datasets with the same name.
    """
    eval_datasets = []
    for number, item in enumerate(args.eval_dataset):
        name, source = _split_name(item, "eval" if number == 0 else f"eval{number + 1}")
        eval_datasets.append(DatasetSpec(name, source, resolve_split(source, args.eval_split)))
    run, seed = None, 42
    if args.config:  # the run's data options, so its data is prepared exactly as training prepared it
        parsed = parse_config([str(_config_file(args.config))])
        run = dataclasses.replace(
            parsed.data, data_cache_dir=args.data_cache_dir or parsed.data.data_cache_dir, push_metadata_repo_id=None
        )  # prepared as in training, never pushed again
        seed = parsed.training.seed
    if not eval_datasets and run is not None:
        if run.eval_split_name or run.eval_split_percentage > 0:
            eval_datasets.append(DatasetSpec("eval", run.dataset_name, run.eval_split_name, True, run, seed))
        else:  # no held-out data in the run: its training data, labelled as such
            eval_datasets.append(DatasetSpec("train", run.dataset_name, run.train_split_name, False, run, seed))
    names = [d.name for d in eval_datasets]
    if len(set(names)) < len(names):
        raise UserError(f"evaluation dataset names {names} repeat; name them, e.g. --eval_dataset in_domain=PATH")
    train_dataset = None
    if args.train_dataset:
        train_dataset = DatasetSpec("train", args.train_dataset, None)
    elif run is not None:
        train_dataset = DatasetSpec("train", run.dataset_name, run.train_split_name, True, run, seed)
    return eval_datasets, train_dataset


def earlier_evaluation(out: Path) -> list[Path]:
    """An earlier evaluation in ``out``: its results and the folders of the models its metrics.json names, where
    they hold only what an evaluation writes there (WAVs and spectrogram PNGs: never a checkpoint folder)."""
    results = [out / name for name in EVALUATION_FILES if (out / name).exists()]
    models = read_json_object(out / "metrics.json").get("models") if results else None
    folders = [out / name for name in (models if isinstance(models, dict) else {}) if _NAME.match(str(name))]
    return results + [
        folder
        for folder in folders
        if folder.is_dir() and all(p.is_file() and p.suffix in (".wav", ".png") for p in folder.iterdir())
    ]


def _replacing_earlier_evaluation(out: Path, models: list[str]) -> contextlib.AbstractContextManager:
    """An earlier evaluation in ``out`` (only with --overwrite: see _check_output_dir) kept aside until this one has
    succeeded; after a failure, what this one wrote is removed (not folders it found and wrote into)."""
    earlier = earlier_evaluation(out)
    found = {out / name for name in (BASE, *models) if (out / name).exists()} - set(earlier)

    def written() -> list[Path]:
        return [out / name for name in EVALUATION_FILES] + [
            out / name for name in (BASE, *models) if out / name not in found
        ]

    return kept_aside(out, earlier, "evaluation", written)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else list(argv)
    setup_logging()
    with exit_on_user_error(argv):
        args = build_parser().parse_args(argv)
        settings = settings_from_args(args)
        with _replacing_earlier_evaluation(settings.output_dir, [m.name for m in settings.models]):
            result = run_evaluation(settings)
    print(f"wrote {len(result['records'])} clips, metrics.json and {result['report']}")
    return result
