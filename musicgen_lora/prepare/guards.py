"""What keeps a preparation from losing or mixing earlier work: ``prepare`` never replaces a run's prepared data with
data prepared otherwise, a stopped run is not continued on changed data, ``prepared_data`` is replaced whole or not
at all, and a full disk ends in one line."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config.arguments import RESOLVED_CONFIG_NAME, ParsedConfig
from ..errors import UserError
from ..files import cache_root
from .reuse import FINGERPRINT_NAME, PREPARED_DIR_NAME, changed_tracks, fingerprint_options


def check_prepared_data_is_free(parsed: ParsedConfig) -> None:
    """Refuse to replace the prepared data of a run that ``output_dir`` holds (its ``finetune_config.json`` is
    there) with data prepared with other options, unless ``overwrite_output_dir`` says to start over.

    Raises:
        UserError: the options that differ, old -> new.
    """
    folder = Path(parsed.training.output_dir).expanduser()
    if parsed.training.overwrite_output_dir or not (folder / RESOLVED_CONFIG_NAME).is_file():
        return
    try:
        stored = json.loads((folder / PREPARED_DIR_NAME / FINGERPRINT_NAME).read_text(encoding="utf-8"))
        before = stored["options"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # nothing prepared (or not readable): nothing of the run's to lose
    now = json.loads(json.dumps(fingerprint_options(parsed)))
    changed = [
        f"{key}: {before.get(key)} -> {now.get(key)}"
        for key in sorted({*before, *now})
        if before.get(key) != now.get(key)
    ]
    if changed:
        shown = "; ".join(changed[:4]) + ("; ..." if len(changed) > 4 else "")
        raise UserError(
            f"output_dir '{folder}' holds a run whose prepared_data was prepared with other options ({shown}); "
            "prepare into another output_dir, or set overwrite_output_dir true to replace it for a new run"
        )


def refuse_changed_data(folder: Path, current: dict[str, Any], checkpoint: str, output_dir: str) -> None:
    """Refuse to continue a stopped run (from ``checkpoint``, the same command) on source files or captions that
    changed since its data was prepared (``folder``: its prepared_data, ``current``: the fingerprint now).

    Raises:
        UserError: naming the tracks gone, new or changed.
    """
    try:
        stored = json.loads((folder / FINGERPRINT_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # nothing to compare with
    if stored.get("format") != current.get("format") or stored.get("options") != current.get("options"):
        return  # another version, or options the resume was told about: prepared again as it says
    changed = changed_tracks(stored, current)
    if changed is None:
        return
    raise UserError(
        f"output_dir '{output_dir}' holds a run stopped at {Path(checkpoint).name} that was trained on other data "
        f"({changed}); restore the data to continue it, add resume_from_checkpoint true to continue it on the new "
        "data, set overwrite_output_dir true to start over (the previous run is kept aside until the new one "
        "succeeds), or choose another output_dir"
    )


@contextlib.contextmanager
def staged_folder(folder: Path) -> Iterator[Path]:
    """A new, empty folder beside ``folder`` to write into; it replaces ``folder`` whole when the block succeeds and
    is removed when it fails (the earlier ``folder`` stays as it was)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f".{folder.name}.new-{os.getpid()}")
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        if folder.exists():
            os.replace(folder, old)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def is_disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and (err.errno == errno.ENOSPC or "No space left on device" in str(err))


@contextlib.contextmanager
def disk_full_as_user_error(parsed: ParsedConfig) -> Iterator[None]:
    """A full disk while preparing, as one line naming the folder (data_cache_dir or output_dir) and the fix.

    Raises:
        UserError: the disk filled up.
    """
    try:
        yield
    except OSError as err:
        if not is_disk_full(err):
            raise
        cache = cache_root(parsed.data.data_cache_dir).resolve()
        written = Path(str(err.filename)).resolve() if err.filename else None
        if written is not None and (written == cache or cache in written.parents):
            where = f"data_cache_dir '{parsed.data.data_cache_dir or cache}'"
        else:
            where = f"output_dir '{parsed.training.output_dir}' ({PREPARED_DIR_NAME})"
        raise UserError(
            f"disk full while preparing the data into {where}; free some space (or choose another folder), then run "
            "the same command again: what was finished is kept in data_cache_dir, nothing half-written is"
        ) from None
