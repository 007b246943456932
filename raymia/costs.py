"""Where a trial's time goes: wall seconds, and peak memory where asked, per component.

A trial marks its parts with ``with component("merlin"):``. Each block's wall time is always
measured and yielded (the row's `reference_seconds` adds up the "reference training" blocks of
its measurement); inside :func:`recording` (the cost benchmark) every block's seconds are also
added up by name, and with ``memory=True`` each block's peak resident memory is read too
(Linux: the process's high-water mark is reset as the block starts). Nested blocks count in
both.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["Cost", "component", "recording"]


@dataclass
class Cost:
    """What one component cost: wall seconds (summed over its blocks), how many blocks, and
    the largest peak resident memory in bytes seen in one of them (None when not read)."""

    seconds: float = 0.0
    calls: int = 0
    peak_bytes: int | None = None


@dataclass
class _Recording:
    costs: dict[str, Cost]
    memory: bool


# every recording open around the running code, outermost first
_ACTIVE: ContextVar[tuple[_Recording, ...]] = ContextVar("raymia_costs", default=())


def _reset_peak() -> bool:
    """Reset the process's peak resident memory (VmHWM); True where the system allows it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_bytes() -> int | None:
    """Return the process's peak resident memory since the last reset, or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@contextlib.contextmanager
def component(name: str) -> Iterator[Cost]:
    """Time the block as component `name`; yield a Cost whose `seconds` is set on exit (and
    added to each open recording's entry for `name`)."""
    active = _ACTIVE.get()
    memory = any(r.memory for r in active) and _reset_peak()
    cost = Cost(calls=1)
    started = time.perf_counter()
    try:
        yield cost
    finally:
        cost.seconds = time.perf_counter() - started
        if memory:
            cost.peak_bytes = _peak_bytes()
        for r in active:
            total = r.costs.setdefault(name, Cost())
            total.seconds += cost.seconds
            total.calls += 1
            if cost.peak_bytes is not None:
                total.peak_bytes = max(total.peak_bytes or 0, cost.peak_bytes)


@contextlib.contextmanager
def recording(memory: bool = False) -> Iterator[dict[str, Cost]]:
    """Collect the costs of every component run inside the block; yield them by name, in the
    order they first ran. With `memory`, also each component's peak resident memory (resetting
    the process's high-water mark at each block: read the whole run's peak before). Recordings
    nest: a component counts in every one open around it."""
    costs: dict[str, Cost] = {}
    token = _ACTIVE.set((*_ACTIVE.get(), _Recording(costs, memory)))
    try:
        yield costs
    finally:
        _ACTIVE.reset(token)
