"""Which mechanisms matter: importance on simulated sweeps whose truth is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raymia.results.front import parse_objectives
from raymia.results.importance import (
    MIN_TRIALS,
    front_configurations,
    front_configurations_markdown,
    front_mechanism_sets,
    importance_summary,
    mechanism_importance,
    varied_mechanisms,
)
from raymia.sweep.space import load_space, shipped_space

OBJECTIVES = parse_objectives("acc:max,adv:min,dtc_adv:min")

# The default space's ranges: each mechanism is on in half the trials, at a random strength.
RANGES = {
    "augment": (1, 2),
    "input_noise": (0.01, 0.3),
    "cutout": (1, 4),
    "label_smoothing": (0.01, 0.3),
    "confidence_penalty": (0.01, 1.0),
    "disturb_label": (0.01, 0.2),
    "dropout": (0.01, 0.5),
    "weight_decay": (1e-4, 0.3),
    "early_stopping": (3, 5),
    "dp_noise": (0.5, 2.0),
}


def simulated_sweep(seed: int, n: int = 32) -> pd.DataFrame:
    """Rows of a sweep where DP-SGD alone moves accuracy (on/off), label smoothing alone moves
    the attack advantage (its strength) and weight decay alone the DtC advantage (its log
    strength); every other mechanism is drawn like them and does nothing."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        row = {"trial_id": f"t{i:03d}", "status": "ok", "seed": 0}
        for name, (lo, hi) in RANGES.items():
            on = rng.random() < 0.5
            if name == "weight_decay":
                value = 10 ** rng.uniform(np.log10(lo), np.log10(hi))
            elif isinstance(lo, int):
                value = int(rng.integers(lo, hi + 1))
            else:
                value = rng.uniform(lo, hi)
            row[name] = value if on else 0.0
        wd = row["weight_decay"]
        row["test_acc"] = 0.95 - 0.3 * (row["dp_noise"] > 0) + rng.normal(0, 0.01)
        row["adv"] = 0.1 + 0.8 * row["label_smoothing"] + rng.normal(0, 0.01)
        row["dtc_adv"] = 0.3 - 0.05 * (np.log10(wd) + 4 if wd > 0 else 0) + rng.normal(0, 0.01)
        row["adv_null_q95"] = 0.1  # what chance reaches: the excess is what label smoothing adds
        row["adv_excess"] = max(0.0, row["adv"] - 0.1)
        rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", range(4))
def test_the_mechanism_that_drives_an_objective_ranks_first(seed):
    table = mechanism_importance(
        simulated_sweep(seed), OBJECTIVES, load_space(shipped_space("frontier"))
    )
    assert table["test_acc"].idxmax() == "dp_noise"
    assert table["adv"].idxmax() == "label_smoothing"
    assert table["dtc_adv"].idxmax() == "weight_decay"
    # an irrelevant mechanism explains next to nothing of any objective
    assert table.loc["cutout"].max() < 0.1
    assert np.allclose(table.sum(axis=0), 1.0)


def test_ped_anova_is_offered_and_normalized():
    table = mechanism_importance(simulated_sweep(0, 48), OBJECTIVES, method="ped-anova")
    assert set(table.index) == set(RANGES)
    assert np.allclose(table.sum(axis=0), 1.0)
    with pytest.raises(ValueError, match="importance method"):
        mechanism_importance(simulated_sweep(0), OBJECTIVES, method="shap")


def test_seeds_of_one_configuration_count_once():
    rows = simulated_sweep(1, 12)
    replicated = pd.concat([rows, rows.assign(seed=1, trial_id=rows["trial_id"] + "s1")])
    once = mechanism_importance(rows, OBJECTIVES)
    twice = mechanism_importance(replicated, OBJECTIVES)
    pd.testing.assert_frame_equal(once, twice)
    summary = importance_summary(replicated, OBJECTIVES)
    assert "over 12 completed configurations" in summary


def test_fixed_and_failed_trials_are_left_out():
    rows = simulated_sweep(2, 16).assign(mixup=0.2)  # fixed: not a searched mechanism
    failed = pd.DataFrame([{"trial_id": "x", "status": "failed", "dropout": 0.9}])
    df = pd.concat([rows, failed], ignore_index=True)
    assert "mixup" not in varied_mechanisms(df)
    assert list(mechanism_importance(df, OBJECTIVES).columns) == ["test_acc", "adv", "dtc_adv"]


def test_too_few_trials_give_one_line():
    text = importance_summary(simulated_sweep(0, MIN_TRIALS - 1), OBJECTIVES)
    assert text == (
        f"{MIN_TRIALS - 1} completed configuration(s), fewer than {MIN_TRIALS}: not enough to "
        "say which mechanisms matter."
    )
    enough = importance_summary(simulated_sweep(0, 24), OBJECTIVES)
    assert "Most important: `test_acc`: dp_noise" in enough
    assert "| mechanism | test_acc ↑ | adv ↓ | dtc_adv ↓ |" in enough


def test_front_lists_its_few_active_mechanisms():
    df = pd.DataFrame(
        [
            {"trial_id": "a", "status": "ok", "test_acc": 0.9, "adv": 0.3, "dropout": 0.3},
            {"trial_id": "b", "status": "ok", "test_acc": 0.8, "adv": 0.1, "dp_noise": 1.0},
            {"trial_id": "c", "status": "ok", "test_acc": 0.7, "adv": 0.2, "dropout": 0.1},
        ]
    )
    front = front_configurations(df, parse_objectives("acc:max,adv:min"))
    assert front[["trial_id", "active", "n_on"]].values.tolist() == [
        ["a", "dropout=0.3", 1],
        ["b", "dp_noise=1", 1],
    ]
    sets = front_mechanism_sets(front.assign(mechanisms=["dropout", "dropout"]))
    assert sets.values.tolist() == [["dropout", 1, 2, "a, b"]]
    table = front_configurations_markdown(front, parse_objectives("acc:max,adv:min"))
    assert "| a | dropout=0.3 | 1 | 0.900 | 0.300 |" in table


def test_report_says_which_mechanisms_matter(tmp_path):
    from raymia.analysis.report import write_report
    from raymia.results.rows import write_trials

    rows = simulated_sweep(3, 16)
    rows["dataset"], rows["adv_null_q95"], rows["dtc_adv_null_q95"] = "digits", 0.1, 0.1
    write_trials(tmp_path, rows.to_dict("records"))
    text = write_report(tmp_path, max_roc=0).read_text()
    section = text.split("## Which mechanisms matter", 1)[1].split("\n## ", 1)[0]
    assert "Most important: `test_acc`: dp_noise" in section
    assert "| mechanisms on | n | front trials |" in section


def test_sweep_prints_the_importance_after_the_front(tmp_path):
    from raymia.sweep.command import mechanisms_that_matter
    from raymia.sweep.settings import SweepSettings

    settings = SweepSettings(space="frontier.yaml", out=str(tmp_path))  # no space.yaml: rows
    text = mechanisms_that_matter(simulated_sweep(0, 16), settings)
    assert "Most important: `test_acc`: dp_noise" in text
    assert "not enough" in mechanisms_that_matter(simulated_sweep(0, 4), settings)


def test_a_large_sweep_is_sampled():
    rows = simulated_sweep(5, 60)
    text = importance_summary(rows, OBJECTIVES, max_configurations=40)
    assert "over a random 40 of 60 completed configurations" in text
    assert "`adv`: label_smoothing" in text
