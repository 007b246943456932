"""The sweep's Optuna study: its journal file, and the check that it is whole before a resume.

Optuna's journal is one JSON record a line (open it with ``optuna-dashboard optuna.journal``).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError

__all__ = ["JOURNAL_FILE", "STUDY_NAME", "check_journal"]

#: The Optuna journal inside a sweep directory.
JOURNAL_FILE = "optuna.journal"
#: The study's name in the journal.
STUDY_NAME = "raymia"


def check_journal(out_dir: Path, finished_rows: int = 0) -> None:
    """Raise ConfigError naming the file when DIR's Optuna journal is damaged.

    Optuna skips a journal line it cannot parse and reads a truncated journal as a shorter
    study; either would quietly lose trials on resume, so every line must be JSON and the
    study must know at least as many finished trials as trials.parquet has rows.
    """
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = out_dir / JOURNAL_FILE
    if not path.exists():
        return
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                json.loads(line)
            except ValueError:
                raise ConfigError(
                    f"{path}: damaged Optuna journal (line {number} is not a JSON record)"
                ) from None
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
