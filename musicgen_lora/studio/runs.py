"""The run manager: the project's long commands in their own processes, one at a time per project.

A training (or preparation) run is ``python -m musicgen_lora.train CONFIG.json`` (``python -m musicgen_lora.prepare
CONFIG.json``), commands of the installed package, started in a new session under a small parent
(:mod:`.supervise`) that records its exit status; its stdout and stderr go to a log file in the project. The page
reads that log and the run's ``progress.jsonl`` only, so it stays responsive, a crash of training is a line in the
log and an exit status, and a run survives a restart of the studio: the next studio finds it through its lock file,
shows it again, and reads how it ended from the status file.

One run per project: a lock file (``studio/run.lock``, created with ``O_EXCL``, holding the process id) refuses a
second start from another tab, another studio or a double click; a lock whose process is gone is stale and removed.
Stop sends SIGINT to the run's process group, as Ctrl-C in a terminal would: training saves a checkpoint and exits
(status 130); Resume starts the same command with ``--resume_from_checkpoint true``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import backend
from .progress import START_MARKER

PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # the folder holding musicgen_lora (a checkout or site-packages)
LOCK_NAME = "run.lock"
STATE_NAME = "run-state.json"
EXIT_NAME = "run-exit.json"  # written by .supervise when the command ends
UNKNOWN_EXIT = -1  # the run's parent vanished without writing its status (killed with SIGKILL, a machine restart)
STOPPED_CODES = (130, -signal.SIGINT)  # exit status after Ctrl-C: the training's own (130), or Python's default


def command_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the project's commands: the package importable from any folder, unbuffered output, and
    Trainer's progress bar drawn at every step (read by :mod:`.progress`)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_PARENT), *filter(None, [env.get("PYTHONPATH")])])
    env.update({"PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "0", "HF_HUB_DISABLE_TELEMETRY": "1"})
    env.update(extra or {})
    return env


def package_command(module: str, *words: str) -> list[str]:
    """``[python, -m, musicgen_lora.MODULE, *words]``: a command of the package the studio runs from (installed or a
    checkout), never a script file of a checkout."""
    return python_command("-m", f"musicgen_lora.{module}", *words)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True  # no /proc (macOS): existence is all we can tell


@dataclass
class RunState:
    """A project's latest run, as saved in ``studio/run-state.json``."""

    kind: str  # "train" or "prepare"
    argv: list[str]
    pid: int
    started: float
    log: str
    fresh_since: float  # when the run last started from scratch (files older than that belong to a replaced run)
    returncode: int | None = None
    ended: float | None = None
    stop_requested: bool = False
    resumed_from: str | None = None  # the checkpoint a Resume continues from
    history: list[str] = field(default_factory=list)  # earlier starts of the same run (resumes), for the record

    @property
    def running(self) -> bool:
        return self.returncode is None and pid_alive(self.pid)

    @property
    def stopped(self) -> bool:
        return self.returncode in STOPPED_CODES or (self.stop_requested and self.returncode is not None)


class RunManager:
    """Starts, watches and stops the runs of the projects in one folder (one manager per studio process)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()  # makes check-lock-and-start atomic between the page's worker threads
        self._processes: dict[Path, subprocess.Popen] = {}

    # ------------------------------------------------------------------------------------------ state on disk

    @staticmethod
    def _studio_dir(project_dir: Path) -> Path:
        folder = project_dir / "studio"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def state(self, project_dir: Path) -> RunState | None:
        """The project's latest run (None if it never had one). A run that ended while another studio (or none)
        watched it reads its exit status from the status file its parent wrote; without one (the parent was killed
        too) it reads as ended with :data:`UNKNOWN_EXIT`."""
        path = self._studio_dir(project_dir) / STATE_NAME
        try:
            state = RunState(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None
        process = self._processes.get(project_dir)
        if state.returncode is None and process is None and not pid_alive(state.pid):
            exit_status = self.exit_status(project_dir, state.pid)
            state.returncode, state.ended = exit_status or (UNKNOWN_EXIT, time.time())
            self._save(project_dir, state)
        return state

    def exit_status(self, project_dir: Path, pid: int) -> tuple[int, float] | None:
        """``(returncode, ended)`` that the run with this parent process id left in its status file, if any."""
        try:
            found = json.loads((self._studio_dir(project_dir) / EXIT_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(found, dict) or found.get("pid") != pid:
            return None  # an earlier run's
        return int(found["returncode"]), float(found["ended"])

    def _save(self, project_dir: Path, state: RunState) -> None:
        path = self._studio_dir(project_dir) / STATE_NAME
        # one staging file per thread: the thread reaping a run and a page's Stop or Cancel may save at once
        staging = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
        staging.write_text(json.dumps(asdict(state), indent=1), encoding="utf-8")
        os.replace(staging, path)

    def _take_lock(self, project_dir: Path, kind: str) -> Path:
        lock = self._studio_dir(project_dir) / LOCK_NAME
        for _ in range(2):  # a second try after removing a stale lock
            try:
                handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._lock_holder(lock)
                if holder is not None and pid_alive(holder.get("pid", -1)):
                    since = time.strftime("%H:%M:%S", time.localtime(holder.get("started", 0)))
                    raise backend.UserError(
                        f"a {holder.get('kind', 'run')} is already going in this project (process {holder.get('pid')}, "
                        f"started {since}); wait for it or stop it before starting another"
                    ) from None
                lock.unlink(missing_ok=True)  # its process is gone: a stale lock
                continue
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump({"pid": os.getpid(), "kind": kind, "started": time.time()}, out)
            return lock
        raise backend.UserError(f"cannot take the run lock '{lock}'; remove it if no run is going")

    @staticmethod
    def _lock_holder(lock: Path) -> dict[str, Any] | None:
        try:
            return json.loads(lock.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    # ----------------------------------------------------------------------------------------------- runs

    def start(
        self, project_dir: Path, kind: str, argv: list[str], resume: bool = False, resumed_from: str | None = None
    ) -> RunState:
        """Start a command for a project, refusing while another of its runs is going.

        Args:
            kind: ``"train"`` or ``"prepare"`` (what the page calls the run).
            argv: the command line (``sys.executable`` first).
            resume: append to the previous log and keep the run's history instead of starting afresh.

        Raises:
            UserError: another run of the project is going.
        """
        with self._guard:
            previous = self.state(project_dir)
            if previous is not None and previous.running:
                raise backend.UserError(
                    f"a {previous.kind} run is already going in this project (process {previous.pid}); wait for it "
                    "or stop it before starting another"
                )
            lock = self._take_lock(project_dir, kind)
            try:
                state = self._spawn(project_dir, kind, argv, resume, previous, lock)
                if resumed_from:
                    state.resumed_from = resumed_from
                    self._save(project_dir, state)
            except BaseException:
                lock.unlink(missing_ok=True)
                raise
        return state

    def _spawn(
        self, project_dir: Path, kind: str, argv: list[str], resume: bool, previous: RunState | None, lock: Path
    ) -> RunState:
        log = self._studio_dir(project_dir) / f"{kind}.log"
        exit_file = self._studio_dir(project_dir) / EXIT_NAME
        exit_file.unlink(missing_ok=True)
        now = time.time()
        with log.open("a" if resume else "w", encoding="utf-8") as out:
            out.write(f"{START_MARKER}{time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n")
            out.flush()
            process = subprocess.Popen(
                python_command("-m", "musicgen_lora.studio.supervise", str(exit_file), *argv),
                cwd=project_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=command_env(),
                start_new_session=True,  # Ctrl-C of the studio's terminal does not stop it
            )
        lock.write_text(json.dumps({"pid": process.pid, "kind": kind, "started": now}), encoding="utf-8")
        keep = resume and previous is not None and previous.kind == kind
        state = RunState(
            kind=kind,
            argv=argv,
            pid=process.pid,
            started=now,
            log=str(log),
            fresh_since=previous.fresh_since if keep else now,
            history=[*previous.history, " ".join(previous.argv)] if keep else [],
        )
        self._save(project_dir, state)
        self._processes[project_dir] = process
        threading.Thread(target=self._wait, args=(project_dir, process, lock), daemon=True).start()
        return state

    def _wait(self, project_dir: Path, process: subprocess.Popen, lock: Path) -> None:
        """Reap the process, record how it ended and free the project."""
        process.wait()
        with self._guard:
            state = self.state(project_dir)
            if state is not None and state.pid == process.pid:
                # the command's own status (a signal as -N), which the parent's exit code can only say as 128 + N
                ended = self.exit_status(project_dir, process.pid) or (UNKNOWN_EXIT, time.time())
                state.returncode, state.ended = ended
                self._save(project_dir, state)
            self._processes.pop(project_dir, None)
            holder = self._lock_holder(lock)
            if holder is None or holder.get("pid") == process.pid:
                lock.unlink(missing_ok=True)

    def stop(self, project_dir: Path, how: signal.Signals = signal.SIGINT) -> RunState:
        """Ask the project's run to stop as Ctrl-C would (SIGINT to its process group): training saves a
        checkpoint first. ``how``: another signal (SIGTERM ends a preparation that did not stop on Ctrl-C).

        Raises:
            UserError: no run is going.
        """
        with self._guard:  # not between the reaper's read and write of the state (its exit status would be lost)
            state = self.state(project_dir)
            if state is None or not state.running:
                raise backend.UserError("no run is going in this project; nothing to stop")
            try:
                os.killpg(state.pid, how)  # the run leads its own process group (start_new_session)
            except ProcessLookupError:
                pass  # it ended in the meantime
            state.stop_requested = True
            self._save(project_dir, state)
        return state

    def wait(self, project_dir: Path, timeout: float | None = None) -> RunState | None:
        """Block until the project's run started by this manager has ended (for tests and scripts)."""
        process = self._processes.get(project_dir)
        if process is not None:
            process.wait(timeout=timeout)
            deadline = time.monotonic() + 10
            while project_dir in self._processes and time.monotonic() < deadline:
                time.sleep(0.01)  # the waiter thread records the exit right after the process ends
        return self.state(project_dir)


def run_command(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float | None = None
) -> tuple[int, str]:
    """Run a short command to its end (render, evaluate, push, merge) and return ``(status, output)``; the
    output is kept in memory only (the push's token must never reach a file)."""
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=command_env(env),
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        return -1, (err.output or "") + f"\nerror: the command did not finish within {timeout:.0f} s"
    return done.returncode, done.stdout


def start_logged(argv: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """Start a command whose output goes to ``log`` (replaced), for a tab that shows its progress while it runs."""
    with log.open("w", encoding="utf-8") as out:
        return subprocess.Popen(
            argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=command_env()
        )


def python_command(*words: str) -> list[str]:
    """``[python, *words]`` with the interpreter running the studio."""
    return [sys.executable, *words]
