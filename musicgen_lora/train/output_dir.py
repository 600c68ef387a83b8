"""Nothing in ``output_dir`` lost: one run at a time, files this project did not write refused, and a run being
replaced (``overwrite_output_dir``) moved aside until the new run has succeeded.

- **One run per folder**: the main process holds the lock ``output_dir/.musicgen-lora.lock`` (an operating-system
  lock, :func:`~musicgen_lora.files.holding_lock`, with its process id and host written in it) while it trains; a
  second run into the same folder is refused, naming that process, while it lives. The system frees the lock of a
  process that is gone (killed, machine restarted): the next run takes it, with a notice.
- **Files it did not write**: the names a run writes (adapter, configs, tokenizer, card, checkpoints, samples...)
  must not belong to something else: a ``README.md`` that is not a card of this project, or such files without a
  previous run of this project around them, make the run refuse before any work.
- **Overwrite, safely**: with ``overwrite_output_dir`` the previous run's files move to ``output_dir/previous-run``
  (``previous-run-2``... if that exists); they are deleted only once the new run has succeeded. If it fails before
  writing anything, they move back; if it fails later (its checkpoints may be worth resuming), they stay aside and
  the error says where.
- ``output_dir`` may not be the training data's folder, lie inside it, or contain it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ..config.arguments import RESOLVED_CONFIG_NAME
from ..errors import UserError
from ..files import LOCK_NAME, check_apart_from_data, ensure_writable_folder, put_back, run_lock, set_aside
from ..hub.card import CARD_NAME, is_our_card
from .checkpoints import checkpoint_folders
from .progress_log import PROGRESS_FILE

logger = logging.getLogger(__name__)

__all__ = ["LOCK_NAME", "run_lock", "check_output_dir", "previous_run", "set_previous_run_aside", "settle_previous_run"]
PREPARED_DIR_NAME = "prepared_data"  # reused by the next run (its own fingerprint says when it is stale); never moved
# Files that show a folder already holds a run of this project.
RUN_MARKERS = ("adapter_model.safetensors", "model.safetensors", "trainer_state.json", RESOLVED_CONFIG_NAME)
# Everything a training run writes into output_dir (besides checkpoint-N/ and prepared_data/).
RUN_FILES = (
    *RUN_MARKERS, "adapter_config.json", "adapter_model.bin", "model.safetensors.index.json", "config.json",
    "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "spiece.model",
    "processor_config.json", "preprocessor_config.json", "training_args.bin", "train_results.json",
    "eval_results.json", "all_results.json", "loss_curves.png", "memorisation.json", PROGRESS_FILE, CARD_NAME, "best",
    "samples",
    "runs", "evaluation",
)  # fmt: skip


def check_output_dir(output_dir: str, dataset_name: str | None, overwrite: bool, resuming: bool) -> None:
    """Refuse a folder where the run would lose or mix something, and check it is writable (changes nothing in it).

    Raises:
        UserError: empty or not a folder; the training data's folder (or inside it, or holding it); files this project
            did not write where it would write; a previous run without overwrite or resume; not writable.
    """
    if not str(output_dir).strip():
        raise UserError("output_dir is empty; set it to the folder where the adapter and checkpoints should go")
    folder = Path(output_dir).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"output_dir '{folder}' is a file, not a folder; choose a folder (it is created if missing)")
    check_apart_from_data(folder, dataset_name)
    card = folder / CARD_NAME
    if card.is_file() and not is_our_card(card):
        raise UserError(
            f"output_dir '{folder}' holds a {CARD_NAME} that musicgen-lora did not write (the model card would replace "
            "it); move it elsewhere or choose another output_dir"
        )
    previous = previous_run(folder)
    if previous and not resuming and not overwrite:  # train.rerun decides first; this guards other callers
        raise UserError(
            f"output_dir '{folder}' already holds a previous run ({', '.join(previous[:3])}); continue it with "
            "resume_from_checkpoint true, start over with overwrite_output_dir true (the previous run is kept aside "
            "until the new one succeeds), or choose another output_dir"
        )
    foreign = [name for name in RUN_FILES if (folder / name).exists()] if not previous else []
    if foreign:
        raise UserError(
            f"output_dir '{folder}' holds {', '.join(foreign[:4])}, which a run writes, but no run of musicgen-lora; "
            "move them elsewhere or choose another output_dir"
        )
    ensure_writable_folder(folder, "output_dir")


def previous_run(folder: Path) -> list[str]:
    """The names that show ``folder`` holds a run of this project (checkpoints, weights, state, its config)."""
    if not folder.is_dir():
        return []
    return [p.name for p in checkpoint_folders(folder)] + [n for n in RUN_MARKERS if (folder / n).exists()]


# ------------------------------------------------------------------------------------------------ overwrite


def set_previous_run_aside(output_dir: str | Path) -> Path | None:
    """Move the previous run's files into ``output_dir/previous-run[-N]`` (:func:`~musicgen_lora.files.set_aside`);
    returns that folder (None: no previous run)."""
    folder = Path(output_dir)
    if not previous_run(folder):
        return None
    aside = set_aside(folder, _run_files(folder), "run")
    logger.info("The previous run in %s is kept in %s until this run has succeeded", folder, aside)
    return aside


def _run_files(folder: Path) -> list[Path]:
    return [p for p in checkpoint_folders(folder)] + [folder / n for n in RUN_FILES if (folder / n).exists()]


def settle_previous_run(aside: Path | None, output_dir: str | Path, succeeded: bool) -> str:
    """After the new run: delete the previous run (it succeeded), move it back (it failed before writing anything),
    or leave it aside. Returns what happened, for the error message of a failed run ('' when nothing to say)."""
    if aside is None:
        return ""
    folder = Path(output_dir)
    if succeeded:
        shutil.rmtree(aside)
        logger.info("Deleted the previous run (%s): this run has replaced it", aside)
        return ""
    # the config and the progress log the new run wrote when it started are not worth keeping: they go, and the
    # previous run's come back
    started = (RESOLVED_CONFIG_NAME, PROGRESS_FILE)
    if not [path for path in _run_files(folder) if path.name not in started]:
        for name in started:
            (folder / name).unlink(missing_ok=True)
        put_back(aside, folder)
        return f"the previous run in '{folder}' is back in place"
    return f"the previous run is kept in '{aside}'"
