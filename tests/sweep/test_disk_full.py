"""A full disk stops the sweep with one line, every trial Optuna recorded has its row, and
the sweep resumes once there is room."""

from __future__ import annotations

import sys

import pytest
from helpers.sweep_journal import trial_states
from helpers.sweep_spaces import tiny_space

from raymia.errors import SweepStopped
from raymia.results.rows import load_results
from raymia.sweep import disk
from raymia.sweep.run import run_sweep
from raymia.sweep.settings import SweepSettings


def quick_trainable(params: dict, pool: object = None, timeout: float | None = None) -> None:
    """A millisecond trial with finite objectives."""
    from ray import tune

    dropout = params["mechanisms"]["dropout"]
    tune.report(
        {
            "status": "ok",
            "test_acc": 0.9 - dropout,
            "adv": 0.1,
            "adv_excess": 0.01,
            "dtc_adv": dropout,
        }
    )


def _complete(out) -> int:
    return trial_states(out).count("COMPLETE")


@pytest.mark.slow
def test_a_full_disk_stops_the_sweep_in_one_line_and_it_resumes(tmp_path, monkeypatch):
    from ray import cloudpickle

    from raymia.sweep import run as sweep_run

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(sweep_run, "trainable", quick_trainable)
    space = tmp_path / "tiny.yaml"
    space.write_text(tiny_space())
    out = tmp_path / "out"
    settings = SweepSettings(
        space=str(space), out=str(out), samples=6, max_concurrent=1, ray_init={"num_cpus": 2}
    )
    results = []

    def filling(path):  # the disk fills up as the second trial lands
        results.append(path)
        return 10 * 2**30 if len(results) < 2 else 2**20

    monkeypatch.setattr(disk, "free_bytes", filling)
    with pytest.raises(SweepStopped) as info:
        run_sweep(settings)
    message = str(info.value)
    assert "\n" not in message and "disk is nearly full (1 MiB free)" in message
    assert "--resume" in message
    rows = load_results(out)
    assert 1 <= len(rows) < 6 and (rows["status"] == "ok").all()
    assert _complete(out) == len(rows)  # no trial Optuna recorded is without its row
    monkeypatch.setattr(disk, "free_bytes", lambda path: 10 * 2**30)
    df = run_sweep(settings, resume=True)
    assert len(df) == 6 and df["trial_id"].is_unique and _complete(out) == 6
