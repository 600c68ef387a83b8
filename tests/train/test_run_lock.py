"""One training run per output folder: the lock (``files.holding_lock``, an operating-system lock through filelock)
refuses a second run while the first one lives, naming its process, and is free again as soon as that process ends,
however it ends."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys

import pytest

from musicgen_lora.errors import UserError
from musicgen_lora.files import LockHeld, holding_lock
from musicgen_lora.train.output_dir import LOCK_NAME, run_lock

from ..conftest import ROOT

HOLDER = """
import sys
from musicgen_lora.files import holding_lock
with holding_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()  # holds the lock until killed (or its input closes)
"""


def test_a_second_run_is_refused_naming_the_first_and_the_folder_is_free_after(tmp_path):
    with run_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).is_file()
        with pytest.raises(UserError) as refused:
            with run_lock(tmp_path):
                pass
        assert str(refused.value) == (
            f"another training run (process {os.getpid()} on {socket.gethostname()}) is writing to '{tmp_path}'; wait "
            "for it to finish, stop it, or choose another output_dir"
        )
    assert not (tmp_path / LOCK_NAME).exists()  # released and removed: nothing left in output_dir
    with run_lock(tmp_path):  # and free again
        pass


def test_the_lock_of_a_killed_run_is_taken_over_with_a_notice(tmp_path, caplog):
    """A process holding the lock is killed (SIGKILL: no clean-up at all); the next run takes the lock it left."""
    lock = tmp_path / LOCK_NAME
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld) as refused, holding_lock(lock):
            pass
        assert refused.value.holder == {"pid": holder.pid, "host": socket.gethostname()}
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    assert lock.is_file()  # what the killed process left
    with caplog.at_level(logging.WARNING), run_lock(tmp_path):
        pass
    notices = [record.getMessage() for record in caplog.records]
    assert notices == [f"Taking over the lock of a run that ended without releasing it (process {holder.pid})"]
    assert not lock.exists()
