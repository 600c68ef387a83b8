"""``python -m musicgen_lora.studio.supervise STATUS.json COMMAND...``: run a command and write down how it ended.

The studio starts each long command (preparation, training) through this small parent. A run outlives the studio
that started it (it has its own session), but only a process's parent learns its exit status: a studio restarted
during training used to find the run's process gone without a status and report a run that had finished as failed.
This parent waits for the command and writes ``{"pid", "returncode", "ended"}`` to STATUS.json (atomically), where
any later studio reads it.

SIGINT and SIGTERM sent to the run's process group (the studio's *Stop*, Ctrl-C, a shutdown) reach the command,
which decides how to end (training saves a checkpoint first); this parent ignores them and keeps waiting. It imports
nothing but the standard library, so it starts in milliseconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def write_status(path: Path, pid: int, returncode: int) -> None:
    """``{"pid", "returncode", "ended"}`` into ``path`` in one rename (a reader never sees half a file)."""
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.write_text(json.dumps({"pid": pid, "returncode": returncode, "ended": time.time()}), encoding="utf-8")
    os.replace(staging, path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) < 2:
        print("usage: python -m musicgen_lora.studio.supervise STATUS.json COMMAND...", file=sys.stderr)
        return 2
    status, command = Path(argv[0]), argv[1:]
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)  # the command gets them too (same process group) and decides
    child = subprocess.Popen(command, restore_signals=True, preexec_fn=_default_signals)
    returncode = child.wait()
    write_status(status, os.getpid(), returncode)
    return returncode if returncode >= 0 else 128 - returncode  # killed by signal N: 128 + N, as a shell says


def _default_signals() -> None:
    """In the child before it runs the command: SIGINT and SIGTERM back to their defaults (not inherited ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
