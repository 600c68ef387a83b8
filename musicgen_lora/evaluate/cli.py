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
import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config.arguments import MODEL_MAX_SECONDS, RESOLVED_CONFIG_NAME, DataArguments
from ..config.parsing import OptionsParser, check_json_values, load_json_config, parse_config
from ..errors import UserError, exit_on_user_error, finite_number, seed_number
from ..files import ensure_writable_folder, kept_aside, lock_or_refuse, read_json_object
from ..logs import setup_logging
from ..memorisation.melody import DEFAULT_MELODY_THRESHOLD
from ..models.loading import pick_device
from ..train.copy_score import DEFAULT_COPY_THRESHOLD
from .arguments import ARGUMENT_GROUPS, MIN_CLIPS
from .data import DatasetSpec, EvalSettings, resolve_split
from .models import BASE, ModelSpec, classify_model_dir
from .prompts import Prompt, read_prompts
from .run import run_evaluation

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
LOCK_NAME = ".evaluate.lock"  # held while an evaluation writes into its --output_dir


class _Parser(OptionsParser):
    """evaluate.py's options, whose float options take finite numbers only ('nan', 'inf' and '1e999' are refused, as
    every other command refuses them)."""

    def __init__(self) -> None:
        super().__init__(
            ARGUMENT_GROUPS,
            "evaluate.py",
            description="Render the same prompts with the base MusicGen and each fine-tuned model (same seeds), and "
            "write WAVs, comparison_results.jsonl, metrics.json (held-out cross-entropy per codebook, Fréchet "
            "distances and FAD, prompt adherence, audio health, diversity, memorisation, optional CLAP; each adapter "
            "against the base with 95 % intervals and a verdict) and report.html. --debug shows full tracebacks.",
        )
        for action in self._actions:
            if action.type is float:
                action.type = finite_number
            elif action.dest in ("seed", "bootstrap_seed"):
                action.type = seed_number


def build_parser() -> argparse.ArgumentParser:
    """evaluate.py's options, one group per dataclass of :mod:`.arguments`."""
    return _Parser()


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
    """Turn the parsed options (and the training config, with --config) into :class:`EvalSettings`; nothing is
    written (the output folder is made by :func:`output_folder`).

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
    numbers = _checked_numbers(args, config, len(prompts))
    eval_datasets, train_dataset = _datasets(args)
    if train_dataset is None:
        given = [f"--{o}" for o in ("copy_threshold", "melody_threshold") if getattr(args, o) is not None]
        if given:
            raise UserError(
                f"{' and '.join(given)} set, but there is no training data to compare the clips with; add "
                "--train_dataset DATA (a training run, its prepared_data/, an audio folder or a Hub dataset id) or "
                f"--config RUN, or leave {' and '.join(given)} out"
            )
    models = _models(args)
    output_dir = args.output_dir or (str(_read_config(args.config)[0] / "evaluation") if args.config else None)
    if not output_dir:
        raise UserError("no --output_dir; give the folder to write the WAVs, metrics and report.html to")
    out = Path(output_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--output_dir '{out}' is a file, not a folder; choose a folder")
    pick_device(args.device)
    return EvalSettings(
        base_model=base_model,
        models=models,
        prompts=prompts,
        output_dir=out,
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
        copy_threshold=DEFAULT_COPY_THRESHOLD if args.copy_threshold is None else args.copy_threshold,
        melody_threshold=DEFAULT_MELODY_THRESHOLD if args.melody_threshold is None else args.melody_threshold,
        melody_check=not args.skip_melody,
        generation_batch_size=args.generation_batch_size,
        bootstrap_resamples=args.bootstrap_resamples,
        bootstrap_seed=args.bootstrap_seed,
        **numbers,
    )


EVALUATION_FILES = ("metrics.json", "comparison_results.jsonl", "report.html")


@contextlib.contextmanager
def output_folder(out: Path, overwrite: bool) -> Iterator[None]:
    """``--output_dir`` for the length of one evaluation: created if missing, locked (``.evaluate.lock``, so that a
    second ``evaluate.py`` into the same folder is refused instead of replacing this one's results), and checked for
    an earlier evaluation (which only ``--overwrite`` may replace). A folder this evaluation created is removed again
    when it fails before writing anything there.

    Raises:
        UserError: another evaluation holds the folder, it is not writable, or it holds an earlier evaluation.
    """
    created = [folder for folder in (out, *out.parents) if not folder.exists()]  # made here, innermost first
    ensure_writable_folder(out, "--output_dir")
    try:
        refusal = (
            f"--output_dir '{out}' is in use by another evaluate.py (it holds {out / LOCK_NAME}); wait until it has "
            "finished, or choose another --output_dir"
        )
        with lock_or_refuse(out / LOCK_NAME, "evaluate", lambda holder: refusal):  # removes its file when released
            _check_earlier_evaluation(out, overwrite)
            yield
    finally:
        for folder in created:  # each only while empty: never what this evaluation wrote, nor anyone's files
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def _check_earlier_evaluation(out: Path, overwrite: bool) -> None:
    """Raises UserError when --output_dir holds an earlier evaluation (without --overwrite, which lets this one
    replace it)."""
    earlier = [name for name in EVALUATION_FILES if (out / name).exists()]
    if earlier and not overwrite:
        raise UserError(
            f"--output_dir '{out}' holds an earlier evaluation ({', '.join(earlier)}); choose another --output_dir, or "
            "add --overwrite to replace it"
        )


def _models(args: argparse.Namespace) -> list[ModelSpec]:
    """The models to compare with the base: the run's final adapter and its best checkpoint (with --config), and
    each --model NAME=DIR.

    Raises:
        UserError: a malformed or repeated name, or a folder with no adapter or model.
    """
    models = []
    if args.config:
        run_dir = _read_config(args.config)[0]
        if not (run_dir / "adapter_config.json").is_file() and not (run_dir / "config.json").is_file():
            steps = [int(c.name[11:]) for c in run_dir.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", c.name)]
            checkpoints = [run_dir / f"checkpoint-{step}" for step in sorted(steps)]
            latest = f"--model step={checkpoints[-1]} " if checkpoints else ""
            raise UserError(
                f"the run in '{run_dir}' has not finished: it has no adapter yet; resume its training to the end, or "
                f"evaluate a checkpoint with --base_model BASE {latest or '--model step=RUN/checkpoint-N '}"
                "--prompts ... --output_dir ..."
            )
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


def _checked_numbers(args: argparse.Namespace, config: dict[str, Any], prompts: int) -> dict[str, Any]:
    """The numeric settings (each option, else the run's config, else the default), checked; ``--num_samples`` by
    default gives every model at least MIN_CLIPS clips (and 2 samples per prompt, for the diversity).

    Raises:
        UserError: a number out of range, naming the option.
    """
    duration = args.duration if args.duration is not None else config.get("sample_duration_in_seconds", 8.0)
    if not 0 < duration <= MODEL_MAX_SECONDS:
        raise UserError(
            f"--duration must be in (0, {MODEL_MAX_SECONDS:g}] seconds (MusicGen's window), got {duration:g}"
        )
    num_samples = max(2, math.ceil(MIN_CLIPS / prompts)) if args.num_samples is None else args.num_samples
    if num_samples < 1:
        raise UserError(f"--num_samples must be >= 1, got {num_samples}")
    for option in ("batch_size", "generation_batch_size"):
        if getattr(args, option) < 1:
            raise UserError(f"--{option} must be >= 1, got {getattr(args, option)}")
    if args.bootstrap_resamples < 100:
        raise UserError(
            f"--bootstrap_resamples must be >= 100 (a 95 % interval needs its tails), got {args.bootstrap_resamples}"
        )
    for option in ("max_eval_samples", "max_train_samples"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise UserError(f"--{option} must be >= 1, got {value}")
    for option in ("copy_threshold", "melody_threshold"):
        if getattr(args, option) is not None and not 0 <= getattr(args, option) <= 1:
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
        "num_samples": num_samples,
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
        run, seed = _run_data(args.config, args.data_cache_dir)
    if not eval_datasets and run is not None:
        if run.eval_split_name or run.eval_split_percentage > 0:
            eval_datasets.append(DatasetSpec("eval", run.dataset_name, run.eval_split_name, True, run, seed))
        else:  # no held-out data in the run: its training data, labelled as such
            eval_datasets.append(DatasetSpec("train", run.dataset_name, run.train_split_name, False, run, seed))
    names = [d.name for d in eval_datasets]
    if len(set(names)) < len(names):
        raise UserError(f"evaluation dataset names {names} repeat; name them, e.g. --eval_dataset in_domain=PATH")
    train_dataset = None
    if args.train_dataset and (Path(args.train_dataset).expanduser() / RESOLVED_CONFIG_NAME).is_file():
        # a training run's folder: the clips it trained on, prepared as it prepared them
        trained = _run_data(args.train_dataset, args.data_cache_dir)
        train_dataset = DatasetSpec("train", trained[0].dataset_name, trained[0].train_split_name, True, *trained)
    elif args.train_dataset:
        train_dataset = DatasetSpec("train", args.train_dataset, None)
    elif run is not None:
        train_dataset = DatasetSpec("train", run.dataset_name, run.train_split_name, True, run, seed)
    return eval_datasets, train_dataset


def _run_data(path: str, data_cache_dir: str | None) -> tuple[DataArguments, int]:
    """A training run's data options and seed, so its data is prepared exactly as training prepared it (never pushed
    again)."""
    parsed = parse_config([str(_config_file(path))])
    data = dataclasses.replace(
        parsed.data, data_cache_dir=data_cache_dir or parsed.data.data_cache_dir, push_metadata_repo_id=None
    )
    return data, parsed.training.seed


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
    """An earlier evaluation in ``out`` (only with --overwrite: see output_folder) kept aside until this one has
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
        with output_folder(settings.output_dir, args.overwrite):
            with _replacing_earlier_evaluation(settings.output_dir, [m.name for m in settings.models]):
                result = run_evaluation(settings)
    print(f"wrote {len(result['records'])} clips, metrics.json and {result['report']}")
    for name, compared in result["metrics"]["comparison"].items():
        print(f"{name} against {BASE}: {compared['verdict']}")
    return result
