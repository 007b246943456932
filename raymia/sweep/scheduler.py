"""Ray Tune's first-in-first-out trial scheduling at a cost that does not grow with the sweep.

Tune's default `FIFOScheduler` looks for a trial to start by walking every trial of the
experiment, finished ones included, twice at each step of Tune's event loop (several steps per
trial); over a long sweep that walk is a driver cost that grows with each trial. The scheduler
here makes the same choice from the trials that are not finished yet. Ray is imported when
the scheduler is built.
"""

from __future__ import annotations

from typing import Any

__all__ = ["fifo_scheduler"]


def fifo_scheduler(window: Any = None) -> Any:
    """Return a Tune scheduler that starts trials in Tune's FIFO order (the first pending
    trial, else the first paused one), looking only at the trials that are not finished;
    with a `raymia.sweep.window.TrialWindow`, it prunes Tune's finished trials to the window
    each time a trial is added."""
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import FIFOScheduler

    class LiveFIFOScheduler(FIFOScheduler):
        def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
            super().on_trial_add(tune_controller, trial)
            if window is not None:  # a safe point: Tune is not iterating over its trials
                window.prune(tune_controller)

        def choose_trial_to_run(self, tune_controller: Any) -> Any:
            live = tune_controller.get_live_trials()  # every PENDING and PAUSED trial is live
            for status in (Trial.PENDING, Trial.PAUSED):
                candidates = [trial for trial in live if trial.status == status]
                if len(candidates) == 1:
                    return candidates[0]
                if candidates:  # the first in Tune's order, as FIFOScheduler picks
                    wanted = set(candidates)
                    return next(t for t in tune_controller.get_trials() if t in wanted)
            return None

    return LiveFIFOScheduler()
