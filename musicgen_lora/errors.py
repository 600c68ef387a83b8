"""User-facing errors: one line naming the problem and the fix, never a traceback.

Every module raises :class:`UserError` for problems the user can fix (bad config, missing files, unreadable audio).
Command-line entry points parse with :class:`CommandLineParser` (usage errors are UserErrors too) and wrap their work
in :func:`exit_on_user_error`, which prints ``error: <message>`` and exits with status 2, or with 130 after Ctrl-C
(:class:`Interrupted`, or a bare ``KeyboardInterrupt``). Setting ``--debug`` on the command line or
``LOGLEVEL=DEBUG`` in the environment re-raises instead, so developers still get the full traceback."""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import math
import os
import sys
import typing
from collections.abc import Iterator


class UserError(Exception):
    """A problem with the user's input; the message names the problem and the fix on one line."""

    exit_code = 2


class Interrupted(UserError):
    """The user stopped a command (Ctrl-C, or SIGTERM on a preemptible machine); the message says what was kept and
    how to continue. Exit status 130, as shells report an interrupted command."""

    exit_code = 130


INTERRUPTED = "interrupted; nothing finished was lost: run the same command again to continue"


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` showing each option's default, except where there is none to show (None, False, an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, [], argparse.SUPPRESS) or "%(default)" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


# The name a command was started by, when the ``musicgen-lora`` script runs it ("musicgen-lora generate"): its usage
# line and its errors then name that, not the module it mirrors (see :func:`invoked_as`).
_INVOKED_AS: contextvars.ContextVar[str | None] = contextvars.ContextVar("invoked_as", default=None)


@contextlib.contextmanager
def invoked_as(name: str) -> Iterator[None]:
    """Within the block, every command names itself ``name`` in its usage line, ``--help`` and errors."""
    token = _INVOKED_AS.set(name)
    try:
        yield
    finally:
        _INVOKED_AS.reset(token)


def program_name(default: str) -> str:
    """The name the running command was started by: ``default`` (its own), unless :func:`invoked_as` says another."""
    return _INVOKED_AS.get() or default


class CommandLineParser(argparse.ArgumentParser):
    """``argparse`` whose usage errors (unknown flag, missing or malformed value) are one-line UserErrors instead of a
    usage dump, so every command answers bad input the same way; ``--help`` shows the defaults. Its ``prog`` is the
    name the command was started by (:func:`program_name`)."""

    def __init__(self, *args: typing.Any, **kwargs: typing.Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        if kwargs.get("prog"):
            kwargs["prog"] = program_name(kwargs["prog"])
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> typing.NoReturn:
        raise UserError(f"{one_line(message)}; run {self.prog} --help for the options")


def finite_number(text: str) -> float:
    """``argparse`` type: a float that is a number ('nan', 'inf' and '1e999' are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


class FiniteNumber(float):
    """A dataclass field's type for a float option that must be a finite number: ``HfArgumentParser`` parses the
    command line's text with it (:func:`finite_number`'s one-line refusals); the value is a plain float."""

    def __new__(cls, text: str) -> float:  # type: ignore[misc]
        return finite_number(text)


MAX_SEED = 2**32 - 1  # numpy's limit; torch wraps larger ones, so one range serves every command


def seed_number(text: str) -> int:
    """``argparse`` type: a random seed, an integer from 0 to 2**32 - 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and {MAX_SEED}")
    return value


class SeedNumber(int):
    """A dataclass field's type for a random seed option (see :func:`seed_number`); the value is a plain int."""

    def __new__(cls, text: str) -> int:  # type: ignore[misc]
        return seed_number(text)


def debug_requested(argv: list[str] | None = None) -> bool:
    """True when the user asked for tracebacks (``--debug`` or ``LOGLEVEL=DEBUG``)."""
    argv = sys.argv[1:] if argv is None else argv
    return "--debug" in argv or os.environ.get("LOGLEVEL", "").upper() == "DEBUG"


def one_line(message: str) -> str:
    """Collapse a message onto one line (library errors often span several)."""
    return " ".join(str(message).split())


@contextlib.contextmanager
def exit_on_user_error(argv: list[str] | None = None) -> Iterator[None]:
    """Turn a :class:`UserError` into ``error: ...`` on stderr and its exit status (2; 130 for :class:`Interrupted`),
    and Ctrl-C anywhere into one line and 130, unless debugging."""
    try:
        yield
    except UserError as err:
        if debug_requested(argv):
            raise
        _end_progress_bars()
        print(f"error: {one_line(err)}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    except KeyboardInterrupt:
        if debug_requested(argv):
            raise
        _end_progress_bars()
        print(f"error: {INTERRUPTED}", file=sys.stderr)
        raise SystemExit(Interrupted.exit_code) from None


def _end_progress_bars() -> None:
    """Close the progress bars a failed command left open (Trainer's, a loading bar), so the error starts its own
    line and stays the last one (an open bar redraws itself when the interpreter exits)."""
    bars = sys.modules.get("tqdm.std")  # only where a library drew bars; tqdm itself is not needed here
    if bars is not None:
        for bar in list(bars.tqdm._instances):
            bar.close()
