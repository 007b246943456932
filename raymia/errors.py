"""The errors a user can cause and fix: one base class, `UserError`, caught once by each
command line (``raymia``: one line on stderr, exit code 2; the analysis scripts likewise).

Every message is one line meant for the user: it names the source (file, flag, directory),
the key or value and what was expected. Errors that are not the user's to fix (a training
run that diverges, a bug) are not `UserError`s and keep their tracebacks.

The subclasses say where the input came from. They are also ValueErrors where they were
before (a bad value is what they report), so ``except ValueError`` still catches them.

Whatever the input, the line stays short: `quote` shows a value (a 1 MB string, a list
nested a thousand deep) in at most `QUOTE_LIMIT` characters, `one_line` bounds a whole message,
and `read_text_file` refuses, in one line, a file that is missing, a directory, unreadable,
too large, binary or not UTF-8 before anything parses it.
"""

from __future__ import annotations

import os
import reprlib
import stat
from pathlib import Path
from typing import Any

__all__ = [
    "MAX_TEXT_BYTES",
    "QUOTE_LIMIT",
    "AnalysisError",
    "ClusterConfigError",
    "ConfigError",
    "DataError",
    "ResultsError",
    "SweepStopped",
    "UsageError",
    "UserError",
    "bound_quoted",
    "directory_problem",
    "one_line",
    "quote",
    "read_text_file",
    "show_path",
]

#: The most characters of one value an error message shows (`quote`).
QUOTE_LIMIT = 80
#: The most characters of a path an error message shows (`show_path`).
PATH_LIMIT = 160
#: The most characters of a whole error message (`one_line`).
MESSAGE_LIMIT = 1000
#: The largest settings file read (a space, a trial config, sweep.json): 1 MB.
MAX_TEXT_BYTES = 1_000_000


class UserError(Exception):
    """Bad input that the user can fix; the message is the one line they see."""


class SweepStopped(UserError):
    """A sweep stopped on a condition the user must fix (a full disk): every finished trial
    is recorded and it resumes once fixed. One line, like every UserError; exit code 1."""

    exit_code = 1


class ConfigError(UserError, ValueError):
    """A trial, search-space or sweep setting is invalid."""


class DataError(UserError, ValueError):
    """The data cannot be loaded or split as asked."""


class ResultsError(UserError, ValueError):
    """A results file or directory cannot be used; the message names it and the problem."""


class ClusterConfigError(UserError, ValueError):
    """A Ray cluster-launcher config that Ray would reject."""


class UsageError(UserError):
    """A bad command-line flag or argument."""


class AnalysisError(UserError):
    """An analysis script cannot serve the request (no completed trial, unknown column, ...)."""


# --------------------------------------------------------------------------------------------
# Bounded messages

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxdict = _REPR.maxlist = _REPR.maxtuple = _REPR.maxset = 6
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = QUOTE_LIMIT


def _cut(text: str, limit: int) -> str:
    """Return `text` cut to at most `limit` characters, ending in '...' where it was cut."""
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """Return ``repr(value)`` for an error message, at most `limit` characters and one line.

    Bounded in time as well as length: a huge string, a long list or a structure nested
    deeply (or through YAML aliases) is shown by its start, never rendered whole.
    """
    try:
        text = _REPR.repr(value)
    except Exception:  # a value whose repr fails is still shown by its type
        text = f"<{type(value).__name__}>"
    return _cut(" ".join(text.split()), limit)


def show_path(path: str | os.PathLike[str], limit: int = PATH_LIMIT) -> str:
    """Return `path` as an error message shows it: as given, or its start and end (joined by
    '...') when longer than `limit` characters."""
    text = os.fspath(path)
    text = text if isinstance(text, str) else os.fsdecode(text)
    if len(text) <= limit:
        return text
    half = (limit - 3) // 2
    return text[:half] + "..." + text[-half:]


def one_line(message: Any, limit: int = MESSAGE_LIMIT) -> str:
    """Return `message` as one line of at most `limit` characters: whitespace collapsed, and
    a longer message cut in its middle so that its start (the source) and its end (what was
    expected) both stay."""
    text = " ".join(str(message).split())
    if len(text) <= limit:
        return text
    tail = min(200, limit // 4)
    return text[: limit - tail - 5] + " ... " + text[-tail:]


def bound_quoted(message: str, limit: int = QUOTE_LIMIT) -> str:
    """Return `message` (argparse's, say: "invalid int value: '...'") with each quoted
    stretch longer than `limit` characters cut to its start and '...'."""
    import re

    return re.sub(
        "'([^']{" + str(limit + 1) + ",})'",
        lambda m: "'" + _cut(m.group(1), limit) + "'",
        message,
    )


# --------------------------------------------------------------------------------------------
# Reading a user's text file


def directory_problem(path: str | os.PathLike[str]) -> str | None:
    """Return why `path` cannot be a directory a command reads or writes ("no such
    directory", "is a file, not a directory", ...), or None when it is a directory or can be
    created as one (it does not exist, and its nearest existing parent is a directory)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        parent = path.parent
        while parent != parent.parent and not parent.exists():
            parent = parent.parent
        if parent.exists() and not parent.is_dir():
            return f"{show_path(parent)} is a file, not a directory"
        return None
    except NotADirectoryError:
        return "a parent of it is a file, not a directory"
    except OSError as err:
        return f"cannot use it ({err.strerror or type(err).__name__})"
    if not stat.S_ISDIR(mode):
        return "is a file, not a directory"
    return None


def read_text_file(
    path: str | os.PathLike[str],
    error: type[UserError],
    what: str = "file",
    max_bytes: int = MAX_TEXT_BYTES,
) -> str:
    """Return the UTF-8 text of the file at `path` (a leading byte-order mark dropped).

    Raises `error` (a UserError subclass), one line naming the file, when the path does not
    exist, is a directory, cannot be read, is larger than `max_bytes`, holds NUL bytes
    (binary, or UTF-16 without a byte-order mark), is UTF-16/32 text or is not valid UTF-8.
    `what` names the expected file in the messages ("YAML file", "sweep settings").
    """
    shown = show_path(path)
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if stat.S_ISDIR(mode):
                raise error(f"{shown}: is a directory, expected a {what}")
            data = f.read(max_bytes + 1)
    except IsADirectoryError:
        raise error(f"{shown}: is a directory, expected a {what}") from None
    except FileNotFoundError:
        raise error(f"{shown}: no such file (expected a {what})") from None
    except NotADirectoryError:
        raise error(f"{shown}: a parent of it is a file, not a directory") from None
    except OSError as err:
        raise error(f"{shown}: cannot read ({err.strerror or type(err).__name__})") from None
    if len(data) > max_bytes:
        raise error(
            f"{shown}: larger than {max_bytes / 1e6:g} MB; expected a {what} (is this the "
            "right file?)"
        )
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise error(f"{shown}: is UTF-16 or UTF-32 text; expected a {what} in UTF-8")
    if b"\x00" in data:
        raise error(
            f"{shown}: holds NUL bytes (binary, or UTF-16 text); expected a {what} in UTF-8"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(
            f"{shown}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
            f"expected a {what} in UTF-8"
        ) from None
    return text.removeprefix("\ufeff")
