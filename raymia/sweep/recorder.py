"""The driver side's record of a sweep: each finished (or failed) trial's row, appended to
DIR/trials.parquet (as a small part, `raymia.results.TrialsAppender`: a constant cost per
trial) and its scores to DIR/scores/ as Tune reports them."""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any

from ..config import TrialConfig
from ..results import TrialsAppender, write_scores
from .worker import decode_scores, trial_config

__all__ = ["make_recorder"]


def _error_status(error: BaseException | None) -> tuple[str, str]:
    """Return (status, one-line message) for a trial's exception."""
    if error is None:
        return "failed", "unknown error"
    text = "".join(traceback.format_exception_only(type(error), error))
    cause = error
    while getattr(cause, "cause", None) is not None or cause.__cause__ is not None:
        cause = getattr(cause, "cause", None) or cause.__cause__
    kind = type(cause).__name__
    status = "diverged" if "TrainingDiverged" in (kind + text) else "failed"
    last = [line for line in text.strip().splitlines() if line.strip()]
    message = last[-1].strip() if last else kind
    if len(message) > 500:
        message = message[:497] + "..."
    return status, message


def _trial_exception(trial: Any) -> BaseException | None:
    """Return the exception a failed Tune trial raised, read from its local error file.

    Tune writes the pickled error next to the trial before telling callbacks, but syncs it to
    the storage path (where `Trial.get_pickled_error` looks) only later.
    """
    from ray import cloudpickle

    path = trial.pickled_error_file
    if not path or not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as f:
            return cloudpickle.load(f)
    except Exception:  # an unreadable pickle: the status still says failed
        return None


def _config_columns(params: dict[str, Any]) -> dict[str, Any]:
    config, _ = trial_config(params)
    return TrialConfig.model_validate(config).flat()


def make_recorder(out_dir: Path) -> Any:
    """Return the Tune callback that records every trial of the sweep in `out_dir`."""
    from ray import tune
    from ray.tune.result import AUTO_RESULT_KEYS

    # Tune's own bookkeeping in every result; the rest is the trial's row
    tune_keys = set(AUTO_RESULT_KEYS) | {
        "done",
        "trial_id",
        "experiment_tag",
        "should_checkpoint",
        "experiment_id",
    }

    class ResultsRecorder(tune.Callback):
        """Writes each trial's row to trials.parquet once Tune has finished the trial.

        The row arrives with the trial's result but is written at completion, after Tune has
        told the searcher (Optuna) the trial is COMPLETE: a row on disk therefore always has a
        finished trial in the journal and in Tune's state, and a sweep stopped in between
        re-runs that trial instead of keeping a row whose trial Optuna still thinks RUNNING.
        It keeps no rows across runs: Tuner.restore revives the callback pickled with the
        first run, so every run opens the directory afresh (reading no rows: appending a row
        costs the same at the first trial and the 100,000th).
        """

        def __init__(self):
            self.pending: dict[str, tuple[dict, bytes | None]] = {}
            self.appender: TrialsAppender | None = None

        def _add(self, row: dict[str, Any]) -> None:
            if self.appender is None:
                self.appender = TrialsAppender(out_dir)
            self.appender.add(row)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            row = {k: v for k, v in result.items() if k not in tune_keys}
            blob = row.pop("scores_npz", None)
            result.pop("scores_npz", None)  # keep the big bytes out of Tune's state
            row["trial_id"] = trial.trial_id
            row["node_ip"] = result.get("node_ip")
            self.pending[trial.trial_id] = (row, blob)

        def on_trial_complete(self, iteration, trials, trial, **info):
            row, blob = self.pending.pop(trial.trial_id, (None, None))
            if row is None:
                return
            if blob is not None:
                write_scores(out_dir, trial.trial_id, decode_scores(blob))
            self._add(row)

        def __getstate__(self):
            return {}  # results in flight belong to this run only

        def __setstate__(self, state):
            self.pending = {}
            self.appender = None

        def on_trial_error(self, iteration, trials, trial, **info):
            status, message = _error_status(_trial_exception(trial))
            row = {"trial_id": trial.trial_id, "status": status, "error": message}
            row.update(_config_columns(trial.config))
            self._add(row)

    return ResultsRecorder()
