"""What the processes of a several-process run (torchrun, accelerate launch) agree on while they prepare the data:
the main process' decision, and any process' error, which every process then reports.

Without this, a process that stops with an error leaves the others waiting for it in a collective operation until
the backend gives up with its own message (gloo: "Connection closed by peer"), which hides the one line that says
what is wrong. With one process (or none started by a launcher) each helper just runs its work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch.distributed as dist

from ..errors import UserError, one_line

logger = logging.getLogger(__name__)


def several_processes() -> bool:
    """Whether this process is one of several of a ``torch.distributed`` run."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def from_main_process(value: Any) -> Any:
    """``value`` as the main process (global rank 0) has it, in every process (picklable values)."""
    if not several_processes():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def run_in_step(work: Callable[[], Any], active: bool = True, what: str = "preparing the data") -> None:
    """Run ``work`` where ``active``, then wait for every process to get there; the first error of any process (by
    rank) is raised in all of them.

    A :class:`UserError` is raised everywhere with its one line unchanged (the lowest rank's, when several met one).
    Another exception is re-raised as it is (with its traceback) in the process that met it, and the others raise a
    one-line :class:`UserError` naming that process and the exception.

    Raises:
        UserError: some process' work raised one (or, in the other processes, any other exception).
    """
    error: BaseException | None = None
    try:
        if active:
            work()
    except Exception as err:  # reported to every process below, then raised
        error = err
    if not several_processes():
        if error is not None:
            raise error
        return
    report = None
    if error is not None:  # what the others need to say it: picklable, one line
        kind = "user" if isinstance(error, UserError) else type(error).__name__
        report = (kind, one_line(error), getattr(error, "exit_code", 2))
    reports: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(reports, report)
    if error is not None and not isinstance(error, UserError):
        raise error  # this process' own failure keeps its traceback here
    failed = next((rank for rank, found in enumerate(reports) if found is not None), None)
    if failed is None:
        return
    if failed == dist.get_rank():
        raise error
    kind, line, exit_code = reports[failed]
    raised = UserError(line if kind == "user" else f"process {failed} failed while {what}: {kind}: {line[:300]}")
    raised.exit_code = exit_code if kind == "user" else 1
    raise raised
