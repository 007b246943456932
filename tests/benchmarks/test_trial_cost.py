"""The cost benchmark's own arithmetic: sizes, settings and the growth it reports."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_path = Path(__file__).resolve().parents[2] / "benchmarks" / "trial_cost.py"
_spec = importlib.util.spec_from_file_location("trial_cost", _path)
trial_cost = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(trial_cost)


def test_the_slope_is_the_growth_exponent():
    xs = [100, 1_000, 10_000]
    assert trial_cost.slope(xs, [2 * x for x in xs]) == pytest.approx(1.0)
    assert trial_cost.slope(xs, [x**2 / 7 for x in xs]) == pytest.approx(2.0)
    assert trial_cost.slope(xs, [5.0, 5.0, 5.0]) == pytest.approx(0.0, abs=1e-12)
    assert trial_cost.slope([100], [1.0]) is None  # one size: no slope
    assert trial_cost.slope(xs, [0.0, 0.0, 0.0]) is None  # a part that never ran


def test_sizes_and_settings_become_trial_configs():
    config = trial_cost.trial_config(
        "synthetic-10000", 2, ["attacks.merlin_neighbours=20", "dtc.enabled=false"]
    )
    assert config["dataset"] == "synthetic-cifar10" and config["members"] == 10_000
    assert config["epochs"] == 2
    assert config["attacks"] == {"merlin_neighbours": 20} and config["dtc"] == {"enabled": False}
    assert "attacks" not in trial_cost.SIZES["synthetic-10000"]  # the table is not changed

    from raymia.trial.config import parse_trial_config

    for size in trial_cost.SIZES:  # every size is a valid trial that fits its data set
        parse_trial_config(trial_cost.trial_config(size, None, []))


def test_the_report_names_every_part_with_its_slope_and_the_ratio():
    def result(scored, seconds):
        costs = {
            "target training": {"seconds": seconds, "calls": 1, "peak_bytes": 2**30},
            "merlin": {"seconds": seconds * 2, "calls": 2, "peak_bytes": None},
        }
        return {
            "scored": scored,
            "train_seconds": seconds,
            "reference_seconds": 1.0,
            "measure_seconds": 3 * seconds + 1.0,
            "test_acc": 0.9,
            "costs": costs,
        }

    results = {"digits": result(100, 1.0), "synthetic-2500": result(1_000, 10.0)}
    results["synthetic-10000"] = result(4_000, 80.0)  # 8x for 4x: quadratic within the pair
    text = trial_cost.report(results)
    assert "| merlin | 2.00 | 20.00 | 160.00 | 1.50 | 1.17 |" in text
    assert "| peak memory | 1.00 GB | 1.00 GB | 1.00 GB | | |" in text
    # which part reaches the peak: each part's own, n/a where it was not measured
    assert "| target training | 1.00 | 1.00 | 1.00 |" in text
    assert "| merlin | n/a | n/a | n/a |" in text
    assert "synthetic-2500: (31.0 - 1.0) / 10.0 s = 3.00x" in text
