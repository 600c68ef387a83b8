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
from .checkpoints import newest_complete_checkpoint, resolve_resume
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

    ``overwrite`` starts over and an explicit ``resume_from_checkpoint`` resumes, whatever the saved config says
    (its differences are logged); otherwise the saved config must match ``requested``.

    Raises:
        UserError: the saved config differs (the keys named); a previous run without a saved config (written by a
            version before this rule) or with a damaged one; an explicit checkpoint that is missing or incomplete.
    """
    folder = Path(output_dir).expanduser()
    saved_path = folder / RESOLVED_CONFIG_NAME
    explicit = resolve_resume(resume_from_checkpoint, folder)
    if explicit is not None or overwrite:
        if explicit is not None and saved_path.is_file():
            changed = config_differences(read_json_object(saved_path), requested)
            if changed:
                logger.warning("Resuming %s with changed options: %s", explicit, "; ".join(changed))
        return RerunPlan(resume=explicit, start_over=overwrite and explicit is None)
    if not previous_run(folder):
        return RerunPlan()
    finished = (folder / FINISHED_MARKER).is_file() and any((folder / name).is_file() for name in WEIGHT_NAMES)
    checkpoint = None if finished else newest_complete_checkpoint(folder)
    if not finished and checkpoint is None:  # nothing to continue: whatever its config, nothing is lost
        logger.info(
            "The run in %s wrote no complete checkpoint: starting over (kept aside until this run succeeds)", folder
        )
        return RerunPlan(start_over=True)
    state = "finished" if finished else f"stopped at {checkpoint.name}"
    saved = read_json_object(saved_path)
    if not saved:  # missing (a version before this rule), or damaged by hand: no config to compare with
        which = (
            f"whose {RESOLVED_CONFIG_NAME} is not a readable JSON object"
            if saved_path.is_file()
            else f"without its {RESOLVED_CONFIG_NAME}"
        )
        raise UserError(
            f"output_dir '{folder}' holds a {state} run {which}, so it cannot be told "
            "whether this is the same run; continue it with resume_from_checkpoint true, start over with "
            "overwrite_output_dir true (the previous run is kept aside until the new one succeeds), or choose another "
            "output_dir"
        )
    changed = config_differences(saved, requested)
    if changed:
        shown = "; ".join(changed[:4]) + ("; ..." if len(changed) > 4 else "")
        raise UserError(
            f"output_dir '{folder}' holds a {state} run with another config ({shown}); run the same config to "
            "continue it, add resume_from_checkpoint true to continue it with the new values, set "
            "overwrite_output_dir true to start over (the previous run is kept aside until the new one succeeds), or "
            "choose another output_dir"
        )
    if finished:
        return RerunPlan(finished=True)
    logger.info("%s detected, resuming (the same config as the run that wrote it)", checkpoint.name)
    return RerunPlan(resume=str(checkpoint))


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
