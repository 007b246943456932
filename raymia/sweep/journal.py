"""The sweep's Optuna study: its journal file, and the check that it is whole before a resume.

Optuna's journal is one JSON record a line (open it with ``optuna-dashboard optuna.journal``).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from raymia.errors import ConfigError

__all__ = [
    "JOURNAL_FILE",
    "STUDY_NAME",
    "check_journal",
    "finite_optuna_search",
    "repair_torn_line",
]

#: The Optuna journal inside a sweep directory.
JOURNAL_FILE = "optuna.journal"
#: The study's name in the journal.
STUDY_NAME = "raymia"


def check_journal(out_dir: Path, finished_rows: int = 0) -> None:
    """Raise ConfigError naming the file when DIR's Optuna journal is damaged.

    Optuna skips a journal line it cannot parse and reads a truncated journal as a shorter
    study; either would quietly lose trials on resume, so every line must be JSON and the
    study must know at least as many finished trials as trials.parquet has rows (a missing
    journal beside rows is refused too).
    """
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = out_dir / JOURNAL_FILE
    if not path.exists():
        if finished_rows:  # a row lands only after Optuna recorded its trial in the journal
            raise ConfigError(
                f"{path}: missing, but trials.parquet has {finished_rows} rows; the search "
                "would start over without the trials it ran (copy the journal back with the "
                "directory)"
            )
        return
    _check_records(path)  # damage is refused before a torn last line is cut off
    dropped = repair_torn_line(path)
    if dropped:
        print(
            f"raymia: note: {path}: dropped a torn last line ({dropped} bytes, a write the "
            "last run did not finish); its trial runs again",
            file=sys.stderr,
        )
    try:
        study = optuna.load_study(
            study_name=STUDY_NAME, storage=JournalStorage(JournalFileBackend(str(path)))
        )
    except Exception as err:  # Optuna raises many kinds for a damaged journal
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{path}: unreadable Optuna journal ({detail})") from None
    finished = sum(t.state.is_finished() for t in study.trials)
    if finished < finished_rows:
        raise ConfigError(
            f"{path}: Optuna journal knows {finished} finished trials but trials.parquet has "
            f"{finished_rows} rows; the journal looks truncated"
        )


def _check_records(path: Path) -> None:
    """Raise ConfigError naming the file unless it is a readable file whose every whole line
    is a JSON record, a last line without a newline (a torn write, which `repair_torn_line`
    then cuts off) being the start of one after at least one whole record. Nothing is changed:
    a file that is no journal is refused as it is."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, expected the Optuna journal file")
    try:
        with open(path, "rb") as f:
            for number, line in enumerate(f, start=1):
                if not line.endswith(b"\n") and number > 1 and line.startswith(b"{"):
                    continue  # a torn last record
                try:
                    json.loads(line)
                except (ValueError, RecursionError):
                    raise ConfigError(
                        f"{path}: damaged Optuna journal (line {number} is not a JSON record)"
                    ) from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or type(err).__name__})") from None


def repair_torn_line(path: Path) -> int:
    """Cut a torn last line (no newline: a kill mid-write) off the journal at `path`.

    Optuna writes each record as one line ending in a newline, so only the last line can be
    torn; a line that ends in a newline is never touched (damage there is refused by
    `check_journal`). Returns how many bytes were dropped (0 when the journal was whole).
    """
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        # read backwards in blocks until the last newline (a record is a few hundred bytes)
        end = size
        block = 4096
        while end > 0:
            start = max(0, end - block)
            f.seek(start)
            chunk = f.read(end - start)
            if end == size and chunk.endswith(b"\n"):
                return 0
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        else:
            keep = 0
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return size - keep


def finite(value: Any) -> bool:
    """Return whether `value` is a finite number (what Optuna accepts as an objective)."""
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def finite_optuna_search(**kwargs: Any) -> Any:
    """Return Ray Tune's OptunaSearch built from `kwargs`, telling Optuna FAIL for a trial
    whose objective is missing, NaN or infinite.

    Ray's own searcher tells such a trial COMPLETE (or PRUNED, which a multi-objective study
    refuses); Optuna rejects the value, Ray only logs it, and the trial stays RUNNING in the
    journal for good, which a later resume reads as a truncated journal.
    """
    from optuna.trial import TrialState
    from ray.tune.search.optuna import OptunaSearch

    class FiniteOptunaSearch(OptunaSearch):
        def on_trial_complete(
            self, trial_id: str, result: dict | None = None, error: bool = False
        ) -> None:
            metrics = self.metric if isinstance(self.metric, list) else [self.metric]
            known = trial_id in self._ot_trials and trial_id not in self._completed_trials
            if known and (error or not all(finite((result or {}).get(m)) for m in metrics)):
                self._ot_study.tell(self._ot_trials[trial_id], state=TrialState.FAIL)
                self._completed_trials.add(trial_id)
            else:
                super().on_trial_complete(trial_id, result=result, error=error)
            # Ray's searcher keeps every trial's Optuna handle (each with a copy of the
            # trial) and pickles them all into each experiment-state save; a told trial's
            # handle is never used again
            self._ot_trials.pop(trial_id, None)

    return FiniteOptunaSearch(**kwargs)
