"""Time limits and retries that fit the failure: a hung trial ends as a `timeout` row, a
trial's own failure is recorded once and never retried, a crashed worker is retried."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from helpers.local_ray import local_ray

from raymia import deadline
from raymia.sweep.run import run_sweep
from raymia.sweep.settings import SweepSettings
from raymia.sweep.worker import guarded_row

#: where the test's trials log each call (set by the test, inherited by Ray's workers)
CALLS_ENV = "RAYMIA_TEST_CALLS"

GRID_SPACE = """
trial: {epochs: 1, members: 150, non_members: 150, reference: 300}
seeds: [0]
grid:
  - {dropout: 0.0}   # loops in raymia's own code: stops at its next deadline check
  - {dropout: 0.1}   # raises: a deterministic failure
  - {dropout: 0.3}   # stuck outside raymia's loops: given up, its worker replaced
  - {dropout: 0.2}   # a quick ok trial (runs where the stuck one ran: that worker is replaced)
"""


def _behave(params: dict, pool: object = None) -> dict:
    """The trial's body, by dropout: hang cooperatively, fail, hang for good, or succeed."""
    dropout = params["mechanisms"]["dropout"]
    with open(os.environ[CALLS_ENV], "a") as f:
        f.write(f"{dropout}\n")
    if dropout == 0.0:
        while True:
            deadline.check()
            time.sleep(0.01)
    if dropout == 0.1:
        raise RuntimeError("injected failure for the test")
    if dropout == 0.3:
        time.sleep(600)
    return {"status": "ok", "test_acc": 0.9, "adv": 0.1, "dtc_adv": 0.05, "dropout": dropout}


def timing_trainable(params: dict, pool: object = None, timeout: float | None = None) -> None:
    """The sweep's trainable, with `_behave` as the trial."""
    from ray import tune

    tune.report(guarded_row(_behave, params, pool, timeout))


@pytest.mark.slow
def test_hung_trials_end_as_timeout_rows_and_only_crashes_are_retried(tmp_path, monkeypatch):
    from ray import cloudpickle

    from raymia.sweep import run as sweep_run

    space = tmp_path / "grid.yaml"
    space.write_text(GRID_SPACE)
    calls = tmp_path / "calls.txt"
    calls.touch()
    monkeypatch.setenv(CALLS_ENV, str(calls))
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(sweep_run, "trainable", timing_trainable)
    settings = SweepSettings(
        space=str(space),
        out=str(tmp_path / "out"),
        search="grid",
        max_concurrent=1,
        trial_timeout=2.0,
    )
    started = time.monotonic()
    # a Ray the caller started (as a notebook would): the time limit holds there too
    with local_ray(2):
        df = run_sweep(settings)
    elapsed = time.monotonic() - started
    status = dict(zip(df["dropout"], df["status"], strict=True))
    assert status == {0.0: "timeout", 0.1: "failed", 0.3: "timeout", 0.2: "ok"}
    errors = dict(zip(df["dropout"], df["error"], strict=True))
    assert "time limit of 2 s" in errors[0.0] and "did not stop" in errors[0.3]
    assert "injected failure" in errors[0.1]
    # every trial's body ran once: the failure was not retried, and the trial that met the
    # stuck trial's worker was retried on a fresh one before its body ran
    assert sorted(Path(calls).read_text().split()) == ["0.0", "0.1", "0.2", "0.3"]
    assert elapsed < 120


def test_the_deadline_raises_only_past_its_limit():
    deadline.start(60)
    deadline.check()
    assert 0 < deadline.remaining() <= 60
    deadline.start(-1)
    with pytest.raises(deadline.TrialTimeout, match="time limit of -1 s"):
        deadline.check()
    deadline.clear()
    deadline.check()
    assert deadline.remaining() is None


def test_a_trials_own_failure_becomes_a_row_not_an_exception(monkeypatch):
    import ray

    monkeypatch.setattr(
        ray, "get_runtime_context", lambda: type("C", (), {"get_node_id": lambda self: "node"})()
    )

    def diverge(params, pool=None):
        from raymia.trial.train import TrainingDiverged

        raise TrainingDiverged("training loss became nan in epoch 1")

    row = guarded_row(diverge, {"mechanisms": {}}, None, timeout=5)
    assert row["status"] == "diverged" and "loss became nan" in row["error"]
    assert row["test_acc"] != row["test_acc"]  # NaN objectives: Optuna is told FAIL
    assert row["finished_at"] >= row["started_at"]
