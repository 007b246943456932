"""The driver side's record of a sweep: each finished (or failed) trial's row, appended to
DIR/trials.parquet (as a small part, `raymia.results.rows.TrialsAppender`: a constant cost per
trial) and its scores to DIR/scores/ as Tune reports them."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from raymia.results.rows import TrialsAppender, write_scores
from raymia.sweep import disk
from raymia.sweep.journal import finite
from raymia.sweep.storage import after_row
from raymia.sweep.worker import decode_scores, failure_status, replicate_seeds, trial_config
from raymia.trial.config import TrialConfig

__all__ = ["make_recorder"]


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
    columns = TrialConfig.model_validate(config).flat()
    seeds = replicate_seeds(params)
    if len(seeds) > 1:  # replicates: the row is the configuration's, not one seed's
        columns["seed"], columns["seeds"] = None, ",".join(map(str, seeds))
    return columns


def make_recorder(out_dir: Path, keep: Iterable[str] = (), objectives: Iterable[str] = ()) -> Any:
    """Return the Tune callback that records every trial of the sweep in `out_dir`.

    Once a result's row is captured, the callback cuts it out of the result Tune keeps: Tune
    retains only its own keys, the `objectives` and those named in `keep` (the columns the
    progress table shows). A trial that ran but reports a missing, NaN or infinite objective
    is recorded `failed`, with the objective named in `error`, as Optuna records it
    (`raymia.sweep.journal.finite_optuna_search`).
    """
    objectives = list(objectives)
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
    kept = tune_keys | set(keep) | set(objectives)

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
            after_row()  # a sweep at a storage URI: the row on its way there

        def on_trial_result(self, iteration, trials, trial, result, **info):
            row = {k: v for k, v in result.items() if k not in tune_keys}
            blob = row.pop("scores_npz", None)
            result.pop("scores_npz", None)  # keep the big bytes out of Tune's state
            bad = [o for o in objectives if not finite(row.get(o))]
            if row.get("status") == "ok" and bad:  # Optuna is told FAIL: the row says so too
                row["status"] = "failed"
                row["error"] = "objective " + ", ".join(f"{o} = {row.get(o)}" for o in bad)
                row["error"] += " is not a finite number; Optuna records the trial as failed"
            if row.get("status") != "ok":  # a trial's own failure: its configuration beside it
                row = {**_config_columns(trial.config), **row}
            row["trial_id"] = trial.trial_id
            row["node_ip"] = result.get("node_ip")
            self.pending[trial.trial_id] = (row, blob)
            # Tune stores this very dict as the trial's last result, keeps running statistics
            # of every number in it and writes both into each experiment-state save: with the
            # whole row that is a driver cost (memory, and CPU per save) that grows with every
            # trial. The row is ours now; Tune keeps its own keys and those it reads.
            for key in [k for k in result if k not in kept and not k.startswith("__")]:
                del result[key]
            disk.check(out_dir)  # a disk nearly full stops the sweep while it can stop cleanly

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
            status, message = failure_status(_trial_exception(trial))
            row = {"trial_id": trial.trial_id, "status": status, "error": message}
            row.update(_config_columns(trial.config))
            self._add(row)

    return ResultsRecorder()
