"""Errors that end a run with one message for the user instead of a traceback."""

import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class UserError(RuntimeError):
    """A problem the user can fix (bad config value, missing or corrupted data)."""


class DataError(UserError):
    """The data set is missing, truncated or corrupted, or could not be fetched."""


class ConfigError(UserError):
    """A config value that cannot work; raised before any heavy work starts."""


class OutputError(UserError):
    """A file could not be written (full disk, quota, read-only file system, permissions)."""


class TrainingDiverged(UserError):
    """A loss or gradient became NaN or infinite; the message names the step and the checkpoint to go back to."""


class RankLost(UserError):
    """Another rank of a multi-process run stopped (killed, or lost with its node): the ranks
    left end with one message naming it, instead of a collective call's traceback."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): the part of
    another library's error that fits in a one-line message."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def exit_on_user_error(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)``; a ``UserError`` prints one ``error:`` line and exits with code 2."""
    try:
        return fn(*args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
