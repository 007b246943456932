"""Ray Tune's bookkeeping of finished trials, held to a window of the latest ones.

Tune keeps every trial it ever ran in its controller's trial list (a `Trial` with its config,
storage context, checkpoint manager and last result: tens of KB each), writes each of them
into every experiment-state save, and its progress callback keeps every finished `Trial` in
sets of its own. Over a 100,000-trial sweep that is gigabytes held and rewritten for trials
whose rows raymia has already recorded (`raymia.sweep.recorder`). The window here drops a
finished trial from all of them once more than `keep` finished trials are held (the oldest
first, each time a trial is added), so the driver's memory and the size of each state save
for Tune's trials stay bounded by the window, not the sweep.

Nothing a resume needs is lost: a finished trial's row is on disk before it can leave the
window, Tune's searcher keeps its own count of trials started (so `num_samples` still
holds), and `Tuner.restore` re-queues only unfinished trials, which are never dropped. The
progress table then lists the trials in the window and says how many earlier ones it no
longer lists. Ray is imported when the callbacks are built.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["KEEP_ENV", "KEEP_FINISHED", "TrialWindow", "trial_window"]

#: Finished trials Tune keeps (and saves into its state) before the oldest are dropped;
#: the environment variable `KEEP_ENV` overrides it (a smaller window in tests).
KEEP_FINISHED = 100
KEEP_ENV = "RAYMIA_TUNE_KEEP_FINISHED"


class TrialWindow:
    """Holds Tune's finished trials to the latest `keep` (`prune`), with the progress
    callback and table that go with it.

    `callbacks` go into `RunConfig(callbacks=...)` (Tune's per-trial progress lines, forgetting
    what the window drops); `reporter` is the `CLIReporter` to pass as `progress_reporter`;
    `dropped` counts the finished trials no longer held; the scheduler calls `prune` with
    Tune's controller each time a trial is added.
    """

    def __init__(self, keep: int, callbacks: list[Any], reporter: Any, forget: Any) -> None:
        self.keep = keep
        self.callbacks = callbacks
        self.reporter = reporter
        self.dropped = 0
        self._forget = forget

    def prune(self, controller: Any) -> int:
        """Drop the oldest finished trials beyond `keep` from Tune's controller (its trial
        list, its sets of trials by status and the per-trial states it writes into every
        experiment-state save); return how many were dropped. A controller without those
        attributes is left as it is."""
        from ray.tune.experiment import Trial

        controller = getattr(controller, "_tune_controller", controller)  # the scheduler's view
        trials = getattr(controller, "_trials", None)
        states = getattr(controller, "_trial_metadata", None)
        to_save = getattr(controller, "_trials_to_cache", None)
        if not isinstance(trials, list) or not isinstance(states, dict) or to_save is None:
            return 0
        finished = [t for t in trials if t.status in (Trial.TERMINATED, Trial.ERROR)]
        if len(finished) <= self.keep:
            return 0
        drop = set(finished[: len(finished) - self.keep])
        trials[:] = [trial for trial in trials if trial not in drop]
        # the sets by status where Tune files finished trials (never read for them again)
        by_status = [
            getattr(controller, name, set()) for name in ("_stopped_trials", "_failed_trials")
        ]
        for trial in drop:
            states.pop(trial.trial_id, None)
            to_save.discard(trial)
            for filed in by_status:
                filed.discard(trial)
        self._forget(drop)
        self.dropped += len(drop)
        return len(drop)


def trial_window(keep: int | None = None, **reporter_kwargs: Any) -> TrialWindow:
    """Return the window that keeps at most `keep` finished trials (default: `KEEP_ENV` if
    set, else `KEEP_FINISHED`) in Tune's controller; `reporter_kwargs` go to Tune's
    `CLIReporter`."""
    from ray.tune import CLIReporter
    from ray.tune.progress_reporter import TrialProgressCallback

    class ForgetfulProgress(TrialProgressCallback):
        """Tune's per-trial progress lines, forgetting the trials the window drops."""

        def forget(self, trials: set[Any]) -> None:
            self._completed_trials -= trials
            for table in (self._last_print, self._last_print_iteration, self._last_result_str):
                for trial in trials & table.keys():
                    del table[trial]

    class WindowReporter(CLIReporter):
        """Tune's progress table, saying how many earlier finished trials it omits."""

        def report(self, trials: list[Any], done: bool, *sys_info: Any) -> None:
            if window.dropped:
                sys_info = (
                    *sys_info,
                    f"{window.dropped} earlier finished trials are recorded in trials.parquet "
                    "and no longer listed",
                )
            super().report(trials, done, *sys_info)

    progress = ForgetfulProgress()
    if keep is None:
        keep = int(os.environ.get(KEEP_ENV, KEEP_FINISHED))
    window = TrialWindow(
        keep,
        callbacks=[progress],
        reporter=WindowReporter(**reporter_kwargs),
        forget=progress.forget,
    )
    return window
