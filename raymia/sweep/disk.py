"""A sweep's guard against a full disk: it stops gracefully while it still has room.

The recorder calls `check` with each trial's result, before Optuna records the trial; below
`LOW_DISK_BYTES` free it asks Tune to stop as on SIGUSR1 (Tune saves its state; a trial
stopped before its row was written was not recorded by Optuna either and runs on resume), and
the sweep then ends with the one line `disk_full` returns. (The recorder refers to this
module, never to its functions by name: Tune pickles the recorder into its state.)
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

__all__ = ["LOW_DISK_BYTES", "check", "disk_full", "free_bytes"]

#: Free bytes below which the sweep stops gracefully (room left for Tune's last state and
#: the rows of trials that finish meanwhile; a trial stopped unrecorded runs on resume).
LOW_DISK_BYTES = 64 * 2**20

# Why this run's sweep stopped for disk space (one line), or None.
_disk_full: str | None = None


def free_bytes(path: Path) -> int:
    """Return the bytes free for writing on the file system that holds `path`."""
    return shutil.disk_usage(path).free


def disk_full() -> str | None:
    """Return (and forget) why the sweep that just ran stopped for disk space, or None."""
    global _disk_full
    message, _disk_full = _disk_full, None
    return message


def check(out_dir: Path) -> None:
    """Ask Tune to stop gracefully (as on SIGUSR1) when the disk that holds `out_dir` has
    under LOW_DISK_BYTES free, noting why for `disk_full`; return otherwise."""
    free = free_bytes(out_dir)
    if free >= LOW_DISK_BYTES:
        return
    global _disk_full
    if _disk_full is None:
        _disk_full = (
            f"{out_dir.resolve()}: the disk is nearly full ({free / 2**20:.0f} MiB free); the "
            "sweep stopped with every finished trial recorded; free some space, then "
            "raymia sweep --resume DIR"
        )
        os.kill(os.getpid(), signal.SIGUSR1)
