"""The bad-input catalogue's framework: a case is data (its command, the words it is run with, the folders it sets up
and the message it must end with); :func:`run_case` runs the command's real ``main(argv)`` in-process and checks the
promise every command makes: exit status 2 (130 after Ctrl-C), exactly one ``error: ...`` line and it is the last
one, no traceback, and every file that was in the case's folders before (the earlier run, the data, the configs)
byte-identical afterwards."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pathlib
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import soundfile as sf

from ..conftest import RATE, base_argv, tone

# Run only a step or two when a case unexpectedly gets as far as training; the data options are those of the
# session's trained_run, so its prepared_data/ is reused as it is.
TRAIN_TAIL = ["--overwrite_output_dir", "true", "--max_steps", "1", "--max_train_samples", "4",
              "--per_device_train_batch_size", "4", "--logging_steps", "1"]  # fmt: skip


@dataclass
class World:
    """The folders one case works with: its own folder ``tmp`` (watched whole) with copies, made when first asked
    for, of the earlier finished run and of the corpus; and the session's tiny model (watched too) and codes cache."""

    tmp: Path
    model: Path
    shared_corpus: Path
    cache: Path
    trained_run: Path
    other_checkpoint_factory: Callable[[], Path]
    monkeypatch: pytest.MonkeyPatch
    resources: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)  # closed when the case ends

    @functools.cached_property
    def run(self) -> Path:
        """A copy of a finished good run: every training case aims at it with overwrite_output_dir true."""
        return Path(shutil.copytree(self.trained_run, self.tmp / "run"))

    @functools.cached_property
    def corpus(self) -> Path:
        """A copy of the 8-clip corpus, for cases that change it."""
        return Path(shutil.copytree(self.shared_corpus, self.tmp / "corpus"))

    @functools.cached_property
    def other_checkpoint(self) -> Path:
        """A complete checkpoint trained on a tiny MusicGen of another codebook size."""
        return self.other_checkpoint_factory()

    def path(self, name: str) -> Path:
        return self.tmp / name

    def write(self, name: str, content: str | bytes) -> Path:
        """A file in the case's folder (folders created); text is written as UTF-8."""
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    def wav(self, name: str, seconds: float = 1.0, freq: float = 330.0) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, tone(seconds, freq), RATE)
        return path

    def songs(self, name: str = "songs", files: int = 2, metadata: str | bytes | None = None) -> Path:
        """A folder of ``files`` short tones (a.wav, b.wav, ...), with ``metadata`` as its metadata.jsonl."""
        folder = self.tmp / name
        for index in range(files):
            self.wav(f"{name}/{'abcdefgh'[index]}.wav", 2.0 + index * 0.5, 220.0 * (index + 1))
        if metadata is not None:
            self.write(f"{name}/metadata.jsonl", metadata)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def train(self, *extra: str, data: Path | None = None, out: Path | None = None) -> list[str]:
        """A quick training command line aimed at the earlier run, with ``extra`` words last (they win)."""
        return base_argv(self.model, data or self.shared_corpus, out or self.run, self.cache) + TRAIN_TAIL + list(extra)

    def deny_read(self, path: Path) -> Path:
        """See :func:`deny_read` (undone when the case ends)."""
        return deny_read(path, self.monkeypatch)


def deny_read(path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make ``path`` unreadable to this process, as ``chmod 000`` does for a normal user; as root, who reads
    everything, by making the checks and reads of exactly that path fail the way they do for a user."""
    path.chmod(0)
    if os.geteuid() == 0:
        target = os.path.abspath(path)
        access, read_bytes = os.access, pathlib.Path.read_bytes

        def denied_access(candidate, mode, *args, **kwargs):
            return False if os.path.abspath(candidate) == target else access(candidate, mode, *args, **kwargs)

        def denied_read(self_path):
            if os.path.abspath(self_path) == target:
                raise PermissionError(13, "Permission denied", str(self_path))
            return read_bytes(self_path)

        monkeypatch.setattr(os, "access", denied_access)
        monkeypatch.setattr(pathlib.Path, "read_bytes", denied_read)
    return path


@dataclass(frozen=True)
class Case:
    """One bad input: ``argv(world)`` gives the command's words (after setting up what it needs); the command must
    fail with ``code`` and a last line matching ``expect`` (``slow``: the case takes more than a few seconds).

    ``shared_world``: the name of a world that cases failing while their options are parsed (before anything is
    written) share, so each does not pay for its own copies of the run and corpus; None: the case's own world."""

    command: str
    argv: Callable[[World], list[str]]
    expect: str
    code: int = 2
    slow: bool = False  # it trains or decodes first: left out of the everyday tier
    shared_world: str | None = None


APPEND_ONLY = ("progress.jsonl",)  # a run's event log: a later attempt (a failed resume too) appends its lines


def tree_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (relative POSIX path -> hex digest); an append-only log is kept whole
    (``"log:" + its text``), so that an appended line is no change but any other edit is."""
    hashes = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            name = path.relative_to(folder).as_posix()
            if path.name in APPEND_ONLY:
                hashes[name] = "log:" + path.read_text(encoding="utf-8", errors="replace")
                continue
            with open(path, "rb") as handle:
                hashes[name] = hashlib.file_digest(handle, "sha256").hexdigest()
    return hashes


def changed_files(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Files that were there before and are now missing or different (new files are allowed; an append-only log may
    grow, keeping every earlier line)."""
    return [
        f"{name} ({'missing' if name not in after else 'changed'})"
        for name, digest in before.items()
        if after.get(name) != digest and not (digest.startswith("log:") and after.get(name, "").startswith(digest))
    ]


def check_failure(code: object, out: str, err: str, expected_code: int, expect: str) -> str:
    """The last line of stderr once the promise is checked: ``expected_code``, one ``error:`` line, last, matching
    ``expect``, no traceback anywhere."""
    assert "Traceback" not in err and "Traceback" not in out, err[-3000:]
    assert code == expected_code, f"exit status {code!r}, expected {expected_code}; stderr ends: {err[-1500:]}"
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, f"expected exactly one 'error: ' line, got {errors or err[-1500:]}"
    assert lines[-1] == errors[0], f"the error is not the last line: {lines[-3:]}"
    assert re.search(expect, errors[0]), f"{errors[0]!r} does not match {expect!r}"
    return errors[0]


def run_case(case: Case, world: World, main: Callable[[list[str]], object], capsys: pytest.CaptureFixture,
             watched: dict[str, Path]) -> str:  # fmt: skip
    """Run one case's command in-process (``main(argv)``, SystemExit caught) and check its promise (see the module
    docstring) and that no earlier file under ``watched`` changed; returns the error line."""
    argv = case.argv(world)
    before = {label: tree_hashes(folder) for label, folder in watched.items()}
    capsys.readouterr()
    try:
        main(argv)
        code: object = 0
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    line = check_failure(code, captured.out, captured.err, case.code, case.expect)
    for label, folder in watched.items():
        changed = changed_files(before[label], tree_hashes(folder))
        assert not changed, f"earlier files in the {label} folder changed: {changed[:5]}"
    return line
