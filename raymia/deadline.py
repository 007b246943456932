"""A trial's time limit (`raymia sweep --trial-timeout`), checked where a trial spends its time.

The sweep's worker sets the limit before a trial starts (`start`) and clears it after
(`clear`); the loops a trial spends its time in (every training batch, every PGD batch of DtC)
call `check`, which raises `TrialTimeout` once the limit has passed, so a slow configuration
ends as a ``timeout`` row within one batch of its limit. Outside a sweep no limit is set and
`check` costs one comparison.
"""

from __future__ import annotations

import time

__all__ = ["TrialTimeout", "check", "clear", "remaining", "start"]

_deadline: float | None = None
_seconds: float | None = None


class TrialTimeout(RuntimeError):
    """A trial ran past its time limit (a deterministic failure: never retried)."""


def start(seconds: float | None) -> None:
    """Set this process's trial time limit to `seconds` from now (None: no limit)."""
    global _deadline, _seconds
    _seconds = seconds
    _deadline = None if seconds is None else time.monotonic() + seconds


def clear() -> None:
    """Remove the time limit."""
    start(None)


def remaining() -> float | None:
    """Return the seconds left before the limit (None when no limit is set)."""
    return None if _deadline is None else _deadline - time.monotonic()


def check() -> None:
    """Raise TrialTimeout when the trial's time limit has passed; return otherwise."""
    if _deadline is not None and time.monotonic() > _deadline:
        raise TrialTimeout(f"the trial ran past its time limit of {_seconds:g} s (--trial-timeout)")
