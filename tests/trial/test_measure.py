"""End-to-end privacy measurement on digits: known directions of effect."""

from __future__ import annotations

import numpy as np
import pytest

from raymia.trial.runner import run_trial

# Few members trained long: a target that memorizes.
MEMORIZING = {
    "members": 100,
    "non_members": 100,
    "reference": 400,
    "epochs": 40,
    "attacks": {"merlin_neighbours": 30, "n_bootstrap": 100, "n_permutations": 100},
    "dtc": {"max_samples": 100, "bisection_steps": 6, "pgd_steps": 10},
}


@pytest.fixture(scope="module")
def memorizing_row():
    return run_trial(MEMORIZING)


@pytest.mark.slow
def test_memorizing_target_leaks_to_the_loss_attack(memorizing_row):
    row = memorizing_row
    assert row["loss_adv"] > 0.3
    assert row["loss_adv"] > row["loss_adv_null_q95"] and row["loss_adv_p"] < 0.05
    assert row["loss_adv_lo"] <= row["loss_adv"] <= row["loss_adv_hi"]
    assert row["adv"] == max(
        row[f"{a}_adv"]
        for a in ("loss", "merlin", "confidence", "entropy", "modified_entropy", "rmia")
    )
    # calibrated on a shadow model's data: real, and no better than the optimistic bound
    assert row["loss_adv_calibrated"] <= row["loss_adv"] + 1e-9
    assert row["loss_yeom_adv"] > 0.1


@pytest.mark.slow
def test_members_are_closer_to_confident(memorizing_row):
    row = memorizing_row
    assert row["dtc_median_member"] < row["dtc_median_non_member"]
    assert row["dtc_auc"] > 0.5
    assert 0 <= row["dtc_censored"] <= 1


@pytest.mark.slow
def test_per_sample_scores_are_returned_alongside(memorizing_row):
    scores = memorizing_row["scores"]
    n = len(scores["is_member"])
    assert scores["is_member"].sum() == n // 2 == memorizing_row["eval_members"]
    assert all(len(v) == n for v in scores.values())
    assert {"score_loss", "score_merlin", "dtc", "dtc_censored", "sample_index"} <= set(scores)
    assert np.isfinite(scores["dtc"]).sum() == min(n, 100)  # max_samples measured, rest NaN


@pytest.mark.slow
def test_strong_dp_sgd_leaves_no_leakage_above_the_null(memorizing_row):
    dp = {"epochs": 30, "lr": 0.01, "batch_size": 32, "mechanisms": {"dp_noise": 3.0}}
    row = run_trial({**MEMORIZING, **dp})
    assert row["dp_delta"] == 1e-5 and row["dp_epsilon"] < 5  # 4.2 at delta 1e-5
    assert row["test_acc"] > 0.25  # it learned something (chance is 0.1)
    assert row["loss_adv"] < memorizing_row["loss_adv"]
    assert row["loss_adv"] <= row["loss_adv_null_q95"] or row["loss_adv_p"] > 0.05
    assert row["adv"] <= row["adv_null_q95"] or row["adv_p"] > 0.05


@pytest.mark.slow
def test_lira_runs_with_reference_models():
    row = run_trial(
        {
            **MEMORIZING,
            "epochs": 15,
            "dtc": {"enabled": False},
            "attacks": {**MEMORIZING["attacks"], "lira_reference_models": 2},
        }
    )
    assert 0 <= row["lira_adv"] <= 1 and row["lira_auc"] > 0.5
    assert "lira_adv_calibrated" not in row  # LiRA has no shadow thresholds to calibrate with


def test_evaluation_is_balanced_within_every_class(small_digits):
    from raymia.trial.measure import balanced_evaluation

    ev = balanced_evaluation(small_digits.members, small_digits.non_members, seed=0)
    labels = ev.y.numpy()
    for c in range(10):
        assert (labels[ev.is_member] == c).sum() == (labels[~ev.is_member] == c).sum()
    assert set(ev.indices[ev.is_member]) <= set(small_digits.members.indices)
    assert set(ev.indices[~ev.is_member]) <= set(small_digits.non_members.indices)


@pytest.mark.slow
def test_every_leakage_objective_has_its_null(memorizing_row):
    """`adv` is a maximum over attacks, so its null is the null of that maximum: at least each
    single attack's; the excess columns measure how far each objective clears its null."""
    row = memorizing_row
    singles = [row[f"{a}_adv_null_q95"] for a in ("loss", "merlin", "entropy", "modified_entropy")]
    assert row["adv_null_q95"] >= max(singles) - 0.02  # same permutations up to seeds
    assert 0 < row["adv_p"] <= 1
    assert row["adv_excess"] == pytest.approx(max(0.0, row["adv"] - row["adv_null_q95"]))
    assert row["adv_excess"] > 0  # a memorizing target leaks beyond chance
    assert 0 < row["dtc_adv_null_q95"] < 1 and 0 < row["dtc_adv_p"] <= 1
    assert row["dtc_adv_excess"] == pytest.approx(
        max(0.0, row["dtc_adv"] - row["dtc_adv_null_q95"])
    )
