"""The empirical epsilon: exact rate bounds, the DP inequality, coverage under a mechanism of
known epsilon, and DP-SGD trials whose bound must stay below their accountant's epsilon."""

from __future__ import annotations

import math

import numpy as np
import pytest

from raymia.privacy import empirical_epsilon, metrics
from raymia.trial.runner import objective_columns


def test_rate_upper_bound_is_the_exact_clopper_pearson_end():
    assert empirical_epsilon.rate_upper_bound(0, 100) == pytest.approx(1 - 0.025 ** (1 / 100))
    for k in (0, 3, 50, 99):
        assert empirical_epsilon.rate_upper_bound(k, 100) == pytest.approx(
            metrics.clopper_pearson(k, 100, 0.95)[1]
        )
    assert empirical_epsilon.rate_upper_bound(100, 100) == 1.0
    with pytest.raises(ValueError):
        empirical_epsilon.rate_upper_bound(5, 4)


def test_epsilon_from_rates_known_answers():
    # FPR 0.1, FNR 0.2: max(log(0.8 / 0.1), log(0.9 / 0.2)) = log 8
    assert empirical_epsilon.epsilon_from_rates(0.1, 0.2, 0.0) == pytest.approx(math.log(8))
    assert empirical_epsilon.epsilon_from_rates(0.2, 0.1, 0.0) == pytest.approx(math.log(8))
    # delta shifts both numerators
    assert empirical_epsilon.epsilon_from_rates(0.1, 0.2, 0.1) == pytest.approx(math.log(7))
    # chance (FPR + FNR = 1) and worse give 0
    assert empirical_epsilon.epsilon_from_rates(0.5, 0.5, 0.0) == 0.0
    assert empirical_epsilon.epsilon_from_rates(0.9, 0.9, 0.0) == 0.0


def _randomized_response(eps: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (scores, is_member) of an eps-DP mechanism on each sample's membership bit: the
    bit itself with probability e^eps / (1 + e^eps), otherwise flipped, plus independent noise
    (post-processing, which keeps eps-DP) so that thresholds are many."""
    rng = np.random.default_rng(seed)
    member = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    keep = rng.random(2 * n) < math.exp(eps) / (1 + math.exp(eps))
    bit = np.where(keep, member, ~member)
    return bit + rng.uniform(0, 0.5, size=2 * n), member


@pytest.mark.parametrize("eps", [0.5, 1.0, 2.0, 4.0])
def test_the_bound_covers_a_known_epsilon(eps):
    n_seeds = 200
    bounds = np.array(
        [
            empirical_epsilon.empirical_epsilon(
                {"rr": _randomized_response(eps, 500, s)[0]},
                _randomized_response(eps, 500, s)[1],
                delta=0.0,
                seed=s,
            ).eps_lb
            for s in range(n_seeds)
        ]
    )
    violations = np.mean(bounds > eps)
    print(f"eps {eps}: mean eps_lb {bounds.mean():.3f}, violation rate {violations:.3f}")
    assert violations <= 0.05
    if eps >= 2.0:
        assert np.mean(bounds > 0) > 0.95  # a large epsilon is detected with confidence
        assert bounds.mean() > eps / 2


def test_the_bound_grows_with_epsilon_and_is_zero_without_leakage():
    means = []
    for eps in (0.0, 1.0, 3.0):
        bounds = [
            empirical_epsilon.empirical_epsilon(
                {"rr": _randomized_response(eps, 500, s)[0]},
                _randomized_response(eps, 500, s)[1],
                1e-5,
                seed=s,
            ).eps_lb
            for s in range(20)
        ]
        means.append(np.mean(bounds))
    assert means[0] < 0.05 and means[0] < means[1] < means[2]


def test_threshold_and_attack_are_chosen_on_the_other_half():
    """Pure noise scores with a best threshold picked on the same samples would claim leakage;
    choosing it on one half and measuring on the other does not."""
    rng = np.random.default_rng(0)
    member = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    claimed = [
        empirical_epsilon.empirical_epsilon(
            {f"a{i}": rng.normal(size=600) for i in range(5)}, member, 1e-5, seed=s
        ).eps_lb
        for s in range(40)
    ]
    assert np.mean(np.array(claimed) > 0) <= 0.1


def test_columns_name_the_attack_and_eps_lb_is_an_objective():
    scores, member = _randomized_response(4.0, 300, 1)
    columns = empirical_epsilon.epsilon_columns({"rr": scores, "noise": -scores}, member, 1e-5, 1)
    assert list(columns) == list(empirical_epsilon.COLUMNS)
    assert columns["eps_lb"] > 0 and columns["eps_lb_attack"] == "rr"
    assert "eps_lb" in objective_columns()


@pytest.mark.slow
def test_dp_sgd_trials_stay_below_their_epsilon():
    """A consistency check of the attacks and the accountant: at three noise levels the
    empirical bound never exceeds the accountant's epsilon."""
    import torch

    from raymia.trial.runner import run_trial

    torch.set_num_threads(2)
    base = {
        "members": 200,
        "non_members": 200,
        "epochs": 8,
        "lr": 0.01,
        "batch_size": 32,
        "device": "cpu",
        "attacks": {"merlin_neighbours": 5, "n_bootstrap": 0, "n_permutations": 0},
        "dtc": {"enabled": False},
    }
    for noise in (0.3, 1.0, 3.0):
        row = run_trial({**base, "mechanisms": {"dp_noise": noise}})
        print(f"dp_noise {noise}: dp_epsilon {row['dp_epsilon']:.2f}, eps_lb {row['eps_lb']:.3f}")
        assert 0.0 <= row["eps_lb"] <= row["dp_epsilon"]
