"""Privacy auditing in one training run (Steinke, Nasr & Jagielski, NeurIPS 2023).

The trial's m canaries are each included in the target's training data independently with
probability 1/2 (`raymia.privacy.canaries`). An attack ranks them by its score and guesses: the
k / 2 it scores highest are members, the k / 2 it scores lowest are not, and it abstains on
the rest. If training is (eps, delta)-DP, the number W of correct guesses among the r = k
made is stochastically dominated, up to a delta term, by a binomial at q = e^eps / (1 + e^eps)
(the paper's Theorem 3 / Appendix D):

    P[W >= v] <= P[Bin(r, q) >= v] + 2 m delta max_{1 <= i <= v} P[v - i <= Bin(r, q) < v] / i.

So v correct guesses reject (eps, delta)-DP at level p wherever that p-value is below p; the
bound is the largest such eps (the p-value grows with eps: bisection). The number of guesses
k is not chosen by looking at the inclusion bits: every k of a grid fixed in advance
(:data:`GUESS_FRACTIONS` of m) is tried at level p / len(grid) (Bonferroni) and the largest
bound is reported, with the k that gave it. The attack is the one with the largest advantage
on the trial's ordinary evaluation set, which holds no canary. With every guess correct, r
guesses cannot show more than the bound at v = r: the ceiling, reported beside the bound
(about 3.5 at 100 guesses and 5.8 at 1,000 for delta = 1e-5 and 95%).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

__all__ = [
    "COLUMNS",
    "CONFIDENCE",
    "GUESS_FRACTIONS",
    "OBJECTIVE_COLUMNS",
    "OneRunBound",
    "canary_note",
    "ceiling",
    "epsilon_lower_bound",
    "one_run_bound",
    "one_run_columns",
    "p_value",
]

#: The result columns, in order (all None without canaries).
COLUMNS = (
    "eps_lb_one_run",
    "eps_lb_one_run_max",
    "eps_lb_one_run_guesses",
    "eps_lb_one_run_correct",
    "eps_lb_one_run_attack",
)
#: The ones a sweep may optimize.
OBJECTIVE_COLUMNS = ("eps_lb_one_run",)
#: The bound holds with this confidence (the grid of guess counts shares the 5%).
CONFIDENCE = 0.95
#: The guess counts tried, as shares of the canaries (fixed before any score is seen). Not
#: all of them: half guessed in and half out cannot all be right unless exactly half the
#: canaries are members, while at three quarters they can be whenever the draw leaves 3 in 8
#: of each (at 200 canaries, in all but about 3 draws in 10,000), so the ceiling is reachable.
GUESS_FRACTIONS = (0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75)
#: Below this ceiling a trial's canaries cannot show a meaningful epsilon (DP-SGD is usually
#: run at an epsilon of 1 to 8): the trial says so when it starts.
MEANINGFUL = 2.0
#: The random stream that orders tied scores: (seed, 43), clear of every other stream's.
_TIE_STREAM = 43
#: The largest epsilon the bisection considers: q = e^eps / (1 + e^eps) is 1 to double precision.
EPS_MAX = 40.0


def p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """Return the probability, under (eps, delta)-DP, of v or more correct guesses out of r
    made on m canaries (the module's inequality; at most 1)."""
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    q = 1.0 / (1.0 + math.exp(-eps))
    tail = float(binom.sf(v - 1, r, q))  # P[Bin(r, q) >= v]
    if delta == 0 or v == 0:
        return min(tail, 1.0)
    below = binom.pmf(np.arange(v - 1, -1, -1), r, q)  # P[Bin = v-1], P[Bin = v-2], ...
    worst = float(np.max(np.cumsum(below) / np.arange(1, v + 1)))
    return min(tail + 2.0 * m * delta * worst, 1.0)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float, level: float) -> float:
    """Return the largest eps that v correct of r guesses on m canaries reject at `level`
    (the p-value below it), or 0 where even eps = 0 is not rejected."""
    if r == 0 or p_value(m, r, v, 0.0, delta) >= level:
        return 0.0
    low, high = 0.0, EPS_MAX
    if p_value(m, r, v, high, delta) < level:
        return high
    for _ in range(60):  # the p-value grows with eps: keep p(low) < level <= p(high)
        middle = (low + high) / 2
        if p_value(m, r, v, middle, delta) < level:
            low = middle
        else:
            high = middle
    return low


def guess_counts(m: int) -> list[int]:
    """Return the grid of guess counts for m canaries: :data:`GUESS_FRACTIONS` of m, rounded
    to even numbers of at least 2 (half guessed in, half out), without repeats."""
    counts = {max(2, 2 * round(f * m / 2)) for f in GUESS_FRACTIONS}
    return sorted(c for c in counts if c <= m)


@functools.lru_cache(maxsize=256)
def ceiling(m: int, delta: float, confidence: float = CONFIDENCE) -> float:
    """Return the largest bound m canaries can give: every guess correct, at the grid's best
    guess count, each at the grid's share of the confidence."""
    counts = guess_counts(m)
    level = (1.0 - confidence) / max(1, len(counts))
    return max((epsilon_lower_bound(m, r, r, delta, level) for r in counts), default=0.0)


@dataclass(frozen=True)
class OneRunBound:
    """The one-run bound of one attack's scores: eps, its ceiling, guesses made and correct."""

    eps: float
    ceiling: float
    guesses: int
    correct: int


def one_run_bound(
    scores: np.ndarray,
    included: np.ndarray,
    delta: float,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> OneRunBound:
    """Return the one-run bound of `scores` (higher: more likely included) on canaries whose
    inclusion bits are `included`: the largest bound over the guess grid (see the module).
    Ties in the scores (a score of few levels, NaN) are broken by a random order drawn from
    `seed` alone: never by position, which may follow the bits (members come first)."""
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    bits = np.asarray(included, dtype=bool)
    m = len(s)
    if m < 2:
        return OneRunBound(0.0, 0.0, 0, 0)
    tie_break = np.random.default_rng([seed, _TIE_STREAM]).permutation(m)
    order = np.lexsort((tie_break, -s))  # highest first, ties in a random order
    counts = guess_counts(m)
    level = (1.0 - confidence) / len(counts)
    found = []
    for r in counts:
        top, bottom = order[: r // 2], order[m - r // 2 :]
        v = int(bits[top].sum() + (~bits[bottom]).sum())
        found.append((epsilon_lower_bound(m, r, v, delta, level), r, v))
    eps, r, v = max(found)  # the largest bound; among bounds of 0, the most guesses
    return OneRunBound(eps, ceiling(m, delta, confidence), r, v)


def one_run_columns(
    scores: dict[str, np.ndarray] | None,
    included: np.ndarray | None,
    attack: str | None,
    delta: float,
    seed: int = 0,
) -> dict[str, float | int | str | None]:
    """Return the :data:`COLUMNS` from `attack`'s canary scores (all None without canaries);
    `seed` orders tied scores."""
    if scores is None or included is None or attack is None or attack not in scores:
        return dict.fromkeys(COLUMNS)
    bound = one_run_bound(scores[attack], included, delta, seed=seed)
    return {
        "eps_lb_one_run": bound.eps,
        "eps_lb_one_run_max": bound.ceiling,
        "eps_lb_one_run_guesses": bound.guesses,
        "eps_lb_one_run_correct": bound.correct,
        "eps_lb_one_run_attack": attack,
    }


def canary_note(canaries: int, most: int, dataset: str, delta: float) -> str | None:
    """Return one line when `canaries` (at most `most` fit the data set's test split) cannot
    show a one-run bound of :data:`MEANINGFUL` even with every guess right, else None."""
    if canaries <= 0 or (top := ceiling(canaries, delta)) >= MEANINGFUL:
        return None
    line = (
        f"attacks.canaries = {canaries}: the one-run epsilon bound cannot exceed {top:.2f} "
        f"(every guess right, delta {delta:g}, {CONFIDENCE:.0%})"
    )
    if most > canaries:
        return (
            line + f"; {dataset} holds up to {most} canaries (ceiling {ceiling(most, delta):.2f})"
        )
    return line + f"; {dataset} holds no more"
