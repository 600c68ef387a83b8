"""The same command run again, as Hugging Face's example scripts do it: a run that was stopped (crash, Ctrl-C, a
preempted machine) continues from its newest complete checkpoint, a finished one is reported and left alone, one that
wrote no checkpoint yet starts over (nothing to lose), and a changed config is refused with the keys that differ, so a
spot machine can loop one command until the run is done.

A run writes its requested config (``finetune_config.json``) when it starts; that file is what "the same command"
is compared with (:func:`musicgen_lora.config.parsing.config_differences`: options that only change reporting, saving
or sharing may differ).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config.arguments import RESOLVED_CONFIG_NAME
from ..config.parsing import config_differences
from ..errors import UserError
from ..files import atomic_write_json, read_json_object, replaced_atomically
from .checkpoints import (
    checkpoint_folders,
    checkpoint_step,
    is_complete,
    newest_complete_checkpoint,
    resolve_resume,
)
from .output_dir import previous_run

logger = logging.getLogger(__name__)

# What a run saves once it has trained to the end (Trainer.save_metrics("train") after save_model).
FINISHED_MARKER = "train_results.json"
WEIGHT_NAMES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")


@dataclasses.dataclass(frozen=True)
class RerunPlan:
    """What a training run does with what its output_dir already holds.

    Attributes:
        resume: the checkpoint to continue from (None: train from step 0).
        start_over: set the previous run aside (kept until the new run succeeds) and train from step 0.
        finished: the run in output_dir already finished with this config: nothing to train.
    """

    resume: str | None = None
    start_over: bool = False
    finished: bool = False


def plan_rerun(output_dir: str, requested: dict[str, Any], resume_from_checkpoint: Any, overwrite: bool) -> RerunPlan:
    """Decide how a run treats the previous run in ``output_dir`` (none there: a fresh start).

    An explicit ``resume_from_checkpoint`` resumes whatever the saved config says (its differences are logged;
    ``overwrite`` is then ignored, with a warning), unless nothing is left to train from that checkpoint: a finished
    run asked again with its own config, or a checkpoint at ``max_steps``, is reported finished. ``overwrite`` starts
    over. Otherwise the saved config must match ``requested``. A checkpoint at ``max_steps`` of a run that did not
    finish (stopped during its final save) is not resumed: the one before it is, to train that last stretch again.

    Raises:
        UserError: the saved config differs (the keys named); LoRA's shape changed for a checkpoint to continue; a
            previous run without a saved config (written by a version before this rule) or with a damaged one; an
            explicit checkpoint that is missing, incomplete, or at ``max_steps``; ``resume_from_checkpoint false`` on
            a stopped run.
    """
    folder = Path(output_dir).expanduser()
    saved_path = folder / RESOLVED_CONFIG_NAME
    max_steps = int(requested.get("max_steps", -1))
    finished = (folder / FINISHED_MARKER).is_file() and any((folder / name).is_file() for name in WEIGHT_NAMES)
    explicit = resolve_resume(resume_from_checkpoint, folder)
    if explicit is not None:
        if overwrite:
            logger.warning("resume_from_checkpoint is set, so overwrite_output_dir is ignored: the run continues")
        changed = config_differences(read_json_object(saved_path), requested) if saved_path.is_file() else []
        _check_same_shape(explicit, requested, changed)
        if changed:
            logger.warning("Resuming %s with changed options: %s", explicit, "; ".join(changed))
        return _plan_explicit(folder, explicit, resume_from_checkpoint, max_steps, finished, changed)
    if overwrite:
        return RerunPlan(start_over=True)
    if not previous_run(folder):
        return RerunPlan()
    checkpoint = None if finished else _resumable(folder, max_steps)
    if not finished and checkpoint is None:  # nothing to continue: whatever its config, nothing is lost
        logger.info(
            "The run in %s has no complete checkpoint to continue from: starting over (kept aside until this run "
            "succeeds)",
            folder,
        )
        return RerunPlan(start_over=True)
    state = "finished run" if finished else f"run stopped at {checkpoint.name}"
    saved = read_json_object(saved_path)
    if not saved:  # missing (a version before this rule), or damaged by hand: no config to compare with
        which = (
            f"whose {RESOLVED_CONFIG_NAME} is not a readable JSON object"
            if saved_path.is_file()
            else f"without its {RESOLVED_CONFIG_NAME}"
        )
        raise UserError(
            f"output_dir '{folder}' holds a {state} {which}, so it cannot be told "
            "whether this is the same run; continue it with resume_from_checkpoint true, start over with "
            "overwrite_output_dir true (the previous run is kept aside until the new one succeeds), or choose another "
            "output_dir"
        )
    changed = config_differences(saved, requested)
    if changed:
        shown = "; ".join(changed[:4]) + ("; ..." if len(changed) > 4 else "")
        shape = _shape_options(changed)
        resume = (
            f"{', '.join(shape)} cannot change in a run that continues (its weights have that shape)"
            if shape
            else "add resume_from_checkpoint true to continue it with the new values"
        )
        raise UserError(
            f"output_dir '{folder}' holds a {state} with another config ({shown}); run the same config to "
            f"continue it, {resume}, set overwrite_output_dir true to start over (the previous run is kept aside "
            "until the new one succeeds), or choose another output_dir"
        )
    if finished:
        return RerunPlan(finished=True)
    if str(resume_from_checkpoint).lower() == "false":
        raise UserError(
            f"resume_from_checkpoint is false, but output_dir '{folder}' holds a run stopped at {checkpoint.name} with "
            "this config; leave resume_from_checkpoint out to continue it, set overwrite_output_dir true to start "
            "over (the previous run is kept aside until the new one succeeds), or choose another output_dir"
        )
    logger.info("%s detected, resuming (the same config as the run that wrote it)", checkpoint.name)
    return RerunPlan(resume=str(checkpoint))


# LoRA options that shape the weights a checkpoint holds: a run cannot continue with other values.
SHAPE_OPTIONS = ("use_lora", "lora_r", "use_dora", "lora_target_modules", "lora_target_regex", "train_text_encoder")


def _shape_options(changed: list[str]) -> list[str]:
    """The options among ``changed`` (``"key: old -> new"``) that shape the trained weights."""
    return [line.split(":")[0] for line in changed if line.split(":")[0] in SHAPE_OPTIONS]


def _check_same_shape(checkpoint: str, requested: dict[str, Any], changed: list[str]) -> None:
    """Raises UserError when the LoRA weights ``checkpoint`` holds cannot be continued with the requested options (a
    rank it was not trained with, other targets...), naming them, before any data or model is loaded."""
    shape = _shape_options(changed)
    adapter = read_json_object(Path(checkpoint) / "adapter_config.json")
    rank = adapter.get("r")
    if not shape and isinstance(rank, int) and requested.get("lora_r") not in (None, rank):
        shape = [f"lora_r: {rank} -> {requested['lora_r']}"]
    elif shape:
        shape = [line for line in changed if line.split(":")[0] in shape]
    if shape:
        raise UserError(
            f"checkpoint '{checkpoint}' holds weights trained with other LoRA options ({'; '.join(shape)}), which "
            "cannot change in a run that continues; resume with the values it was trained with, or start over with "
            "overwrite_output_dir true (the previous run is kept aside until the new one succeeds)"
        )


def _plan_explicit(
    folder: Path, checkpoint: str, asked: Any, max_steps: int, finished: bool, changed: list[str]
) -> RerunPlan:
    """The plan for an explicit ``resume_from_checkpoint`` (``asked``: as given), resolved to ``checkpoint``.

    Raises:
        UserError: a checkpoint at or past ``max_steps`` that is another run's, or given by its path for a run that
            did not finish.
    """
    step = checkpoint_step(checkpoint)
    at_the_end = 0 < max_steps <= step
    own = Path(checkpoint).resolve().parent == folder.resolve()  # not a checkpoint of another run
    if finished and own and (at_the_end or not changed):  # training again would give what the run already holds
        return RerunPlan(finished=True)
    if not at_the_end:
        return RerunPlan(resume=checkpoint)
    if not own or (str(asked).lower() != "true" and Path(str(asked)).expanduser().resolve() != folder.resolve()):
        raise UserError(
            f"checkpoint '{checkpoint}' is at step {step} and max_steps is {max_steps}: nothing is left to train from "
            "it; raise max_steps to train longer, or give an earlier checkpoint"
        )
    earlier = _resumable(folder, max_steps)  # (stopped during the final save: train the last stretch again)
    if earlier is None:
        logger.info("No checkpoint of %s is before max_steps %d: starting over", folder, max_steps)
        return RerunPlan(start_over=True)
    logger.info("%s is at max_steps but the run did not finish: resuming from %s", checkpoint, earlier)
    return RerunPlan(resume=str(earlier))


def _resumable(folder: Path, max_steps: int) -> Path | None:
    """The newest complete checkpoint of ``folder`` that has steps left to train (before ``max_steps`` if set)."""
    checkpoint = newest_complete_checkpoint(folder)
    if checkpoint is None or not 0 < max_steps <= checkpoint_step(checkpoint):
        return checkpoint
    earlier = [p for p in checkpoint_folders(folder) if is_complete(p) and checkpoint_step(p) < max_steps]
    return earlier[-1] if earlier else None


@contextlib.contextmanager
def config_written_for_this_run(output_dir: str | Path, config: dict[str, Any]) -> Iterator[None]:
    """Write this run's ``finetune_config.json`` first (so the same command, run again after a crash, continues it),
    and put the previous one back (or remove it, when there was none) if the run fails before it has written a
    checkpoint of its own: a resume that fails (another base, bad data) leaves the run it was resuming exactly as it
    was, and a config error leaves no config of a run that never trained."""
    path = Path(output_dir) / RESOLVED_CONFIG_NAME
    previous = path.read_bytes() if path.is_file() else None
    newest = newest_complete_checkpoint(output_dir)
    atomic_write_json(path, config, indent=2)
    try:
        yield
    except BaseException:
        if newest_complete_checkpoint(output_dir) == newest:  # failed before a checkpoint of its own
            if previous is None:  # a new output_dir: no config of a run that never trained
                path.unlink(missing_ok=True)
            else:
                with replaced_atomically(path) as staging:
                    staging.write_bytes(previous)
        raise


def finished_run_results(output_dir: str | Path) -> dict[str, Any]:
    """The results of a run that had already finished, read from its files, in :func:`run_training`'s shape
    (``model`` is None: nothing was loaded)."""
    folder = Path(output_dir)
    train = read_json_object(folder / FINISHED_MARKER)
    evaluation = read_json_object(folder / "eval_results.json") or None
    final = folder / "samples" / "final"
    return {
        "output_dir": str(folder),
        "train": train,
        "eval": evaluation,
        "samples": sorted(str(p) for p in final.glob("*.wav")) if final.is_dir() else [],
        "model": None,
        "log_history": read_json_object(folder / "trainer_state.json").get("log_history", []),
        "hub_url": None,
        "already_finished": True,
    }
