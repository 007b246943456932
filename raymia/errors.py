"""The errors a user can cause and fix: one base class, `UserError`, caught once by each
command line (``raymia``: one line on stderr, exit code 2; the analysis scripts likewise).

Every message is one line meant for the user: it names the source (file, flag, directory),
the key or value and what was expected. Errors that are not the user's to fix (a training
run that diverges, a bug) are not `UserError`s and keep their tracebacks.

The subclasses say where the input came from. They are also ValueErrors where they were
before (a bad value is what they report), so ``except ValueError`` still catches them.
"""

from __future__ import annotations

__all__ = [
    "AnalysisError",
    "ClusterConfigError",
    "ConfigError",
    "DataError",
    "ResultsError",
    "UsageError",
    "UserError",
]


class UserError(Exception):
    """Bad input that the user can fix; the message is the one line they see."""


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
