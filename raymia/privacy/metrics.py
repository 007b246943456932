"""Membership metrics for a score vector: higher score means "more likely a member".

Every function takes ``scores`` (1-D floats) and ``is_member`` (1-D bools, or 0/1) of the same
length, with at least one member and one non-member. A member is predicted when
``score >= threshold``.

Non-finite scores: NaN is treated as the least-member score, i.e. as ``-inf`` (below every
finite score, tied with ``-inf``); ``+inf`` and ``-inf`` are ordinary, ordered scores. ROC work is
done by sklearn on an order-preserving finite copy of the scores, which changes nothing since
every metric here depends only on the order of the scores.

Two threshold protocols (docs/ARCHITECTURE.md, "Membership protocol"): *optimistic* metrics
pick the best threshold on the evaluation scores themselves (an upper bound); the *calibrated*
one applies a threshold chosen on a shadow model's scores (:func:`best_threshold` on reference
scores, then :func:`advantage_at_threshold`).

Uncertainty:

* Advantage interval (:func:`advantage_ci`): distribution-free, valid at any sample size.
  Lower end: one-sided Dvoretzky-Kiefer-Wolfowitz bands (Massart's constant) on the member and
  non-member score distributions hold TPR and FPR near their true values at every threshold at
  once, so the observed best threshold's true TPR - FPR (a lower bound on the true advantage)
  is at least ``adv_hat - eps_members - eps_non_members``. Upper end: the true best threshold
  is fixed, so Hoeffding's inequality at that one threshold bounds how far the observed
  advantage can fall below the truth. Each end takes alpha/2; the result is clipped to [0, 1]
  and is conservative (adv_hat - 0.132 .. adv_hat + 0.086 at 500 per side). The percentile
  bootstrap is NOT used for the advantage: the advantage is a maximum over thresholds, its
  bootstrap replicates are biased upward, and the percentile interval excluded a true advantage
  of 0 in almost every no-leakage case and covered positive truths 71-84% of the time.
* AUC interval (:func:`bootstrap_ci`): stratified percentile bootstrap (coverage 93-96%).
* Permutation nulls: :func:`null_advantage` for one attack, :func:`null_max_advantage` for the
  maximum over several attacks (one shared label permutation per replicate).
* TPR at a low FPR (:func:`tpr_at_fpr`, LiRA's convention) with an exact Clopper-Pearson interval
  (:func:`tpr_at_fpr_ci`) over the members.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import beta
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = [
    "NullResult",
    "advantage",
    "advantage_at_threshold",
    "advantage_ci",
    "auc",
    "best_threshold",
    "bootstrap_ci",
    "clopper_pearson",
    "null_advantage",
    "null_advantages",
    "null_max_advantage",
    "roc",
    "summarize",
    "tpr_at_fpr",
    "tpr_at_fpr_ci",
]

# Replicates (bootstrap or permutation) are processed in chunks of about this many scores, so
# memory stays bounded (a few arrays of this size) for large evaluation sets.
_CHUNK_ELEMENTS = 1 << 21


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


def _prepare(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (scores as float with NaN -> -inf, is_member as bool), validated."""
    s = np.asarray(scores, dtype=float)
    m = np.asarray(is_member)
    if s.ndim != 1 or m.ndim != 1:
        raise ValueError(f"scores and is_member must be 1-D, got shapes {s.shape} and {m.shape}")
    if s.shape != m.shape:
        raise ValueError(f"scores ({s.shape[0]}) and is_member ({m.shape[0]}) differ in length")
    if m.dtype != bool:
        if m.size and not np.all((m == 0) | (m == 1)):
            raise ValueError("is_member must be boolean (or 0/1)")
        m = m.astype(bool)
    n_members = int(m.sum())
    if n_members == 0 or n_members == m.size:
        raise ValueError(
            f"need at least one member and one non-member, got {n_members} members "
            f"out of {m.size} samples"
        )
    # NaN = least-member score: it then ties with -inf, below everything else.
    s = np.where(np.isnan(s), -np.inf, s)
    return s, m


def _finite_order(s: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Return a finite, order-preserving copy of s (sklearn rejects inf) and the value table.

    When s is finite it is returned as is with table None; otherwise the copy holds dense ranks
    and ``table[rank]`` is the original score.
    """
    if np.all(np.isfinite(s)):
        return s, None
    table, ranks = np.unique(s, return_inverse=True)
    return ranks.astype(float), table


# --------------------------------------------------------------------------------------------
# Point metrics
# --------------------------------------------------------------------------------------------


def roc(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the full ROC curve as (fpr, tpr, thresholds), thresholds decreasing.

    Point i is the rate pair obtained by predicting member for ``score >= thresholds[i]``; the
    first point is (0, 0) with threshold +inf (predict no one), and every distinct score value is
    a threshold (no intermediate point is dropped).
    """
    s, m = _prepare(scores, is_member)
    finite, table = _finite_order(s)
    fpr, tpr, thresholds = roc_curve(m, finite, drop_intermediate=False)
    if table is not None:
        # The first threshold is +inf (predict no one); the others are ranks into the table.
        ranks = np.clip(thresholds, 0, table.size - 1).astype(np.intp)
        thresholds = np.where(np.isposinf(thresholds), np.inf, table[ranks])
    return fpr, tpr, thresholds


def advantage(scores: np.ndarray, is_member: np.ndarray) -> float:
    """Return the membership advantage: max over thresholds of TPR - FPR (in [0, 1])."""
    fpr, tpr, _ = roc(scores, is_member)
    return float(max(0.0, np.max(tpr - fpr)))


def auc(scores: np.ndarray, is_member: np.ndarray) -> float:
    """Return the area under the ROC curve of the scores (0.5 = no signal, ties count half)."""
    s, m = _prepare(scores, is_member)
    finite, _ = _finite_order(s)
    return float(roc_auc_score(m, finite))


def best_threshold(scores: np.ndarray, is_member: np.ndarray) -> float:
    """Return the threshold maximizing TPR - FPR when predicting member for score >= threshold.

    Among equally good thresholds the highest is returned. It is +inf only when no threshold
    beats predicting no one (advantage 0).
    """
    fpr, tpr, thresholds = roc(scores, is_member)
    gain = tpr - fpr
    # Tolerance: 1 - 1/3 and 2/3 - 0 differ in the last bit; both are the same advantage.
    return float(thresholds[np.argmax(gain >= gain.max() - 1e-12)])


def advantage_at_threshold(scores: np.ndarray, is_member: np.ndarray, threshold: float) -> float:
    """Return TPR - FPR when predicting member for score >= threshold (in [-1, 1]).

    This is the calibrated protocol: the threshold comes from elsewhere (reference data), so the
    result can be negative when the threshold does not transfer.
    """
    s, m = _prepare(scores, is_member)
    predicted = s >= float(threshold)
    return float(predicted[m].mean() - predicted[~m].mean())


def _dkw_epsilon(n: int, alpha: float) -> float:
    """Return eps with P(sup_t (F(t) - F_hat(t)) > eps) <= alpha for n i.i.d. samples.

    One-sided Dvoretzky-Kiefer-Wolfowitz inequality with Massart's constant, exp(-2 n eps^2),
    valid for any distribution (ties included) when alpha <= 1/2; the same eps bounds the other
    side and the survival function P(score >= t).
    """
    return math.sqrt(math.log(1.0 / alpha) / (2.0 * n))


def _hoeffding_epsilon(n_members: int, n_non_members: int, alpha: float) -> float:
    """Return eps with P(TPR_hat(t) - FPR_hat(t) < TPR(t) - FPR(t) - eps) <= alpha at a fixed t.

    Hoeffding's inequality on the n_members + n_non_members independent terms of the difference
    (ranges 1/n_members and 1/n_non_members).
    """
    return math.sqrt(math.log(1.0 / alpha) * (1.0 / n_members + 1.0 / n_non_members) / 2.0)


def advantage_ci(
    scores: np.ndarray, is_member: np.ndarray, level: float = 0.95
) -> tuple[float, float]:
    """Return a (low, high) confidence interval for the true advantage, valid at any sample size.

    Distribution-free, no resampling and no seed; alpha = 1 - level is split evenly between the
    two ends (the true advantage A = max over thresholds t of true TPR(t) - FPR(t)):

    * low = adv_hat - eps_members - eps_non_members: one-sided DKW bands (Massart's constant,
      alpha/4 each) bound TPR_hat - TPR and FPR - FPR_hat at every threshold at once, so the
      observed best threshold's true gain, which is <= A, is >= adv_hat - eps_m - eps_n.
    * high = adv_hat + eps: the threshold achieving A is fixed (unknown, not data-chosen), so
      Hoeffding's inequality on TPR_hat - FPR_hat at that one threshold (alpha/2) gives
      adv_hat >= A - eps with eps = sqrt(ln(2/alpha) (1/n_members + 1/n_non_members) / 2).

    Clipped to [0, 1]. Conservative: at 500 per side it is adv_hat - 0.132 .. adv_hat + 0.086.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    s, m = _prepare(scores, is_member)
    alpha = 1.0 - level
    n_members = int(m.sum())
    n_non_members = m.size - n_members
    below = _dkw_epsilon(n_members, alpha / 4.0) + _dkw_epsilon(n_non_members, alpha / 4.0)
    above = _hoeffding_epsilon(n_members, n_non_members, alpha / 2.0)
    adv = advantage(s, m)
    return max(0.0, adv - below), min(1.0, adv + above)


def _tpr_point(s: np.ndarray, m: np.ndarray, fpr: float) -> tuple[float, int, int] | None:
    """Return (TPR, members above the threshold, n_members) at LiRA's low-FPR point, or None.

    ``s``, ``m`` are already prepared. The point is the last ROC point whose FPR is strictly
    below ``fpr``; None when ``n_non_members * fpr < 1``.
    """
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must be in [0, 1], got {fpr}")
    n_non_members = int((~m).sum())
    # Tolerance so that e.g. 1000 * 0.001 is exactly one false positive (reported, and since the
    # FPR must stay strictly below 1/1000, at zero false positives).
    budget = n_non_members * fpr
    if np.floor(budget + 1e-9) < 1:
        return None
    fprs, tprs, _ = roc(s, m)
    false_positives = np.rint(fprs * n_non_members)
    # The first ROC point (predict no one) has no false positive, so the index always exists.
    last = np.flatnonzero(false_positives < budget - 1e-9)[-1]
    n_members = int(m.sum())
    return float(tprs[last]), int(np.rint(tprs[last] * n_members)), n_members


def tpr_at_fpr(scores: np.ndarray, is_member: np.ndarray, fpr: float) -> float | None:
    """Return the TPR at the last ROC point whose FPR is strictly below fpr, or None.

    This is the LiRA reference code's convention, ``tpr[np.where(fpr_curve < fpr)[0][-1]]``:
    with 500 non-members and fpr = 1%, at most 4 false positives (not 5). It is read off the full
    ROC curve (every distinct score a threshold); LiRA's sklearn call drops collinear points,
    which gives the same value unless members and non-members tie at the cut, where it can skip
    the last reachable point (a lower TPR). The value is None when
    the non-members are too few for that FPR to allow a single false positive, i.e. when
    ``n_non_members * fpr < 1`` (500 non-members: 1% is reported, 0.1% is None; 1000
    non-members: 0.1% is reported, at zero false positives).
    """
    s, m = _prepare(scores, is_member)
    point = _tpr_point(s, m, fpr)
    return None if point is None else point[0]


def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Return the exact (Clopper-Pearson) two-sided interval (low, high) of a binomial proportion.

    Beta quantiles: low = Beta(k, n - k + 1).ppf(alpha/2) (0 when k = 0), high =
    Beta(k + 1, n - k).ppf(1 - alpha/2) (1 when k = n); the same as scipy.stats.binomtest's
    ``proportion_ci(method="exact")``, without its root finding. E.g. 0 of 10 at 95% gives
    (0, 0.3085).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    k, n = int(successes), int(trials)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1, got {k} of {n}")
    alpha = 1.0 - level
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2.0, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1.0 - alpha / 2.0, k + 1, n - k))
    return low, high


def tpr_at_fpr_ci(
    scores: np.ndarray, is_member: np.ndarray, fpr: float, level: float = 0.95
) -> tuple[float, float] | None:
    """Return the exact Clopper-Pearson interval (low, high) of :func:`tpr_at_fpr`, or None.

    The TPR is (members above the chosen threshold) / n_members. The threshold is fixed by the
    non-member scores alone (the FPR budget), so given the non-members the count is binomial
    over the members and the interval covers the true TPR of the attack at that threshold. It
    does not include the uncertainty of the threshold's own (true) FPR. None exactly when
    :func:`tpr_at_fpr` is None.
    """
    s, m = _prepare(scores, is_member)
    point = _tpr_point(s, m, fpr)
    return None if point is None else clopper_pearson(point[1], point[2], level)


# --------------------------------------------------------------------------------------------
# Batched (vectorized) advantage and AUC over many label/score rows
# --------------------------------------------------------------------------------------------


def _batch_counts(
    sorted_scores: np.ndarray, sorted_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (labels, true positives, group ends), all (B, n), of rows sorted by decreasing score.

    ``tp[:, i]`` counts members among the first i + 1 scores; ``group_end`` marks the last
    element of each tied group: the only positions where a threshold can cut.
    """
    labels = np.asarray(sorted_labels, dtype=bool)
    b, n = labels.shape
    x = np.broadcast_to(sorted_scores, (b, n))
    tp = np.cumsum(labels, axis=1, dtype=np.int64)
    group_end = np.ones((b, n), dtype=bool)
    group_end[:, :-1] = x[:, :-1] != x[:, 1:]
    return labels, tp, group_end


def _advantage_from_counts(tp: np.ndarray, group_end: np.ndarray) -> np.ndarray:
    """Return each row's advantage, max over the cut positions of TPR - FPR (at least 0)."""
    fp = np.arange(1, tp.shape[1] + 1, dtype=np.int64) - tp
    gain = tp / tp[:, -1:].astype(float) - fp / fp[:, -1:].astype(float)
    return np.maximum(np.max(np.where(group_end, gain, -np.inf), axis=1), 0.0)


def _batch_advantage(sorted_scores: np.ndarray, sorted_labels: np.ndarray) -> np.ndarray:
    """Return the advantage of every row (as :func:`_batch_advantage_auc`, without the AUC)."""
    _, tp, group_end = _batch_counts(sorted_scores, sorted_labels)
    return _advantage_from_counts(tp, group_end)


def _batch_advantage_auc(
    sorted_scores: np.ndarray, sorted_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return (advantage, auc) for every row of rows already sorted by decreasing score.

    ``sorted_scores`` is (B, n) or (n,) shared by all rows; ``sorted_labels`` is (B, n) bool.
    Thresholds sit only between distinct score values: a tied group is predicted all at once.
    """
    labels, tp, group_end = _batch_counts(sorted_scores, sorted_labels)
    b, n = labels.shape
    adv = _advantage_from_counts(tp, group_end)
    n_pos = tp[:, -1].astype(float)
    n_neg = n - n_pos

    # AUC (Mann-Whitney): each non-member scores (#members above + half #members tied) =
    # mean of the member counts before and at the end of its tied group.
    cols = np.arange(n)
    end_idx = np.minimum.accumulate(np.where(group_end, cols, n - 1)[:, ::-1], axis=1)[:, ::-1]
    group_start = np.ones((b, n), dtype=bool)
    group_start[:, 1:] = group_end[:, :-1]
    start_idx = np.maximum.accumulate(np.where(group_start, cols, 0), axis=1)
    tp_end = np.take_along_axis(tp, end_idx, axis=1)
    tp_before = np.take_along_axis(tp, start_idx, axis=1) - np.take_along_axis(
        labels, start_idx, axis=1
    )
    pairs = np.where(labels, 0, tp_before + tp_end).sum(axis=1) / 2.0
    return adv, pairs / (n_pos * n_neg)


def _chunk_sizes(n_replicates: int, n_samples: int) -> Iterator[int]:
    """Yield chunk sizes summing to n_replicates, each about _CHUNK_ELEMENTS / n_samples rows."""
    size = max(1, _CHUNK_ELEMENTS // max(1, n_samples))
    for start in range(0, n_replicates, size):
        yield min(size, n_replicates - start)


def _bootstrap_draws(
    n_members: int, n_non_members: int, n_boot: int, n_samples: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield chunks of resampled rows (member rows (c, n_members), non-member rows
    (c, n_non_members)), each drawn with replacement on its side. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    for c in _chunk_sizes(n_boot, n_samples):
        yield (
            rng.integers(0, n_members, size=(c, n_members)),
            rng.integers(0, n_non_members, size=(c, n_non_members)),
        )


def _bootstrap_resamples(
    scores: np.ndarray, is_member: np.ndarray, n_boot: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield chunks (member_scores (c, n_members), non_member_scores (c, n_non_members)).

    Members and non-members are resampled with replacement separately (stratified), so every
    replicate keeps the original class counts. Deterministic for a given seed.
    """
    pos, neg = scores[is_member], scores[~is_member]
    for rows_pos, rows_neg in _bootstrap_draws(pos.size, neg.size, n_boot, scores.size, seed):
        yield pos[rows_pos], neg[rows_neg]


def _counts_per_position(rows: np.ndarray, positions: np.ndarray, n: int) -> np.ndarray:
    """Return (c, n) counts: how often each sorted position was drawn in each replicate."""
    c = rows.shape[0]
    flat = (positions[rows] + n * np.arange(c)[:, None]).ravel()
    return np.bincount(flat, minlength=c * n).reshape(c, n)


def _bootstrap_statistics(
    s: np.ndarray, m: np.ndarray, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return (advantage, auc) arrays over n_boot stratified bootstrap replicates.

    The scores are sorted once: a replicate is how often it drew each sample, so its TPR and
    FPR at every threshold are cumulative sums of those counts along the one order, O(n) per
    replicate, not a sort of each (the same values as :func:`_bootstrap_resamples`' replicates
    sorted one by one, to the last bit: every count is an integer).
    """
    n = s.size
    order = np.argsort(-s, kind="stable")
    ranked = s[order]
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    pos_at, neg_at = position[m], position[~m]
    n_pos, n_neg = pos_at.size, neg_at.size
    ends = np.flatnonzero(np.r_[ranked[:-1] != ranked[1:], True])  # last of each tied group
    advs, aucs = [], []
    for rows_pos, rows_neg in _bootstrap_draws(n_pos, n_neg, n_boot, n, seed):
        tp = np.cumsum(_counts_per_position(rows_pos, pos_at, n), axis=1)[:, ends]
        fp = np.cumsum(_counts_per_position(rows_neg, neg_at, n), axis=1)[:, ends]
        gain = tp / float(n_pos) - fp / float(n_neg)
        advs.append(np.maximum(gain.max(axis=1), 0.0))
        # Mann-Whitney: each non-member of a tied group counts the members above it, plus half
        # of those tied with it: 2 x pairs = sum over groups of neg_in x (2 tp_before + pos_in).
        pos_in = np.diff(tp, axis=1, prepend=0)
        neg_in = np.diff(fp, axis=1, prepend=0)
        twice = (neg_in * (2 * (tp - pos_in) + pos_in)).sum(axis=1)
        aucs.append(twice / 2.0 / (n_pos * n_neg))
    return np.concatenate(advs), np.concatenate(aucs)


def _check_count(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def bootstrap_ci(
    scores: np.ndarray,
    is_member: np.ndarray,
    statistic: Literal["auc"],
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Return the (low, high) percentile bootstrap confidence interval of the AUC.

    Members and non-members are resampled separately (stratified), so each replicate has the
    original class balance. ``statistic="advantage"`` is refused: the percentile bootstrap of a
    maximum over thresholds is biased and does not hold its level; use :func:`advantage_ci`.
    """
    if statistic == "advantage":
        raise ValueError(
            "the percentile bootstrap of the advantage is biased (it excludes a true advantage "
            "of 0 almost always); use advantage_ci(scores, is_member, level) instead"
        )
    if statistic != "auc":
        raise ValueError(f"statistic must be 'auc', got {statistic!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    _check_count("n_boot", n_boot)
    s, m = _prepare(scores, is_member)
    _, aucs = _bootstrap_statistics(s, m, n_boot, seed)
    return _percentile_interval(aucs, level)


def _percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(values, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


# --------------------------------------------------------------------------------------------
# Permutation null
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NullResult:
    """Permutation null of the advantage: what label-shuffled data reaches by chance.

    mean: mean permuted advantage; q95: its 95th percentile; p_value:
    (1 + #permutations with advantage >= observed) / (1 + n_permutations); observed: the
    advantage with the true labels. From :func:`null_max_advantage`, every "advantage" here is
    the maximum over the attacks.
    """

    mean: float
    q95: float
    p_value: float
    observed: float


def _permuted_labels(is_member: np.ndarray, n_permutations: int, seed: int) -> Iterator[np.ndarray]:
    """Yield chunks (c, n) of independently permuted membership labels, in sample order."""
    rng = np.random.default_rng(seed)
    for c in _chunk_sizes(n_permutations, is_member.size):
        yield rng.permuted(np.broadcast_to(is_member, (c, is_member.size)), axis=1)


def null_advantage(
    scores: np.ndarray, is_member: np.ndarray, n_permutations: int = 200, seed: int = 0
) -> NullResult:
    """Return the permutation null of one attack's advantage (see :class:`NullResult`).

    The membership labels are shuffled n_permutations times; scores are sorted once and every
    permutation's TPR/FPR at all thresholds come from cumulative sums of its permuted labels.
    For the maximum over several attacks use :func:`null_max_advantage`.
    """
    return null_max_advantage({"": scores}, is_member, n_permutations=n_permutations, seed=seed)


def null_max_advantage(
    scores: Mapping[str, np.ndarray],
    is_member: np.ndarray,
    n_permutations: int = 200,
    seed: int = 0,
) -> NullResult:
    """Return the permutation null of the maximum advantage over several attacks.

    ``scores`` maps attack name to its score vector, all over the same samples (one shared
    ``is_member``). Each replicate permutes the membership labels once, recomputes every
    attack's advantage under that same permutation, and keeps the maximum; ``observed`` is the
    maximum of the observed advantages. This is the null for a reported "best attack"
    advantage: a single attack's null is too small for it (the maximum of several optimistic
    advantages is larger by chance). With one attack it equals :func:`null_advantage`.
    """
    return null_advantages(scores, is_member, n_permutations, seed)[1]


def null_advantages(
    scores: Mapping[str, np.ndarray],
    is_member: np.ndarray,
    n_permutations: int = 200,
    seed: int = 0,
) -> tuple[dict[str, NullResult], NullResult]:
    """Return (each attack's null, the null of their maximum) from one pass over the
    permutations: each attack's :class:`NullResult` equals :func:`null_advantage` of its
    scores alone with this seed, and the second value :func:`null_max_advantage`'s, but the
    attacks' advantages under each permutation are computed once for both."""
    _check_count("n_permutations", n_permutations)
    if not scores:
        raise ValueError("scores must hold at least one attack's score vector")
    prepared = [_prepare(values, is_member) for values in scores.values()]
    m = prepared[0][1]
    orders = [np.argsort(-s, kind="stable") for s, _ in prepared]
    sorted_scores = [s[order] for (s, _), order in zip(prepared, orders, strict=True)]
    observed = np.array(
        [
            float(_batch_advantage(x, m[order][None, :])[0])
            for x, order in zip(sorted_scores, orders, strict=True)
        ]
    )
    # (n_permutations, attacks): every attack's advantage under each permutation
    null = np.concatenate(
        [
            np.stack(
                [
                    _batch_advantage(x, labels[:, order])
                    for x, order in zip(sorted_scores, orders, strict=True)
                ],
                axis=1,
            )
            for labels in _permuted_labels(m, n_permutations, seed)
        ]
    )
    each = {name: _null_result(null[:, i], float(observed[i])) for i, name in enumerate(scores)}
    return each, _null_result(null.max(axis=1), float(observed.max()))


def _null_result(null: np.ndarray, observed: float) -> NullResult:
    """Return the :class:`NullResult` of permuted advantages `null` against `observed`."""
    # Tolerance: a permutation that ties the observed value counts as reaching it.
    n_reach = int(np.sum(null >= observed - 1e-12))
    return NullResult(
        mean=float(null.mean()),
        q95=float(np.quantile(null, 0.95)),
        p_value=(1 + n_reach) / (1 + null.size),
        observed=observed,
    )


# --------------------------------------------------------------------------------------------
# Result columns
# --------------------------------------------------------------------------------------------


def summarize(
    scores: np.ndarray,
    is_member: np.ndarray,
    *,
    prefix: str,
    reference_scores: np.ndarray | None = None,
    reference_is_member: np.ndarray | None = None,
    n_boot: int = 200,
    n_permutations: int = 200,
    seed: int = 0,
    null: NullResult | None = None,
) -> dict[str, float | None]:
    """Return one attack's result columns, named ``<prefix>_<metric>``, as Python floats/None.

    Columns:

    * adv, and adv_lo, adv_hi: 95% distribution-free DKW interval (:func:`advantage_ci`; no
      resampling, always filled). Not a bootstrap: the percentile bootstrap of the advantage is
      biased (it excluded a true advantage of 0 in ~98% of no-leakage cases).
    * auc, auc_lo, auc_hi (95% stratified percentile bootstrap, `n_boot` replicates), bal_acc.
    * tpr_at_1pct, tpr_at_0p1pct (LiRA convention: last ROC point with FPR strictly below the
      target) with tpr_at_1pct_lo/_hi, tpr_at_0p1pct_lo/_hi (95% Clopper-Pearson over the
      members); all None when too few non-members (``n_non_members * fpr < 1``).
    * adv_null_q95, adv_p: this attack's permutation null (for the maximum over attacks use
      :func:`null_max_advantage`).
    * adv_calibrated, only when reference scores and labels are given: TPR - FPR at the
      reference's best threshold (may be negative).

    NaN scores count as least-member. `n_boot` = 0 leaves the AUC interval None and
    `n_permutations` = 0 the null columns. `null`, when given, is this attack's
    :func:`null_advantage` with these `n_permutations` and `seed`, already computed (by
    :func:`null_advantages`, beside the other attacks'), and is used as it is.
    """
    if (reference_scores is None) != (reference_is_member is None):
        raise ValueError("give both reference_scores and reference_is_member, or neither")
    s, m = _prepare(scores, is_member)
    adv = advantage(s, m)
    adv_lo, adv_hi = advantage_ci(s, m, 0.95)
    # n_boot / n_permutations of 0 skip the AUC interval / the null (their columns are None).
    auc_lo = auc_hi = q95 = p_value = None
    if n_boot:
        _, aucs = _bootstrap_statistics(s, m, n_boot, seed)
        auc_lo, auc_hi = _percentile_interval(aucs, 0.95)
    if n_permutations:
        if null is None:
            null = null_advantage(s, m, n_permutations=n_permutations, seed=seed)
        q95, p_value = null.q95, null.p_value
    out: dict[str, float | None] = {
        "adv": adv,
        "adv_lo": adv_lo,
        "adv_hi": adv_hi,
        "auc": auc(s, m),
        "auc_lo": auc_lo,
        "auc_hi": auc_hi,
        "bal_acc": (1.0 + adv) / 2.0,
        **_tpr_columns(s, m, 0.01, "tpr_at_1pct"),
        **_tpr_columns(s, m, 0.001, "tpr_at_0p1pct"),
        "adv_null_q95": q95,
        "adv_p": p_value,
    }
    if reference_scores is not None and reference_is_member is not None:
        threshold = best_threshold(reference_scores, reference_is_member)
        out["adv_calibrated"] = advantage_at_threshold(s, m, threshold)
    return {f"{prefix}_{key}": value for key, value in out.items()}


def _tpr_columns(s: np.ndarray, m: np.ndarray, fpr: float, key: str) -> dict[str, float | None]:
    """Return {key, key_lo, key_hi}: TPR at fpr and its 95% Clopper-Pearson interval (or None)."""
    point = _tpr_point(s, m, fpr)
    if point is None:
        return {key: None, f"{key}_lo": None, f"{key}_hi": None}
    lo, hi = clopper_pearson(point[1], point[2], 0.95)
    return {key: point[0], f"{key}_lo": lo, f"{key}_hi": hi}
