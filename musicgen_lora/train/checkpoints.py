"""Checkpoints that survive being killed: which ones are complete, where to resume, what a new run may overwrite.

Trainer writes a checkpoint's files one after the other, ``trainer_state.json`` last, straight into
``checkpoint-N``, and its own ``get_last_checkpoint`` picks the highest N even when a kill left it half-written. Here a
checkpoint counts only when its state file parses and its weights are there, so a kill at any moment leaves the
previous checkpoint as the one a resumed run continues from."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

from ..config.arguments import RESOLVED_CONFIG_NAME
from ..errors import UserError

logger = logging.getLogger(__name__)


CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")


class CheckpointNotSaved(Exception):
    """Saving ``checkpoint`` failed (its partial folder is already removed); the cause is chained."""

    def __init__(self, checkpoint: Path, cause: BaseException) -> None:
        super().__init__(f"saving '{checkpoint}' failed: {cause}")
        self.checkpoint = checkpoint
        self.cause = cause


WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")


def checkpoint_folders(output_dir: str | Path) -> list[Path]:
    """``checkpoint-N`` folders of a run, oldest (smallest N) first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := CHECKPOINT_PATTERN.match(p.name))]
    return [path for _, path in sorted(found)]


def is_complete(checkpoint: Path) -> bool:
    """Whether a checkpoint was fully written: its trainer state parses, its weights exist, and every safetensors file
    in it is whole (its header parses and the file is as long as the header says)."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not any((checkpoint / name).is_file() for name in WEIGHT_FILES):
        return False
    return all(safetensors_intact(path) for path in checkpoint.rglob("*.safetensors"))


def safetensors_intact(path: Path) -> bool:
    """Whether a safetensors file is whole: an 8-byte header length, a JSON header, and exactly the tensor bytes the
    header's offsets promise (a truncated or overwritten file fails; bit flips inside tensors are not detected)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if length > size - 8:  # a file still being written (or garbage) can promise a header of exabytes
                return False
            header = json.loads(handle.read(length))
        end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
        return size == 8 + length + end
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return False


def newest_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest checkpoint that was fully written; newer broken ones are reported and skipped."""
    for checkpoint in reversed(checkpoint_folders(output_dir)):
        if is_complete(checkpoint):
            return checkpoint
        logger.warning("Skipping %s: it was not completely written (interrupted save) or is damaged", checkpoint)
    return None


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` is a training run's output folder (its config, or checkpoints in it), not a checkpoint."""
    return (folder / RESOLVED_CONFIG_NAME).is_file() or bool(checkpoint_folders(folder))


def checkpoint_step(checkpoint: str | Path) -> int:
    """The optimizer step a complete checkpoint was saved at (its trainer state's ``global_step``; 0 if unreadable)."""
    try:
        step = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8")).get("global_step")
    except (OSError, ValueError, AttributeError):
        return 0
    return step if isinstance(step, int) else 0


def resolve_resume(resume_from_checkpoint: str | bool | None, output_dir: str | Path) -> str | None:
    """The checkpoint a run continues from: None, the newest complete one (``true``), or the given path (a run's
    folder given as the path: its newest complete checkpoint).

    Raises:
        UserError: ``true`` but no complete checkpoint, or a path that is not a complete checkpoint.
    """
    if resume_from_checkpoint in (None, False, "", "false", "False"):
        return None
    asked_true = resume_from_checkpoint in (True, "true", "True")
    checkpoint = Path(output_dir) if asked_true else Path(str(resume_from_checkpoint)).expanduser()
    if asked_true or (checkpoint.is_dir() and is_run_folder(checkpoint)):  # a run's folder: its newest checkpoint
        newest = newest_complete_checkpoint(checkpoint)
        if newest is None:
            what = "is true but" if asked_true else "names a run's folder, and"
            raise UserError(
                f"resume_from_checkpoint {what} '{checkpoint}' holds no complete checkpoint; start without it (set "
                "save_steps to get checkpoints) or point resume_from_checkpoint at a checkpoint-N folder"
            )
        logger.info("Resuming from %s", newest)
        return str(newest)
    if not checkpoint.is_dir():
        raise UserError(f"resume_from_checkpoint '{checkpoint}' not found; give a checkpoint-N folder or true")
    if not is_complete(checkpoint):
        raise UserError(
            f"checkpoint '{checkpoint}' is incomplete or damaged: no readable trainer_state.json, or missing or "
            "truncated weights; "
            "resume from an earlier checkpoint or use resume_from_checkpoint true"
        )
    return str(checkpoint)


def keep_best(best_checkpoint: str | None, output_dir: str | Path) -> Path | None:
    """Copy the best checkpoint's model files (not its optimizer state) to ``output_dir/best``."""
    if not best_checkpoint or not Path(best_checkpoint).is_dir():
        return None
    target = Path(output_dir) / "best"
    staging = Path(output_dir) / ".best-staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for item in Path(best_checkpoint).iterdir():
        if item.is_file() and item.suffix in (".json", ".safetensors", ".model", ".txt"):
            shutil.copy2(item, staging / item.name)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
