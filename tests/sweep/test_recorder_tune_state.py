"""What Ray Tune keeps of a recorded trial: its own keys and the objectives, not the row.

Tune stores the result dict its callbacks saw as the trial's last result, keeps running
statistics of every number in it, and writes both into every experiment-state save; with a
row of ~130 columns that made the driver's memory and save time grow with each trial.
"""

from __future__ import annotations

from pathlib import Path

from raymia.results.rows import load_results

KEEP = ["test_acc", "adv", "dtc_adv"]


def _result(width: int) -> dict:
    """A result as Tune hands it to callbacks: Tune's keys and the trial's row."""
    result = {
        "status": "ok",
        "error": None,
        "seed": 0,
        "dataset": "digits",
        "test_acc": 0.9,
        "adv": 0.1,
        "dtc_adv": 0.05,
        "training_iteration": 1,
        "time_this_iter_s": 0.01,
        "time_total_s": 0.01,
        "timestamp": 1_700_000_000,
        "node_ip": "127.0.0.1",
        "pid": 1234,
        "hostname": "host",
        "done": False,
    }
    result.update({f"metric_{i:03d}": i * 0.001 for i in range(width)})
    return result


def _recorded_trial(out_dir: Path, width: int):
    """Record one trial of a `width`-column row the way Tune's controller drives callbacks."""
    from ray.tune.experiment import Trial

    from raymia.sweep.recorder import make_recorder

    out_dir.mkdir()
    recorder = make_recorder(out_dir, keep=KEEP)
    trial = Trial("__fake", stub=True, config={"seed": 0, "mechanisms": {}, "trial": {}})
    result = _result(width)
    # TuneController._process_trial_result: the callbacks see the result first, then the
    # trial stores that same dict (trial.update_last_result) and its metric statistics
    recorder.on_trial_result(0, [trial], trial, result)
    trial.update_last_result(result)
    recorder.on_trial_complete(0, [trial], trial)
    return trial


def test_tune_keeps_the_objectives_of_a_recorded_trial_but_not_its_row(tmp_path):
    trial = _recorded_trial(tmp_path / "sweep", width=125)
    kept = trial.last_result
    assert {k: kept[k] for k in KEEP} == {"test_acc": 0.9, "adv": 0.1, "dtc_adv": 0.05}
    assert not [k for k in kept if k.startswith("metric_") or k in ("status", "dataset")]
    assert not [k for k in trial.metric_analysis if k.startswith("metric_")]
    assert kept["node_ip"] == "127.0.0.1" and kept["training_iteration"] == 1
    # the row itself is on disk, whole
    df = load_results(tmp_path / "sweep")
    assert len(df) == 1 and df.loc[0, "metric_124"] == 0.124 and df.loc[0, "status"] == "ok"


def test_the_trial_state_tune_saves_does_not_grow_with_the_row(tmp_path):
    narrow = _recorded_trial(tmp_path / "narrow", width=5)
    wide = _recorded_trial(tmp_path / "wide", width=125)
    # what each experiment-state save serializes per trial (about 60 KB with the whole row)
    size_narrow = len(narrow.run_metadata.get_json_state())
    size_wide = len(wide.run_metadata.get_json_state())
    assert size_wide < 1.05 * size_narrow, (size_narrow, size_wide)


class _Trial:
    def __init__(self, status: str) -> None:
        self.status = status


class _Controller:
    """The two views of the trials that Tune hands a scheduler; counts walks of all trials."""

    def __init__(self, trials: list) -> None:
        self.trials, self.walks = trials, 0

    def get_trials(self) -> list:
        self.walks += 1
        return self.trials

    def get_live_trials(self) -> set:
        return {t for t in self.trials if t.status not in ("TERMINATED", "ERROR")}


def test_the_scheduler_picks_as_tunes_fifo_without_walking_finished_trials():
    import random

    from ray.tune.schedulers import FIFOScheduler

    from raymia.sweep.scheduler import fifo_scheduler

    ours, tunes = fifo_scheduler(), FIFOScheduler()
    rng = random.Random(0)
    statuses = ["TERMINATED"] * 6 + ["ERROR", "RUNNING", "PENDING", "PAUSED"]
    for _ in range(200):
        trials = [_Trial(rng.choice(statuses)) for _ in range(rng.randint(0, 12))]
        assert ours.choose_trial_to_run(_Controller(trials)) is tunes.choose_trial_to_run(
            _Controller(trials)
        )
    # a long sweep: thousands finished, two running, none waiting
    trials = [_Trial("TERMINATED") for _ in range(5000)]
    trials += [_Trial("RUNNING") for _ in range(2)]
    controller = _Controller(trials)
    assert ours.choose_trial_to_run(controller) is None and controller.walks == 0
