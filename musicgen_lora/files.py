"""Files, for every stage: what identifies a file or a folder of weights, writes that an interruption never leaves
half-done, saved datasets, where caches live, telling a local path from a Hub id, a folder's lock, and earlier
results kept aside while a command writes new ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import datasets
from filelock import FileLock, Timeout
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from .errors import UserError

logger = logging.getLogger(__name__)

# Hub repository ids: 'name' or 'org/name', letters, digits, '_', '.', '-' (the Hub's own rule).
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")
# A Hub cache folder names its repository: .../models--facebook--musicgen-small/snapshots/<sha>
_CACHE_FOLDER = re.compile(r"^models--(?P<org>[^/]+?)--(?P<name>[^/]+)$")


# ------------------------------------------------------------------------------------------------ identities


def file_identity(source: Any) -> list[Any] | None:
    """What identifies an audio source's content, cheaply: ``["bytes", sha256]`` for in-memory bytes (a Hub
    dataset's audio), ``[absolute path, size, modification time in ns]`` for a file that exists, else None.

    Args:
        source: a path, or a ``datasets`` ``Audio(decode=False)`` dict (``{"path", "bytes"}``).
    """
    if isinstance(source, dict) and source.get("bytes"):
        return ["bytes", hashlib.sha256(source["bytes"]).hexdigest()]
    path = source.get("path") if isinstance(source, dict) else source
    if not isinstance(path, (str, os.PathLike)) or not os.path.exists(path):
        return None
    stat = os.stat(path)
    return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]


def files_fingerprint(path: str | Path) -> str:
    """A cheap identity of local weights (a file, or a folder's files): names, sizes and modification times, so a new
    or re-downloaded checkpoint gets a new fingerprint without reading hundreds of MB of weights."""
    target = Path(path).expanduser().resolve()
    entries = []
    for file in sorted(target.iterdir()) if target.is_dir() else [target]:
        if file.is_file():
            stat = file.stat()
            entries.append([file.name, stat.st_size, stat.st_mtime_ns])
    return hashlib.sha256(json.dumps([os.fspath(target), entries]).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ file modes


def _umask() -> int:
    try:  # Linux says it without changing it (os.umask would, for a moment, in every thread)
        with open("/proc/self/status", encoding="ascii") as status:
            return next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def readable_weights(folder: str | Path) -> list[Path]:
    """Give the ``.safetensors`` files under ``folder`` the mode any other written file gets (``0o666 & ~umask``).

    safetensors 0.8 writes through a temporary file that is always created ``0600`` and then renamed
    (safetensors#782): the adapter and a merged model were readable by their owner only, unlike the configs and
    the card beside them, so another user (a shared machine, a container) could not load them. Returns the files
    changed.
    """
    mode = 0o666 & ~_umask()
    changed = []
    for path in Path(folder).rglob("*.safetensors"):
        if path.is_file() and (path.stat().st_mode & 0o777) != mode and path.stat().st_uid == os.getuid():
            path.chmod(mode)
            changed.append(path)
    return changed


# ------------------------------------------------------------------------------------------------ atomic writes


@contextlib.contextmanager
def replaced_atomically(path: str | Path) -> Iterator[Path]:
    """A staging path beside ``path`` to write to; it replaces ``path`` in one rename when the block succeeds (and is
    removed when it fails), so readers, other processes and a kill at any moment never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield staging
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 text to ``path`` atomically (see :func:`replaced_atomically`)."""
    with replaced_atomically(path) as staging:
        staging.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | Path, value: Any, indent: int | None = None) -> None:
    """Write ``value`` as JSON to ``path`` atomically (see :func:`replaced_atomically`)."""
    atomic_write_text(path, json.dumps(value, indent=indent) + ("\n" if indent is not None else ""))


def read_user_text(path: str | Path, what: str) -> str:
    """A text file the user wrote (metadata, captions, prompts, a config), decoded as UTF-8; a byte-order mark (as
    Excel's "CSV UTF-8" writes) is accepted and dropped.

    Args:
        what: what the file is, for the message (e.g. "metadata file").

    Raises:
        UserError: missing, not a file, not readable (permissions named as such), or not UTF-8 text (the first bad
            byte and its position are named).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{what} '{path}' not found; check the path") from None
    except IsADirectoryError:
        raise UserError(f"{what} '{path}' is a folder, not a file; give the file's path") from None
    except PermissionError:
        raise UserError(f"{what} '{path}' cannot be read: permission denied; fix its permissions (chmod +r)") from None
    except OSError as err:
        raise UserError(f"{what} '{path}' cannot be read ({err.strerror}); check the file") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(
            f"{what} '{path}' is not UTF-8 text (byte 0x{data[err.start]:02x} at position {err.start}); save it as "
            "UTF-8 (e.g. 'CSV UTF-8' in a spreadsheet, or iconv -f latin1 -t utf-8)"
        ) from None


def read_json_object(path: str | Path) -> dict[str, Any]:
    """The JSON object in ``path``; {} when the file is missing, unreadable, not JSON or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# ------------------------------------------------------------------------------------------------ datasets on disk


def is_saved_dataset(folder: str | Path) -> bool:
    """A complete folder written by ``datasets.Dataset.save_to_disk`` (its info and state files are written last)."""
    folder = Path(folder).expanduser()
    return (folder / "dataset_info.json").is_file() and (folder / "state.json").is_file()


def save_dataset_atomically(dataset: datasets.Dataset, target: Path, replace: bool = False) -> None:
    """``save_to_disk`` next to ``target`` and rename, so an interruption never leaves a half-written folder.

    Args:
        replace: replace a complete ``target`` (else it is kept: another process wrote the same cache entry).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        dataset.save_to_disk(str(staging))
        if target.exists() and (replace or not is_saved_dataset(target)):
            shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    except OSError:
        if not is_saved_dataset(target):
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def set_aside(folder: str | Path, earlier: list[Path], label: str) -> Path | None:
    """Move ``earlier`` (files and folders directly in ``folder``) into ``folder/previous-<label>``, or
    ``previous-<label>-2``, ``-3``... when that exists; returns that folder (None, and nothing moved, without any)."""
    if not earlier:
        return None
    folder = Path(folder)
    aside = folder / f"previous-{label}"
    number = 1
    while aside.exists():
        number += 1
        aside = folder / f"previous-{label}-{number}"
    aside.mkdir()
    for path in earlier:
        os.replace(path, aside / path.name)
    return aside


def put_back(aside: Path, folder: str | Path) -> None:
    """Move everything :func:`set_aside` put in ``aside`` back into ``folder``, and remove ``aside``."""
    for path in aside.iterdir():
        os.replace(path, Path(folder) / path.name)
    aside.rmdir()


@contextlib.contextmanager
def kept_aside(
    folder: str | Path, earlier: list[Path], label: str, written: Callable[[], list[Path]]
) -> Iterator[None]:
    """An earlier result's files, moved out of the way while a command writes its new one into the same folder.

    They wait in ``folder/previous-<label>`` (:func:`set_aside`), so nothing stale mixes with the new result and
    nothing is lost if the command fails or is killed: they are deleted once the block succeeds, and put back (in
    place of what ``written()`` lists: the failed command's partial files) when it fails.

    Args:
        earlier: files and folders directly in ``folder`` (none: nothing is moved).
        label: what they are, for the folder's name and the log ("generation", "evaluation").
        written: the paths the command writes, called after a failure.
    """
    aside = set_aside(folder, earlier, label)
    if aside is None:
        yield
        return
    logger.info("The earlier %s in %s waits in %s until this one has succeeded", label, folder, aside)
    try:
        yield
    except BaseException:
        for path in written():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        put_back(aside, folder)
        logger.warning("The %s failed: the earlier one is back in %s", label, folder)
        raise
    shutil.rmtree(aside)


def ensure_writable_folder(folder: str | Path, what: str) -> Path:
    """Create ``folder`` if needed and check that this process can write there (a probe file, per process: every
    process of a launch checks at once).

    Args:
        what: how the user names it, for the message (e.g. "output_dir", "--out_dir").

    Raises:
        UserError: it is a file, or cannot be created or written to.
    """
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{what} '{folder}' is a file, not a folder; choose a folder (it is created if missing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise UserError(
            f"{what} '{folder}' is not writable ({err.strerror}); choose a folder you can write to"
        ) from None
    return folder


def check_apart_from_data(output_dir: str | Path, dataset_name: str | None) -> None:
    """Refuse an output folder that is a local training-data folder, lies inside one, or holds one.

    Raises:
        UserError: they overlap (adapters, samples and checkpoints would mix with the audio, and a later run could
            train on its own samples).
    """
    if not dataset_name or not Path(dataset_name).expanduser().is_dir():
        return
    data, out = Path(dataset_name).expanduser().resolve(), Path(output_dir).expanduser().resolve()
    if data == out or data in out.parents or out in data.parents:
        raise UserError(
            f"output_dir '{output_dir}' and the training data '{dataset_name}' overlap (adapters, samples and "
            "checkpoints would mix with the audio, and a later run could train on its own samples); choose an "
            "output_dir outside the data folder"
        )


def cache_root(data_cache_dir: str | None) -> Path:
    """Where encoded codes and per-file measurements are cached: ``data_cache_dir``, else
    ``$HF_HOME/musicgen_lora`` (``~/.cache/huggingface/musicgen_lora``)."""
    if data_cache_dir:
        return Path(data_cache_dir).expanduser()
    hf_home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(hf_home) / "musicgen_lora"


# ------------------------------------------------------------------------------------------------ one writer per folder

LOCK_NAME = ".musicgen-lora.lock"


@contextlib.contextmanager
def run_lock(output_dir: str | Path, active: bool = True, what: str = "training") -> Iterator[None]:
    """Hold ``output_dir``'s lock for a block: a training run, or ``prepare`` writing its ``prepared_data``
    (``active`` False: another process of the same launch holds it). The lock is ``holding_lock``'s.

    Args:
        what: who holds it, for the message another command gets ("training", "prepare").

    Raises:
        UserError: another process holds it.
    """
    if not active:
        yield
        return

    def refusal(holder: dict[str, Any]) -> str:
        who = f" (process {holder['pid']} on {holder.get('host', 'an unknown host')})" if holder else ""
        name = "preparation" if holder.get("what") == "prepare" else "training run"
        return (
            f"another {name}{who} is writing to '{output_dir}'; wait for it to finish, stop it, or choose another "
            "output_dir"
        )

    with lock_or_refuse(Path(output_dir).expanduser() / LOCK_NAME, what, refusal) as left:
        if left:
            logger.warning("Taking over the lock of a run that ended without releasing it (process %s)", left["pid"])
        yield


@contextlib.contextmanager
def lock_or_refuse(path: Path, what: str, refusal: Callable[[dict[str, Any]], str]) -> Iterator[dict[str, Any]]:
    """:func:`holding_lock` for a command: held for the block, or a UserError whose message is ``refusal(holder)``
    (the holder's record, ``{}`` when unreadable). Yields what a previous holder that died left in the file."""
    held = contextlib.ExitStack()
    try:
        left = held.enter_context(holding_lock(path, what=what))
    except LockHeld as refused:
        raise UserError(refusal(refused.holder)) from None
    with held:
        yield left


# ------------------------------------------------------------------------------------------------ path or Hub id


def looks_like_hub_id(name: str | None) -> bool:
    """``org/name`` or ``name`` as the Hub spells repository ids (no path syntax; huggingface_hub's own rules: no
    ``--`` or ``..``, no ``.git`` ending)."""
    if not name or not _HUB_ID.match(name) or name.endswith((".", "-")):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def is_local_path(value: Any, suffixes: tuple[str, ...] = ()) -> bool:
    """Whether ``value`` names a file or folder on this machine rather than a Hub id: it exists, or it is written as
    a path (absolute, ``~``/``.``-relative, more than one ``/``, the OS separator), or it ends in one of ``suffixes``
    (file endings no Hub id has)."""
    if not isinstance(value, str) or not value:
        return False
    return (
        value.startswith(("/", ".", "~"))
        or os.path.isabs(value)
        or value.count("/") > 1
        or (os.sep != "/" and os.sep in value)
        or value.lower().endswith(suffixes)
        or Path(value).expanduser().exists()
    )


def hub_id_of(model_name_or_path: str | None, base_model_id: str | None = None) -> str | None:
    """The Hub id of a base model, or None when only a local folder is known.

    ``base_model_id`` wins; else ``model_name_or_path`` when it is a Hub id (and not a local path); else the id
    encoded in a Hub cache folder (``.../models--facebook--musicgen-small/snapshots/<sha>``).
    """
    if base_model_id:
        return base_model_id
    if not model_name_or_path:
        return None
    if not is_local_path(model_name_or_path) and looks_like_hub_id(model_name_or_path):
        return model_name_or_path
    for part in Path(model_name_or_path).expanduser().absolute().parts:
        match = _CACHE_FOLDER.match(part)
        if match:
            return f"{match['org']}/{match['name']}"
    return None


# ------------------------------------------------------------------------------------------------ locks


class LockHeld(Exception):
    """Another process holds the lock; ``holder`` is what it wrote, ``{"pid", "host"}`` (empty when unreadable)."""

    def __init__(self, holder: dict[str, Any]) -> None:
        super().__init__(f"held by {holder or 'an unknown process'}")
        self.holder = holder


def _holder_record(text: bytes) -> dict[str, Any]:
    try:
        record = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}
    return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else {}


def _read_holder(path: Path) -> dict[str, Any]:
    try:
        return _holder_record(path.read_bytes())
    except OSError:
        return {}


@contextlib.contextmanager
def holding_lock(path: str | Path, what: str | None = None) -> Iterator[dict[str, Any]]:
    """Hold an exclusive lock on the file ``path`` for the block, never waiting for it.

    The lock is the operating system's (``filelock``: ``flock`` on Unix), so it is taken atomically and freed by the
    system when its process ends, however it ends (a crash, ``kill -9``, a restart): no stale lock can block a later
    run. The holder writes its process id and host into the file, for a refused process to name it, and removes the
    file when it releases the lock (while still holding it: filelock makes a process that opened the old file try
    again). On a network filesystem the lock holds across machines where the filesystem supports ``flock``.

    Args:
        what: written beside the process id, for a refused process to say who holds it.

    Yields:
        What a previous holder left in the file (``{"pid", "host"}``; ``{}`` when nothing): a holder that ended
        without releasing the lock.

    Raises:
        LockHeld: another process holds it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    left: dict[str, Any] = {}

    def write_holder(fd: int) -> None:  # filelock passes the locked file's descriptor once the lock is held
        os.lseek(fd, 0, os.SEEK_SET)
        left.update(_holder_record(os.read(fd, 4096)))
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), **({"what": what} if what else {})}
        os.write(fd, json.dumps(holder).encode("utf-8"))

    lock = FileLock(path, timeout=0, on_acquired=write_holder)
    try:
        lock.acquire()
    except Timeout:
        raise LockHeld(_read_holder(path)) from None
    try:
        yield left
    finally:
        with contextlib.suppress(OSError):  # (Windows cannot remove an open file; filelock removes it there)
            path.unlink()
        lock.release()
