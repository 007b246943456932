"""An empirical lower bound on the privacy loss epsilon (Jagielski, Ullman & Oprea 2020).

An (epsilon, delta)-DP training algorithm bounds every membership test: its false positive
and false negative rates satisfy FPR + e^eps FNR >= 1 - delta and FNR + e^eps FPR >= 1 - delta.
So an attack that reaches some (FPR, FNR) shows

    eps >= max(log((1 - delta - FNR) / FPR), log((1 - delta - FPR) / FNR)).

To make that a statement with confidence, the rates are replaced by exact (Clopper-Pearson)
upper bounds, and the threshold (and the attack) are chosen on one half of the audited samples
and the rates measured on the other, so the selection cannot overfit the counts:

    eps_lb = max(0, log((1 - delta - FNR_hi) / FPR_hi), log((1 - delta - FPR_hi) / FNR_hi)).

FPR_hi and FNR_hi are one-sided upper bounds at 1 - alpha / 2 each (the upper ends of the 95%
two-sided intervals for alpha = 0.05, as the paper's 95% Clopper-Pearson intervals), so both
hold at once with probability >= 95% and then eps_lb <= the true epsilon of any (eps, delta)-DP
mechanism. For a DP-SGD trial ``eps_lb`` must stay below ``dp_epsilon``; for any other trial it
is a leakage figure comparable across mechanisms, and a sweep may optimize it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

__all__ = [
    "COLUMNS",
    "OBJECTIVE_COLUMNS",
    "EpsilonBound",
    "empirical_epsilon",
    "epsilon_columns",
    "epsilon_from_rates",
    "rate_upper_bound",
]

#: The result columns this module adds to a trial's row, in order.
COLUMNS = ("eps_lb", "eps_lb_attack")
#: The ones a sweep may optimize.
OBJECTIVE_COLUMNS = ("eps_lb",)


@dataclass(frozen=True)
class EpsilonBound:
    """An empirical epsilon: the bound, the attack and threshold chosen on the selection half,
    and the upper bounds of the rates measured on the other half."""

    eps_lb: float
    attack: str | None
    threshold: float
    fpr_hi: float
    fnr_hi: float


def rate_upper_bound(errors: np.ndarray | int, trials: int, alpha: float = 0.05) -> np.ndarray:
    """Return the exact one-sided Clopper-Pearson upper bound at confidence 1 - alpha / 2 on an
    error rate seen as `errors` of `trials` (1 where errors = trials), elementwise.

    E.g. 0 of 100 gives 0.0362: the upper end of the two-sided 95% interval.
    """
    k = np.asarray(errors, dtype=np.float64)
    if trials < 1 or np.any((k < 0) | (k > trials)):
        raise ValueError(f"need 0 <= errors <= trials and trials >= 1, got {errors} of {trials}")
    with np.errstate(invalid="ignore"):
        high = beta.ppf(1.0 - alpha / 2.0, k + 1.0, np.maximum(trials - k, 1e-300))
    return np.where(k >= trials, 1.0, high)


def epsilon_from_rates(
    fpr: np.ndarray | float, fnr: np.ndarray | float, delta: float
) -> np.ndarray:
    """Return max(0, log((1 - delta - fnr) / fpr), log((1 - delta - fpr) / fnr)), elementwise:
    the epsilon an (eps, delta)-DP mechanism needs to allow a test with these error rates
    (0 where the rates are no better than chance; +inf where a rate is 0)."""
    fpr = np.asarray(fpr, dtype=np.float64)
    fnr = np.asarray(fnr, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        one = np.log(np.maximum(1.0 - delta - fnr, 0.0) / fpr)
        two = np.log(np.maximum(1.0 - delta - fpr, 0.0) / fnr)
    return np.maximum(0.0, np.nan_to_num(np.maximum(one, two), nan=0.0, neginf=0.0))


def _errors_at_thresholds(
    scores: np.ndarray, member: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (thresholds, false positives, false negatives) for 'member when score >= t' at
    every distinct score and +inf (nobody a member)."""
    thresholds = np.r_[np.inf, np.unique(scores)[::-1]]
    pos = np.sort(scores[member])
    neg = np.sort(scores[~member])
    false_neg = np.searchsorted(pos, thresholds, side="left")
    false_pos = neg.size - np.searchsorted(neg, thresholds, side="left")
    return thresholds, false_pos, false_neg


def _halves(is_member: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (selection, measurement) masks: each class cut in two random halves."""
    rng = np.random.default_rng([seed, 23])
    select = np.zeros(is_member.size, dtype=bool)
    for side in (True, False):
        rows = rng.permutation(np.flatnonzero(is_member == side))
        select[rows[: rows.size // 2]] = True
    return select, ~select


def empirical_epsilon(
    scores: Mapping[str, np.ndarray],
    is_member: np.ndarray,
    delta: float,
    seed: int = 0,
    alpha: float = 0.05,
) -> EpsilonBound:
    """Return the empirical epsilon of the attacks' scores at `delta`, with confidence 1 - alpha.

    ``scores`` maps attack name to per-sample scores (higher: member) over the same samples.
    Members and non-members are each cut in two random halves (by `seed`). On the selection
    half every attack and threshold is tried and the pair whose bound (with its own
    Clopper-Pearson rates) is largest is kept; on the measurement half that pair's false
    positive and false negative counts give FPR_hi and FNR_hi (:func:`rate_upper_bound`) and
    eps_lb (:func:`epsilon_from_rates`, 0 when negative). NaN scores count as least-member.
    """
    member = np.asarray(is_member, dtype=bool)
    if not scores:
        raise ValueError("empirical_epsilon needs at least one attack's scores")
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"delta must be in [0, 1), got {delta}")
    select, measure = _halves(member, seed)
    sizes = [
        (int((member & part).sum()), int((~member & part).sum())) for part in (select, measure)
    ]
    if min(min(pair) for pair in sizes) < 1:
        raise ValueError("empirical_epsilon needs at least two members and two non-members")
    (sel_pos, sel_neg), (mes_pos, mes_neg) = sizes
    best: tuple[float, str | None, float] = (-1.0, None, math.inf)
    for name, values in scores.items():
        s = np.asarray(values, dtype=np.float64)
        s = np.where(np.isnan(s), -np.inf, s)
        thresholds, fp, fn = _errors_at_thresholds(s[select], member[select])
        eps = epsilon_from_rates(
            rate_upper_bound(fp, sel_neg, alpha), rate_upper_bound(fn, sel_pos, alpha), delta
        )
        i = int(np.argmax(eps))
        if eps[i] > best[0]:
            best = (float(eps[i]), name, float(thresholds[i]))
    _, name, threshold = best
    s = np.asarray(scores[str(name)], dtype=np.float64)
    s = np.where(np.isnan(s), -np.inf, s)[measure]
    m = member[measure]
    predicted = s >= threshold
    fpr_hi = float(rate_upper_bound(int((predicted & ~m).sum()), mes_neg, alpha))
    fnr_hi = float(rate_upper_bound(int((~predicted & m).sum()), mes_pos, alpha))
    eps_lb = float(epsilon_from_rates(fpr_hi, fnr_hi, delta))
    return EpsilonBound(eps_lb, name, threshold, fpr_hi, fnr_hi)


def epsilon_columns(
    scores: Mapping[str, np.ndarray], is_member: np.ndarray, delta: float, seed: int
) -> dict[str, float | str | None]:
    """Return the row's :data:`COLUMNS`: ``eps_lb`` (:func:`empirical_epsilon` over every
    attack that ran, at `delta`) and ``eps_lb_attack``, the attack it came from (None when the
    bound is 0)."""
    bound = empirical_epsilon(scores, is_member, delta, seed)
    return {"eps_lb": bound.eps_lb, "eps_lb_attack": bound.attack if bound.eps_lb > 0 else None}
