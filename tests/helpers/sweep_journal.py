"""The Optuna study a sweep directory's journal holds, for the tests that check it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raymia.sweep.journal import JOURNAL_FILE, STUDY_NAME


def sweep_study(out: Path) -> Any:
    """Return the Optuna study recorded in ``out/optuna.journal``."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(out / JOURNAL_FILE)))
    return optuna.load_study(study_name=STUDY_NAME, storage=storage)


def trial_states(out: Path) -> list[str]:
    """Return the state names (COMPLETE, FAIL, RUNNING, ...) of the study's trials, in order."""
    return [t.state.name for t in sweep_study(out).trials]
