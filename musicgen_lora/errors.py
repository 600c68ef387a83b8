"""User-facing errors: one line naming the problem and the fix, never a traceback.

Every module raises :class:`UserError` for problems the user can fix (bad config, missing files, unreadable audio).
Command-line entry points wrap their work in :func:`exit_on_user_error`, which prints ``error: <message>`` and exits
with status 2. Setting ``--debug`` on the command line or ``LOGLEVEL=DEBUG`` in the environment re-raises instead,
so developers still get the full traceback."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


class UserError(Exception):
    """A problem with the user's input; the message names the problem and the fix on one line."""


def debug_requested(argv: list[str] | None = None) -> bool:
    """True when the user asked for tracebacks (``--debug`` or ``LOGLEVEL=DEBUG``)."""
    argv = sys.argv[1:] if argv is None else argv
    return "--debug" in argv or os.environ.get("LOGLEVEL", "").upper() == "DEBUG"


def one_line(message: str) -> str:
    """Collapse a message onto one line (library errors often span several)."""
    return " ".join(str(message).split())


@contextlib.contextmanager
def exit_on_user_error(argv: list[str] | None = None) -> Iterator[None]:
    """Turn a :class:`UserError` into ``error: ...`` on stderr and exit status 2 (unless debugging)."""
    try:
        yield
    except UserError as err:
        if debug_requested(argv):
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        raise SystemExit(2) from None
