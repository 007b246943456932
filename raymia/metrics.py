"""Membership metrics for a score vector: higher score means "more likely a member".

Every function takes ``scores`` (1-D floats) and ``is_member`` (1-D bools, or 0/1) of the same
length, with at least one member and one non-member. A member is predicted when
``score >= threshold``.

Non-finite scores: NaN is treated as the least-member score, i.e. as ``-inf`` (below every
finite score, tied with ``-inf``); ``+inf`` and ``-inf`` are ordinary, ordered scores. ROC work is
done by sklearn on an order-preserving finite copy of the scores, which changes nothing since
every metric here depends only on the order of the scores.

Two threshold protocols (DESIGN.md, "Membership protocol"): *optimistic* metrics pick the best
threshold on the evaluation scores themselves (an upper bound); the *calibrated* one applies a
threshold chosen on reference data (:func:`best_threshold` on reference scores, then
:func:`advantage_at_threshold`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = [
    "NullResult",
    "advantage",
    "advantage_at_threshold",
    "auc",
    "balanced_accuracy",
    "best_threshold",
    "bootstrap_ci",
    "null_advantage",
    "roc",
    "summarize",
    "tpr_at_fpr",
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


def balanced_accuracy(scores: np.ndarray, is_member: np.ndarray) -> float:
    """Return the best balanced accuracy over thresholds, (1 + advantage) / 2 (in [0.5, 1])."""
    return (1.0 + advantage(scores, is_member)) / 2.0


def tpr_at_fpr(scores: np.ndarray, is_member: np.ndarray, fpr: float) -> float | None:
    """Return the TPR at the highest ROC point whose FPR is <= fpr, or None if not meaningful.

    The value is None when the non-members are too few for that FPR to allow a single false
    positive, i.e. when ``n_non_members * fpr < 1`` (500 non-members: 1% is reported, 0.1% is
    None).
    """
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must be in [0, 1], got {fpr}")
    s, m = _prepare(scores, is_member)
    n_non_members = int((~m).sum())
    # Small tolerance so that e.g. 1000 * 0.001 counts as exactly one false positive.
    allowed_fp = np.floor(n_non_members * fpr + 1e-9)
    if allowed_fp < 1:
        return None
    fprs, tprs, _ = roc(s, m)
    false_positives = np.rint(fprs * n_non_members)
    return float(np.max(tprs[false_positives <= allowed_fp]))


# --------------------------------------------------------------------------------------------
# Batched (vectorized) advantage and AUC over many label/score rows
# --------------------------------------------------------------------------------------------


def _batch_advantage_auc(
    sorted_scores: np.ndarray, sorted_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return (advantage, auc) for every row of rows already sorted by decreasing score.

    ``sorted_scores`` is (B, n) or (n,) shared by all rows; ``sorted_labels`` is (B, n) bool.
    Thresholds sit only between distinct score values: a tied group is predicted all at once.
    """
    labels = np.asarray(sorted_labels, dtype=bool)
    b, n = labels.shape
    x = np.broadcast_to(sorted_scores, (b, n))
    tp = np.cumsum(labels, axis=1, dtype=np.int64)
    fp = np.arange(1, n + 1, dtype=np.int64) - tp
    n_pos = tp[:, -1].astype(float)
    n_neg = fp[:, -1].astype(float)

    # Last element of each tied group: the only positions where a threshold can cut.
    group_end = np.ones((b, n), dtype=bool)
    group_end[:, :-1] = x[:, :-1] != x[:, 1:]

    gain = tp / n_pos[:, None] - fp / n_neg[:, None]
    adv = np.maximum(np.max(np.where(group_end, gain, -np.inf), axis=1), 0.0)

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


def _bootstrap_resamples(
    scores: np.ndarray, is_member: np.ndarray, n_boot: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield chunks (member_scores (c, n_members), non_member_scores (c, n_non_members)).

    Members and non-members are resampled with replacement separately (stratified), so every
    replicate keeps the original class counts. Deterministic for a given seed.
    """
    rng = np.random.default_rng(seed)
    pos, neg = scores[is_member], scores[~is_member]
    for c in _chunk_sizes(n_boot, scores.size):
        yield (
            pos[rng.integers(0, pos.size, size=(c, pos.size))],
            neg[rng.integers(0, neg.size, size=(c, neg.size))],
        )


def _bootstrap_statistics(
    s: np.ndarray, m: np.ndarray, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return (advantage, auc) arrays over n_boot stratified bootstrap replicates."""
    advs, aucs = [], []
    for pos, neg in _bootstrap_resamples(s, m, n_boot, seed):
        x = np.concatenate([pos, neg], axis=1)
        y = np.zeros(x.shape, dtype=bool)
        y[:, : pos.shape[1]] = True
        order = np.argsort(-x, axis=1, kind="stable")
        a, u = _batch_advantage_auc(
            np.take_along_axis(x, order, axis=1), np.take_along_axis(y, order, axis=1)
        )
        advs.append(a)
        aucs.append(u)
    return np.concatenate(advs), np.concatenate(aucs)


def _check_count(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def bootstrap_ci(
    scores: np.ndarray,
    is_member: np.ndarray,
    statistic: Literal["advantage", "auc"],
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Return the (low, high) percentile bootstrap confidence interval of the statistic.

    Members and non-members are resampled separately (stratified), so each replicate has the
    original class balance. The same seed gives the same resamples for both statistics.
    """
    if statistic not in ("advantage", "auc"):
        raise ValueError(f"statistic must be 'advantage' or 'auc', got {statistic!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    _check_count("n_boot", n_boot)
    s, m = _prepare(scores, is_member)
    advs, aucs = _bootstrap_statistics(s, m, n_boot, seed)
    return _percentile_interval(advs if statistic == "advantage" else aucs, level)


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
    advantage with the true labels.
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
    """Return the permutation null of the advantage (see :class:`NullResult`).

    The membership labels are shuffled n_permutations times; scores are sorted once and every
    permutation's TPR/FPR at all thresholds come from cumulative sums of its permuted labels.
    """
    _check_count("n_permutations", n_permutations)
    s, m = _prepare(scores, is_member)
    order = np.argsort(-s, kind="stable")
    sorted_scores = s[order]
    observed = float(_batch_advantage_auc(sorted_scores, m[order][None, :])[0][0])
    null = np.concatenate(
        [
            _batch_advantage_auc(sorted_scores, labels[:, order])[0]
            for labels in _permuted_labels(m, n_permutations, seed)
        ]
    )
    # Tolerance: a permutation that ties the observed value counts as reaching it.
    n_reach = int(np.sum(null >= observed - 1e-12))
    return NullResult(
        mean=float(null.mean()),
        q95=float(np.quantile(null, 0.95)),
        p_value=(1 + n_reach) / (1 + n_permutations),
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
) -> dict[str, float | None]:
    """Return one attack's result columns, named ``<prefix>_<metric>``, as Python floats/None.

    Columns: adv, adv_lo, adv_hi (95% bootstrap CI), auc, auc_lo, auc_hi, bal_acc, tpr_at_1pct,
    tpr_at_0p1pct (None when too few non-members), adv_null_q95, adv_p (permutation null), and,
    when reference scores and labels are given, adv_calibrated (TPR - FPR at the reference's best
    threshold; may be negative). NaN scores count as least-member. `n_boot` = 0 leaves the
    intervals None and `n_permutations` = 0 the null columns.
    """
    if (reference_scores is None) != (reference_is_member is None):
        raise ValueError("give both reference_scores and reference_is_member, or neither")
    s, m = _prepare(scores, is_member)
    adv = advantage(s, m)
    # n_boot / n_permutations of 0 skip the intervals / the null (their columns are None).
    adv_lo = adv_hi = auc_lo = auc_hi = q95 = p_value = None
    if n_boot:
        advs, aucs = _bootstrap_statistics(s, m, n_boot, seed)
        adv_lo, adv_hi = _percentile_interval(advs, 0.95)
        auc_lo, auc_hi = _percentile_interval(aucs, 0.95)
    if n_permutations:
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
        "tpr_at_1pct": tpr_at_fpr(s, m, 0.01),
        "tpr_at_0p1pct": tpr_at_fpr(s, m, 0.001),
        "adv_null_q95": q95,
        "adv_p": p_value,
    }
    if reference_scores is not None and reference_is_member is not None:
        threshold = best_threshold(reference_scores, reference_is_member)
        out["adv_calibrated"] = advantage_at_threshold(s, m, threshold)
    return {f"{prefix}_{key}": value for key, value in out.items()}
