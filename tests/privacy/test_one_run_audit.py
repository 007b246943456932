"""The one-run epsilon bound (raymia.privacy.one_run_audit) on mechanisms of known epsilon: it
stays at
or below the truth in at least 95% of seeds, nears its ceiling when epsilon is large, is 0
without signal, matches the paper's figures, and stays below DP-SGD's epsilon on a trial."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

from raymia.privacy.one_run_audit import (
    canary_note,
    ceiling,
    epsilon_lower_bound,
    guess_counts,
    one_run_bound,
    one_run_columns,
    p_value,
)

DELTA = 1e-5
CANARIES = 200
SEEDS = 100


def randomized_response(eps: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Inclusion bits and scores of an eps-DP mechanism: each canary's bit, told truly with
    probability e^eps / (1 + e^eps) (pure eps-DP per canary), plus a tie-breaking jitter."""
    bits = rng.random(CANARIES) < 0.5
    told = np.where(rng.random(CANARIES) < 1 / (1 + math.exp(-eps)), bits, ~bits)
    return told + 1e-3 * rng.random(CANARIES), bits


def gaussian(mu: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Inclusion bits and scores mu * bit + N(0, 1): mu-GDP per canary."""
    bits = rng.random(CANARIES) < 0.5
    return mu * bits + rng.normal(size=CANARIES), bits


def gdp_epsilon(mu: float, delta: float) -> float:
    """The epsilon of mu-GDP at delta (Dong, Roth & Su): delta(eps) = Phi(-eps/mu + mu/2) -
    e^eps Phi(-eps/mu - mu/2)."""
    gap = lambda e: norm.cdf(-e / mu + mu / 2) - math.exp(e) * norm.cdf(-e / mu - mu / 2) - delta  # noqa: E731
    return brentq(gap, 0.0, 200.0)


def bounds(draw, strength: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([one_run_bound(*draw(strength, rng), DELTA).eps for _ in range(SEEDS)])


@pytest.mark.parametrize("eps", [1.0, 2.0, 4.0])
def test_randomized_response_of_known_epsilon_is_never_overstated(eps):
    found = bounds(randomized_response, eps, seed=int(eps * 10))
    assert (found > eps).mean() <= 0.05
    assert found.mean() > 0.3 * eps  # and it does find leakage
    print(
        f"randomized response eps {eps}: above the truth {(found > eps).mean():.2f}, "
        f"mean bound {found.mean():.3f}"
    )


@pytest.mark.parametrize("mu", [1.0, 2.0])
def test_a_gaussian_mechanism_of_known_epsilon_is_never_overstated(mu):
    truth = gdp_epsilon(mu, DELTA)
    found = bounds(gaussian, mu, seed=int(mu * 100))
    assert (found > truth).mean() <= 0.05 and found.mean() > 0
    print(
        f"Gaussian mu {mu} (eps {truth:.2f} at delta 1e-5): above the truth "
        f"{(found > truth).mean():.2f}, mean bound {found.mean():.3f}"
    )


def test_without_signal_the_bound_is_zero():
    found = bounds(randomized_response, 0.0, seed=7)
    assert (found == 0).mean() >= 0.95


def test_a_large_epsilon_nears_the_ceiling():
    found = bounds(randomized_response, 12.0, seed=8)
    top = ceiling(CANARIES, DELTA)
    assert found.max() <= top + 1e-9 and found.mean() >= 0.99 * top


def test_the_papers_figures_and_the_ceiling_grow_with_the_canaries():
    # every one of r guesses right, one guess count, 95%: about 3.5 at 100 and 5.8 at 1,000
    assert epsilon_lower_bound(100, 100, 100, DELTA, 0.05) == pytest.approx(3.49, abs=0.01)
    assert epsilon_lower_bound(1000, 1000, 1000, DELTA, 0.05) == pytest.approx(5.78, abs=0.01)
    tops = [ceiling(m, DELTA) for m in (20, 100, 260, 900)]
    assert tops == sorted(tops) and tops[0] < 2 < tops[-1]
    # the p-value: no correct guess beyond chance is no evidence; it grows with eps
    assert p_value(100, 50, 25, 0.0, 0.0) > 0.5
    assert p_value(100, 50, 45, 1.0, DELTA) < p_value(100, 50, 45, 2.0, DELTA)
    assert guess_counts(200) == [4, 10, 20, 40, 70, 100, 150]


def test_the_columns_name_the_attack_and_count_the_guesses():
    rng = np.random.default_rng(9)
    scores, bits = randomized_response(8.0, rng)
    columns = one_run_columns({"loss": scores, "merlin": -scores}, bits, "loss", DELTA)
    assert columns["eps_lb_one_run_attack"] == "loss" and columns["eps_lb_one_run"] > 2
    assert columns["eps_lb_one_run_correct"] <= columns["eps_lb_one_run_guesses"] <= CANARIES
    assert columns["eps_lb_one_run_max"] == pytest.approx(ceiling(CANARIES, DELTA))
    assert set(one_run_columns(None, None, None, DELTA).values()) == {None}


@pytest.mark.slow
def test_on_dp_sgd_trials_the_bound_stays_below_dp_epsilon():
    from raymia.trial.runner import run_trial

    for noise in (0.5, 1.0):
        row = run_trial(
            {
                "epochs": 10,
                "mechanisms": {"dp_noise": noise},
                "dtc": {"enabled": False},
                "attacks": {"canaries": 200, "n_bootstrap": 0, "n_permutations": 20},
            },
            threads=1,
        )
        assert row["eps_lb_one_run"] <= row["dp_epsilon"], (noise, row["eps_lb_one_run"])
        assert row["eps_lb_one_run_max"] == pytest.approx(ceiling(200, DELTA))
        print(
            f"DP-SGD noise {noise}: dp_epsilon {row['dp_epsilon']:.2f}, one-run bound "
            f"{row['eps_lb_one_run']:.3f} ({row['eps_lb_one_run_correct']} of "
            f"{row['eps_lb_one_run_guesses']} guesses right, {row['eps_lb_one_run_attack']})"
        )


def test_too_few_canaries_for_a_meaningful_bound_are_said_in_one_line():
    note = canary_note(20, 260, "digits", DELTA)
    assert note is not None and "\n" not in note
    assert "cannot exceed 1.10" in note and "digits holds up to 260 canaries (ceiling 3.65)" in note
    assert (
        canary_note(260, 260, "digits", DELTA) is None and canary_note(0, 260, "x", DELTA) is None
    )
    assert canary_note(20, 20, "my.npz", DELTA).endswith("my.npz holds no more")


@pytest.mark.parametrize("kind", ["constant", "nan", "few levels"])
def test_tied_scores_without_signal_show_nothing_whatever_the_canaries_order(kind):
    """Members come first among the scored canaries: ties broken by position would count as
    right. Scores with ties and no signal: the bound is 0 in at least 95% of seeds."""
    rng = np.random.default_rng(11)
    found = []
    for seed in range(100):
        bits = np.sort(rng.random(CANARIES) < 0.5)[::-1]  # members first, as scored
        noise = {"constant": np.zeros(CANARIES), "nan": np.full(CANARIES, np.nan)}
        scores = noise.get(kind, np.round(rng.random(CANARIES) * 10) / 10)  # 11 levels
        found.append(one_run_bound(scores, bits, DELTA, seed=seed).eps)
    assert (np.array(found) == 0).mean() >= 0.95


def test_canaries_all_drawn_to_one_side_give_counts_and_no_metrics():
    from raymia.privacy.canaries import COLUMNS, canary_columns

    columns = canary_columns({"loss": np.arange(4.0)}, np.ones(4, bool))
    assert columns["canary_members"] == 4 and columns["canary_non_members"] == 0
    assert all(
        columns[c] is None for c in COLUMNS if c not in ("canary_members", "canary_non_members")
    )
