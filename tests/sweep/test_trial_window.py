"""Tune's finished trials held to a window: dropped from every structure of the controller
that would keep them (and write them into each experiment-state save) for the whole sweep."""

from __future__ import annotations

import gc
import weakref

from raymia.sweep.window import trial_window


class _Controller:
    """The attributes of Tune's TuneController that hold finished trials."""

    def __init__(self, trials):
        from ray.tune.experiment import Trial

        self._trials = list(trials)
        self._trial_metadata = {t.trial_id: f"state of {t.trial_id}" for t in trials}
        self._trials_to_cache = set(trials)
        self._stopped_trials = {t for t in trials if t.status == Trial.TERMINATED}
        self._failed_trials = {t for t in trials if t.status == Trial.ERROR}


class _SchedulerView:
    """What a scheduler is handed: a wrapper around the controller."""

    def __init__(self, controller):
        self._tune_controller = controller


def _trials(statuses):
    from ray.tune.experiment import Trial

    out = []
    for i, status in enumerate(statuses):
        trial = Trial("__fake", stub=True, config={"i": i}, trial_id=f"t{i:02d}")
        trial.status = status
        out.append(trial)
    return out


def test_the_oldest_finished_trials_leave_every_structure_and_are_freed():
    from ray.tune.experiment import Trial

    window = trial_window(keep=2)
    statuses = [Trial.TERMINATED, Trial.ERROR, Trial.RUNNING, Trial.TERMINATED]
    statuses += [Trial.PENDING, Trial.TERMINATED]
    trials = _trials(statuses)
    progress = window.callbacks[0]
    progress.on_trial_complete(0, trials, trials[0])  # Tune's progress lines remember it
    controller = _Controller(trials)
    dead = [weakref.ref(trials[0]), weakref.ref(trials[1])]
    assert window.prune(_SchedulerView(controller)) == 2
    # the two oldest finished go; the running, the pending and the latest 2 finished stay
    assert [t.trial_id for t in controller._trials] == ["t02", "t03", "t04", "t05"]
    assert sorted(controller._trial_metadata) == ["t02", "t03", "t04", "t05"]
    assert {t.trial_id for t in controller._trials_to_cache} == {"t02", "t03", "t04", "t05"}
    assert {t.trial_id for t in controller._stopped_trials} == {"t03", "t05"}
    assert controller._failed_trials == set()
    assert window.dropped == 2
    del trials
    gc.collect()
    assert [ref() for ref in dead] == [None, None]  # nothing else of the window holds them
    # within the window nothing more is dropped
    assert window.prune(_SchedulerView(controller)) == 0 and len(controller._trials) == 4


def test_a_controller_without_those_attributes_is_left_alone():
    window = trial_window(keep=0)
    assert window.prune(object()) == 0 and window.dropped == 0
