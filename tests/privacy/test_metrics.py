"""Tests for raymia.privacy.metrics: hand-computed ROC values, count rule, bootstrap and null vs
loops,
and coverage / null level of the intervals and nulls on simulated scores of known truth."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy.stats import binomtest, norm
from sklearn.metrics import roc_auc_score, roc_curve

from raymia.privacy import metrics
from raymia.privacy.metrics import (
    NullResult,
    advantage,
    advantage_at_threshold,
    advantage_ci,
    auc,
    best_threshold,
    bootstrap_ci,
    clopper_pearson,
    null_advantage,
    null_max_advantage,
    roc,
    summarize,
    tpr_at_fpr,
    tpr_at_fpr_ci,
)

# 3 members, 3 non-members, no ties. Predicting member for score >= t:
#   t:    inf  0.9  0.8  0.7  0.6  0.5  0.4
#   TP:   0    1    2    2    3    3    3
#   FP:   0    0    0    1    1    2    3
HAND_SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
HAND_MEMBER = np.array([1, 1, 0, 1, 0, 0], dtype=bool)

# Ties: members {0.9, 0.5, 0.1}, non-members {0.5, 0.5, 0.1}.
#   t:    inf  0.9  0.5  0.1
#   TP:   0    1    2    3
#   FP:   0    0    2    3
TIE_SCORES = np.array([0.9, 0.5, 0.5, 0.5, 0.1, 0.1])
TIE_MEMBER = np.array([1, 1, 0, 0, 1, 0], dtype=bool)


def _sk_advantage(scores: np.ndarray, is_member: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(is_member, scores)
    return float(np.max(tpr - fpr))


def _normal_split(n_members: int, n_non_members: int, shift: float, seed: int):
    rng = np.random.default_rng(seed)
    scores = np.concatenate(
        [rng.normal(shift, 1.0, n_members), rng.normal(0.0, 1.0, n_non_members)]
    )
    is_member = np.r_[np.ones(n_members, bool), np.zeros(n_non_members, bool)]
    return scores, is_member


# ------------------------------------------------------------------ hand-computed values


def test_roc_hand_computed() -> None:
    fpr, tpr, thresholds = roc(HAND_SCORES, HAND_MEMBER)
    np.testing.assert_allclose(fpr, np.array([0, 0, 0, 1, 1, 2, 3]) / 3)
    np.testing.assert_allclose(tpr, np.array([0, 1, 2, 2, 3, 3, 3]) / 3)
    np.testing.assert_array_equal(thresholds, [np.inf, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4])


def test_point_metrics_hand_computed() -> None:
    assert advantage(HAND_SCORES, HAND_MEMBER) == pytest.approx(2 / 3)
    # Non-members at 0.7, 0.5, 0.4 are beaten by 2, 3, 3 of the 3 members.
    assert auc(HAND_SCORES, HAND_MEMBER) == pytest.approx(8 / 9)
    bal_acc = summarize(HAND_SCORES, HAND_MEMBER, prefix="a", n_boot=0, n_permutations=0)
    assert bal_acc["a_bal_acc"] == pytest.approx(5 / 6)
    # 0.8 and 0.6 both give 2/3; the highest is returned.
    assert best_threshold(HAND_SCORES, HAND_MEMBER) == 0.8
    assert advantage_at_threshold(HAND_SCORES, HAND_MEMBER, 0.8) == pytest.approx(2 / 3)
    assert advantage_at_threshold(HAND_SCORES, HAND_MEMBER, 0.7) == pytest.approx(1 / 3)
    assert advantage_at_threshold(HAND_SCORES, HAND_MEMBER, 0.55) == pytest.approx(2 / 3)
    assert advantage_at_threshold(HAND_SCORES, HAND_MEMBER, 0.0) == 0.0
    # 3 non-members: an FPR of 1/3 is reported (at FPR < 1/3, i.e. no false positive); 0.3 is
    # not (3 * 0.3 < 1).
    assert tpr_at_fpr(HAND_SCORES, HAND_MEMBER, 1 / 3) == pytest.approx(2 / 3)
    assert tpr_at_fpr(HAND_SCORES, HAND_MEMBER, 0.3) is None


def test_ties_hand_computed() -> None:
    fpr, tpr, thresholds = roc(TIE_SCORES, TIE_MEMBER)
    np.testing.assert_allclose(fpr, np.array([0, 0, 2, 3]) / 3)
    np.testing.assert_allclose(tpr, np.array([0, 1, 2, 3]) / 3)
    np.testing.assert_array_equal(thresholds, [np.inf, 0.9, 0.5, 0.1])
    assert advantage(TIE_SCORES, TIE_MEMBER) == pytest.approx(1 / 3)
    # Non-members at 0.5: 1 above + 1 tied/2 = 1.5 each; at 0.1: 2 above + 1 tied/2 = 2.5.
    assert auc(TIE_SCORES, TIE_MEMBER) == pytest.approx(11 / 18)
    assert best_threshold(TIE_SCORES, TIE_MEMBER) == 0.9
    assert advantage_at_threshold(TIE_SCORES, TIE_MEMBER, 0.5) == pytest.approx(0.0)
    # The tied group at 0.5 (two non-members) cannot be split: FPR < 2/3 stops above it.
    assert tpr_at_fpr(TIE_SCORES, TIE_MEMBER, 1 / 3) == pytest.approx(1 / 3)
    assert tpr_at_fpr(TIE_SCORES, TIE_MEMBER, 2 / 3) == pytest.approx(1 / 3)
    assert tpr_at_fpr(TIE_SCORES, TIE_MEMBER, 0.7) == pytest.approx(2 / 3)


def test_vectorized_kernel_matches_sklearn_with_ties_and_infinities() -> None:
    rng = np.random.default_rng(3)
    rows, labels = [], []
    for _ in range(30):
        s = np.round(rng.normal(size=12), 1)
        s[rng.integers(0, 12, 2)] = rng.choice([-np.inf, np.inf, np.nan], 2)
        y = rng.permutation(np.r_[np.ones(5, bool), np.zeros(7, bool)])
        rows.append(s)
        labels.append(y)
    for s, y in zip(rows, labels, strict=True):
        clean = np.where(np.isnan(s), -np.inf, s)
        order = np.argsort(-clean, kind="stable")
        adv, area = metrics._batch_advantage_auc(clean[order], y[order][None, :])
        assert adv[0] == pytest.approx(advantage(s, y))
        assert area[0] == pytest.approx(auc(s, y))
        # Independent check: dense ranks are finite, so sklearn accepts them directly.
        ranks = np.unique(clean, return_inverse=True)[1]
        assert area[0] == pytest.approx(roc_auc_score(y, ranks))
        assert adv[0] == pytest.approx(_sk_advantage(ranks, y))


# ------------------------------------------------------------------ count rule


def test_tpr_at_fpr_count_rule() -> None:
    scores, is_member = _normal_split(500, 500, shift=1.0, seed=1)
    at_1pct = tpr_at_fpr(scores, is_member, 0.01)
    assert at_1pct is not None and 0.0 <= at_1pct <= 1.0
    assert tpr_at_fpr(scores, is_member, 0.001) is None  # 500 * 0.1% < 1
    # Reference value: LiRA's expression (at most 4 false positives, not 5).
    fpr, tpr, _ = roc_curve(is_member, scores)
    assert at_1pct == tpr[np.where(fpr < 0.01)[0][-1]]
    assert at_1pct == tpr[np.rint(fpr * 500) <= 4].max()

    scores, is_member = _normal_split(200, 1000, shift=1.0, seed=2)
    assert tpr_at_fpr(scores, is_member, 0.001) is not None  # exactly one false positive


# ------------------------------------------------------------------ null and separated cases


def test_identical_distributions_show_no_leakage() -> None:
    scores, is_member = _normal_split(500, 500, shift=0.0, seed=0)
    null = null_advantage(scores, is_member, n_permutations=200, seed=0)
    assert isinstance(null, NullResult)
    assert null.observed == pytest.approx(advantage(scores, is_member))
    # The optimistic advantage is positive by construction but does not clear the null.
    assert null.observed > 0.0
    assert null.p_value > 0.05
    assert null.observed < null.q95
    assert 0.02 < null.mean < 0.15
    lo, hi = bootstrap_ci(scores, is_member, "auc", n_boot=200, seed=0)
    assert lo < 0.5 < hi


def test_perfect_separation() -> None:
    rng = np.random.default_rng(0)
    scores = np.r_[rng.uniform(1, 2, 50), rng.uniform(-2, -1, 50)]
    is_member = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    assert advantage(scores, is_member) == 1.0
    assert auc(scores, is_member) == 1.0
    assert summarize(scores, is_member, prefix="a", n_boot=0)["a_bal_acc"] == 1.0
    assert tpr_at_fpr(scores, is_member, 0.02) == 1.0
    assert best_threshold(scores, is_member) == scores[:50].min()
    null = null_advantage(scores, is_member, n_permutations=200, seed=0)
    assert null.p_value == pytest.approx(1 / 201)
    lo, hi = advantage_ci(scores, is_member)
    assert hi == 1.0 and 0.5 < lo < 1.0
    assert bootstrap_ci(scores, is_member, "auc", n_boot=50) == (1.0, 1.0)


# ------------------------------------------------------------------ vectorized vs loops


@pytest.fixture(params=[False, True], ids=["one-chunk", "many-chunks"])
def chunking(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.param:
        monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 50)


def _tied_case() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    scores = np.round(np.r_[rng.normal(0.5, 1, 7), rng.normal(0, 1, 9)], 1)
    is_member = np.r_[np.ones(7, bool), np.zeros(9, bool)]
    return scores, is_member


def test_bootstrap_matches_loop(chunking: None) -> None:
    scores, is_member = _tied_case()
    n_boot = 60
    loop_adv, loop_auc = [], []
    for pos, neg in metrics._bootstrap_resamples(scores, is_member, n_boot, seed=5):
        for p, q in zip(pos, neg, strict=True):
            s = np.r_[p, q]
            y = np.r_[np.ones(p.size, bool), np.zeros(q.size, bool)]
            loop_adv.append(_sk_advantage(s, y))
            loop_auc.append(roc_auc_score(y, s))
    assert len(loop_adv) == n_boot
    vec_adv, vec_auc = metrics._bootstrap_statistics(scores, is_member, n_boot, seed=5)
    np.testing.assert_allclose(vec_adv, loop_adv, atol=1e-12)
    np.testing.assert_allclose(vec_auc, loop_auc, atol=1e-12)
    lo, hi = bootstrap_ci(scores, is_member, "auc", n_boot=n_boot, seed=5, level=0.9)
    assert (lo, hi) == pytest.approx(tuple(np.quantile(loop_auc, [0.05, 0.95])))


def test_bootstrap_is_stratified() -> None:
    scores, is_member = _tied_case()
    members = set(scores[is_member])
    for pos, neg in metrics._bootstrap_resamples(scores, is_member, 20, seed=0):
        assert pos.shape == (20, 7) and neg.shape == (20, 9)
        assert set(pos.ravel()) <= members


def test_null_matches_loop(chunking: None) -> None:
    scores, is_member = _tied_case()
    n_permutations = 80
    loop = []
    for labels in metrics._permuted_labels(is_member, n_permutations, seed=9):
        for y in labels:
            assert np.sort(y).tolist() == np.sort(is_member).tolist()
            loop.append(_sk_advantage(scores, y))
    loop = np.array(loop)
    assert loop.size == n_permutations
    observed = advantage(scores, is_member)
    null = null_advantage(scores, is_member, n_permutations=n_permutations, seed=9)
    assert null.observed == pytest.approx(observed)
    assert null.mean == pytest.approx(loop.mean())
    assert null.q95 == pytest.approx(np.quantile(loop, 0.95))
    n_reach = int(np.sum(loop >= observed - 1e-9))
    assert null.p_value == pytest.approx((1 + n_reach) / (1 + n_permutations))


def test_seeded_and_reproducible() -> None:
    scores, is_member = _normal_split(40, 40, shift=0.5, seed=4)
    assert bootstrap_ci(scores, is_member, "auc", seed=1) == bootstrap_ci(
        scores, is_member, "auc", seed=1
    )
    assert null_advantage(scores, is_member, seed=1) == null_advantage(scores, is_member, seed=1)
    assert bootstrap_ci(scores, is_member, "auc", seed=1) != bootstrap_ci(
        scores, is_member, "auc", seed=2
    )


# ------------------------------------------------------------------ calibrated protocol


def test_advantage_at_threshold_can_be_negative() -> None:
    # Members score low here: predicting member above 0.75 catches only non-members.
    assert advantage_at_threshold(HAND_SCORES, ~HAND_MEMBER, 0.75) == pytest.approx(-2 / 3)


def test_calibrated_threshold_from_reference() -> None:
    ref_scores, ref_member = _normal_split(300, 300, shift=1.0, seed=10)
    scores, is_member = _normal_split(300, 300, shift=1.0, seed=11)
    threshold = best_threshold(ref_scores, ref_member)
    direct = advantage_at_threshold(scores, is_member, threshold)
    expected = np.mean(scores[is_member] >= threshold) - np.mean(scores[~is_member] >= threshold)
    assert direct == pytest.approx(expected)
    calibrated = functools.partial(
        summarize,
        prefix="loss",
        reference_scores=ref_scores,
        reference_is_member=ref_member,
        n_boot=20,
        n_permutations=20,
    )
    row = calibrated(scores, is_member)
    assert row["loss_adv_calibrated"] == pytest.approx(direct)
    # A threshold fitted elsewhere cannot beat the optimistic one on the evaluation set.
    assert row["loss_adv_calibrated"] <= row["loss_adv"]
    # A threshold from a reference where membership runs the other way goes negative.
    flipped = calibrated(-scores, is_member)
    assert flipped["loss_adv_calibrated"] < 0


# ------------------------------------------------------------------ summarize and inputs


def test_summarize_columns_and_types() -> None:
    scores, is_member = _normal_split(500, 500, shift=0.8, seed=12)
    row = summarize(scores, is_member, prefix="merlin", n_boot=50, n_permutations=50, seed=3)
    expected = {
        f"merlin_{k}"
        for k in (
            "adv",
            "adv_lo",
            "adv_hi",
            "auc",
            "auc_lo",
            "auc_hi",
            "bal_acc",
            "tpr_at_1pct",
            "tpr_at_1pct_lo",
            "tpr_at_1pct_hi",
            "tpr_at_0p1pct",
            "tpr_at_0p1pct_lo",
            "tpr_at_0p1pct_hi",
            "adv_null_q95",
            "adv_p",
        )
    }
    assert set(row) == expected
    # 500 non-members cannot support 0.1%: point and interval are None together.
    for key in ("tpr_at_0p1pct", "tpr_at_0p1pct_lo", "tpr_at_0p1pct_hi"):
        assert row[f"merlin_{key}"] is None
    assert row["merlin_tpr_at_1pct_lo"] <= row["merlin_tpr_at_1pct"] <= row["merlin_tpr_at_1pct_hi"]
    assert (row["merlin_tpr_at_1pct_lo"], row["merlin_tpr_at_1pct_hi"]) == tpr_at_fpr_ci(
        scores, is_member, 0.01
    )
    assert (row["merlin_adv_lo"], row["merlin_adv_hi"]) == advantage_ci(scores, is_member)
    for key, value in row.items():
        assert value is None or type(value) is float, key
    assert row["merlin_adv_lo"] <= row["merlin_adv"] <= row["merlin_adv_hi"]
    assert row["merlin_auc_lo"] <= row["merlin_auc"] <= row["merlin_auc_hi"]
    assert row["merlin_bal_acc"] == pytest.approx((1 + row["merlin_adv"]) / 2)
    assert row["merlin_adv"] == pytest.approx(advantage(scores, is_member))
    assert row["merlin_adv_p"] == pytest.approx(1 / 51)  # clear leakage
    assert (row["merlin_auc_lo"], row["merlin_auc_hi"]) == bootstrap_ci(
        scores, is_member, "auc", n_boot=50, seed=3
    )


def test_nan_scores_are_least_member() -> None:
    scores = np.array([np.nan, np.inf, 1.0, -np.inf, 2.0, 2.0])
    is_member = np.array([0, 1, 1, 0, 1, 0], dtype=bool)
    fpr, tpr, thresholds = roc(scores, is_member)
    np.testing.assert_allclose(fpr, np.array([0, 0, 1, 1, 3]) / 3)
    np.testing.assert_allclose(tpr, np.array([0, 1, 2, 3, 3]) / 3)
    np.testing.assert_array_equal(thresholds, [np.inf, np.inf, 2.0, 1.0, -np.inf])
    # Same order as replacing NaN (and -inf) with a finite value below everything.
    finite = np.array([-9.0, 9.0, 1.0, -9.0, 2.0, 2.0])
    assert auc(scores, is_member) == pytest.approx(auc(finite, is_member)) == pytest.approx(7.5 / 9)
    assert advantage(scores, is_member) == pytest.approx(advantage(finite, is_member))
    assert advantage_at_threshold(scores, is_member, -np.inf) == 0.0
    row = summarize(scores, is_member, prefix="x", n_boot=10, n_permutations=10)
    assert all(v is None or np.isfinite(v) for v in row.values())
    assert null_advantage(scores, is_member, 10).observed == pytest.approx(
        advantage(finite, is_member)
    )
    assert tpr_at_fpr(scores, is_member, 0.5) == tpr_at_fpr(finite, is_member, 0.5) == 1.0
    assert tpr_at_fpr_ci(scores, is_member, 0.5) == tpr_at_fpr_ci(finite, is_member, 0.5)
    assert advantage_ci(scores, is_member) == advantage_ci(finite, is_member)
    # -NaN is still NaN, i.e. still the least-member score.
    assert null_max_advantage({"a": scores, "b": -scores}, is_member, 10) == null_max_advantage(
        {"a": finite, "b": np.where(np.isnan(scores), -np.inf, -scores)}, is_member, 10
    )


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError, match="one member and one non-member"):
        advantage(np.arange(3.0), np.ones(3, bool))
    with pytest.raises(ValueError, match="differ in length"):
        auc(np.arange(3.0), np.array([True, False]))
    with pytest.raises(ValueError, match="boolean"):
        roc(np.arange(3.0), np.array([0, 2, 1]))
    with pytest.raises(ValueError, match="statistic"):
        bootstrap_ci(HAND_SCORES, HAND_MEMBER, "accuracy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fpr"):
        tpr_at_fpr(HAND_SCORES, HAND_MEMBER, 1.5)
    with pytest.raises(ValueError, match="at least one attack"):
        null_max_advantage({}, HAND_MEMBER)
    with pytest.raises(ValueError, match="differ in length"):
        null_max_advantage({"a": HAND_SCORES, "b": HAND_SCORES[:5]}, HAND_MEMBER)
    with pytest.raises(ValueError, match="both"):
        summarize(HAND_SCORES, HAND_MEMBER, prefix="x", reference_scores=HAND_SCORES)
    # 0/1 integer labels are accepted.
    assert auc(HAND_SCORES, HAND_MEMBER.astype(int)) == pytest.approx(8 / 9)


# ------------------------------------------------------------------ advantage interval


def _normal_batch(n: int, shift: float, reps: int, seed: int):
    """Yield reps seeded (scores, is_member): n members ~ N(shift, 1), n non-members ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    is_member = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    for _ in range(reps):
        yield np.r_[rng.normal(shift, 1.0, n), rng.normal(0.0, 1.0, n)], is_member


def test_advantage_ci_half_widths() -> None:
    scores, is_member = _normal_split(500, 500, shift=0.5, seed=20)
    adv = advantage(scores, is_member)
    lo, hi = advantage_ci(scores, is_member)
    # Below: two one-sided DKW bands at alpha/4; above: Hoeffding on TPR - FPR at alpha/2.
    assert adv - lo == pytest.approx(2 * np.sqrt(np.log(4 / 0.05) / 1000), abs=1e-12)
    assert adv - lo == pytest.approx(0.1324, abs=1e-4)
    assert hi - adv == pytest.approx(np.sqrt(np.log(2 / 0.05) * (2 / 500) / 2), abs=1e-12)
    assert hi - adv == pytest.approx(0.0859, abs=1e-4)
    lo90, hi90 = advantage_ci(scores, is_member, level=0.9)
    assert lo < lo90 < adv < hi90 < hi
    with pytest.raises(ValueError, match="level"):
        advantage_ci(scores, is_member, level=1.0)


@pytest.mark.parametrize("shift", [0.0, 0.5, 1.0])
def test_advantage_ci_covers_known_truth(shift: float) -> None:
    # N(shift, 1) vs N(0, 1): the best threshold is shift / 2, true advantage 2 Phi(shift/2) - 1.
    truth = 2 * norm.cdf(shift / 2) - 1
    intervals = np.array(
        [advantage_ci(s, m) for s, m in _normal_batch(200, shift, reps=300, seed=21)]
    )
    lo, hi = intervals.T
    coverage = np.mean((lo <= truth) & (truth <= hi))
    assert coverage >= 0.9, coverage
    if shift == 0.0:
        assert np.mean(lo == 0.0) >= 0.9  # no leakage: the interval contains 0
    # Not trivially wide either (at 200 per side: 0.21 below, 0.14 above before clipping).
    assert np.mean(hi - lo) < 0.4


def test_summarize_adv_interval_contains_zero_without_leakage() -> None:
    # No leakage, 300 per side. The percentile bootstrap of the (optimistic, max-over-thresholds)
    # advantage sits above 0 almost always; summarize's interval must contain 0.
    contains, percentile_contains = [], []
    for s, m in _normal_batch(300, 0.0, reps=60, seed=22):
        row = summarize(s, m, prefix="x", n_boot=40, n_permutations=0)
        contains.append(row["x_adv_lo"] <= 0.0 <= row["x_adv_hi"])
        advs, _ = metrics._bootstrap_statistics(*metrics._prepare(s, m), 40, 0)
        percentile_contains.append(np.quantile(advs, 0.025) <= 0.0)
    assert np.mean(contains) >= 0.9
    assert np.mean(percentile_contains) < 0.2  # why bootstrap_ci refuses the advantage


def test_bootstrap_ci_refuses_advantage() -> None:
    scores, is_member = _normal_split(50, 50, shift=0.5, seed=23)
    with pytest.raises(ValueError, match="advantage_ci"):
        bootstrap_ci(scores, is_member, "advantage", n_boot=20)  # type: ignore[arg-type]


def test_auc_bootstrap_covers_known_truth() -> None:
    # N(0.5, 1) vs N(0, 1): true AUC = Phi(0.5 / sqrt(2)).
    truth = norm.cdf(0.5 / np.sqrt(2))
    hits = [
        lo <= truth <= hi
        for lo, hi in (
            bootstrap_ci(s, m, "auc", n_boot=100, seed=i)
            for i, (s, m) in enumerate(_normal_batch(200, 0.5, reps=150, seed=24))
        )
    ]
    assert np.mean(hits) >= 0.88


# ------------------------------------------------------------------ null of the maximum


def test_null_max_with_one_attack_is_null_advantage() -> None:
    scores, is_member = _normal_split(60, 80, shift=0.3, seed=30)
    single = null_advantage(scores, is_member, n_permutations=150, seed=4)
    assert null_max_advantage({"loss": scores}, is_member, n_permutations=150, seed=4) == single


def test_null_max_matches_loop(chunking: None) -> None:
    scores, is_member = _tied_case()
    rng = np.random.default_rng(31)
    attacks = {"a": scores, "b": rng.normal(size=scores.size), "c": -scores.copy()}
    attacks["c"][[0, 5]] = np.nan
    finite = {k: np.where(np.isnan(v), -1e9, v) for k, v in attacks.items()}
    n_permutations = 80
    loop = [
        max(_sk_advantage(v, y) for v in finite.values())  # one permutation for all attacks
        for labels in metrics._permuted_labels(is_member, n_permutations, seed=9)
        for y in labels
    ]
    observed = max(advantage(v, is_member) for v in attacks.values())
    null = null_max_advantage(attacks, is_member, n_permutations=n_permutations, seed=9)
    assert null.observed == pytest.approx(observed)
    assert null.mean == pytest.approx(np.mean(loop))
    assert null.q95 == pytest.approx(np.quantile(loop, 0.95))
    n_reach = int(np.sum(np.array(loop) >= observed - 1e-9))
    assert null.p_value == pytest.approx((1 + n_reach) / (1 + n_permutations))


def test_null_advantages_give_each_attack_its_own_null_and_the_max_from_one_pass(
    chunking: None,
) -> None:
    scores, is_member = _tied_case()
    rng = np.random.default_rng(34)
    attacks = {"a": scores, "b": rng.normal(size=scores.size), "c": -scores.copy()}
    attacks["c"][[0, 5]] = np.nan
    finite = {k: np.where(np.isnan(v), -1e9, v) for k, v in attacks.items()}
    each, best = metrics.null_advantages(attacks, is_member, n_permutations=60, seed=7)
    assert list(each) == ["a", "b", "c"]
    for name, values in finite.items():
        loop = [
            _sk_advantage(values, y)
            for labels in metrics._permuted_labels(is_member, 60, seed=7)
            for y in labels
        ]
        assert each[name].observed == pytest.approx(advantage(attacks[name], is_member))
        assert each[name].mean == pytest.approx(np.mean(loop))
        assert each[name].q95 == pytest.approx(np.quantile(loop, 0.95))
        # the same value as the attack's null computed alone, to the last bit
        assert each[name] == null_advantage(attacks[name], is_member, n_permutations=60, seed=7)
    assert best == null_max_advantage(attacks, is_member, n_permutations=60, seed=7)
    assert best.observed == max(n.observed for n in each.values())


def test_null_max_exceeds_each_single_null() -> None:
    rng = np.random.default_rng(32)
    is_member = np.r_[np.ones(150, bool), np.zeros(150, bool)]
    attacks = {f"a{i}": rng.normal(size=300) for i in range(5)}
    joint = null_max_advantage(attacks, is_member, n_permutations=200, seed=1)
    singles = [null_advantage(v, is_member, n_permutations=200, seed=1) for v in attacks.values()]
    assert joint.observed == max(n.observed for n in singles)
    assert all(joint.q95 >= n.q95 for n in singles)
    assert joint.mean > max(n.mean for n in singles)


def test_null_max_holds_its_level_where_the_single_null_does_not() -> None:
    # 5 independent no-leakage attacks, 100 per side, 200 seeds: the max-null rejects at about
    # 5%; judging the max against its best attack's own (single-attack) null rejects far more.
    rng = np.random.default_rng(33)
    is_member = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    joint_p, single_p = [], []
    for seed in range(200):
        attacks = {f"a{i}": rng.normal(size=200) for i in range(5)}
        joint = null_max_advantage(attacks, is_member, n_permutations=100, seed=seed)
        best = max(attacks.values(), key=lambda v: advantage(v, is_member))
        joint_p.append(joint.p_value)
        single_p.append(null_advantage(best, is_member, n_permutations=100, seed=seed).p_value)
    assert np.mean(np.array(joint_p) <= 0.05) <= 0.09
    assert np.mean(np.array(single_p) <= 0.05) >= 0.15


# ------------------------------------------------------------------ TPR at low FPR


def test_tpr_at_fpr_is_strictly_below_target() -> None:
    # 4 members, 5 non-members; descending: m m n m n m n n n. FP counts at the ROC points:
    # 0, 0, 0, 1, 1, 2, 2, 3, 4, 5 with TP 0, 1, 2, 2, 3, 3, 4, 4, 4, 4.
    scores = np.array([9.0, 8, 7, 6, 5, 4, 3, 2, 1])
    is_member = np.array([1, 1, 0, 1, 0, 1, 0, 0, 0], dtype=bool)
    # fpr = 0.2 allows exactly one false positive under "<=", none under "<".
    assert tpr_at_fpr(scores, is_member, 0.2) == pytest.approx(2 / 4)
    assert tpr_at_fpr(scores, is_member, 0.4) == pytest.approx(3 / 4)  # "<=" would say 4/4
    assert tpr_at_fpr(scores, is_member, 0.41) == pytest.approx(4 / 4)
    assert tpr_at_fpr(scores, is_member, 0.19) is None  # 5 * 0.19 < 1
    for target in (0.2, 0.4, 0.41, 0.6):
        fpr, tpr, _ = roc_curve(is_member, scores)
        assert tpr_at_fpr(scores, is_member, target) == tpr[np.where(fpr < target)[0][-1]]
    lo, hi = tpr_at_fpr_ci(scores, is_member, 0.2)
    assert (lo, hi) == clopper_pearson(2, 4)
    assert tpr_at_fpr_ci(scores, is_member, 0.19) is None


@pytest.mark.parametrize("tied", [False, True], ids=["distinct", "tied"])
def test_tpr_at_fpr_matches_lira_expression(tied: bool) -> None:
    for seed, (n_members, n_non_members) in enumerate([(300, 500), (200, 1000), (400, 1500)]):
        scores, is_member = _normal_split(n_members, n_non_members, shift=1.5, seed=40 + seed)
        if tied:
            scores = np.round(scores, 2)  # ties between members and non-members
        # LiRA's roc_curve default drops collinear points, which inside a tied group of members
        # and non-members can skip a reachable operating point; the full curve keeps it. With
        # distinct scores both curves give the same value.
        fpr, tpr, _ = roc_curve(is_member, scores, drop_intermediate=tied is False)
        for target in (0.01, 0.001, 0.05):
            expected = None if n_non_members * target < 1 else tpr[np.where(fpr < target)[0][-1]]
            assert tpr_at_fpr(scores, is_member, target) == expected


def test_clopper_pearson_known_values() -> None:
    assert clopper_pearson(0, 10) == pytest.approx((0.0, 0.3085), abs=1e-4)
    assert clopper_pearson(10, 10) == pytest.approx((0.6915, 1.0), abs=1e-4)
    assert clopper_pearson(0, 10)[1] == pytest.approx(1 - 0.025**0.1, abs=1e-12)
    for k, n, level in [(5, 20, 0.9), (3, 200, 0.95), (199, 200, 0.99), (1, 1, 0.95)]:
        ci = binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
        assert clopper_pearson(k, n, level) == pytest.approx((ci.low, ci.high), abs=1e-9)
    with pytest.raises(ValueError, match="successes"):
        clopper_pearson(11, 10)


def test_tpr_ci_covers_true_tpr_at_the_chosen_threshold() -> None:
    # Members N(1.5, 1), non-members N(0, 1); 200 and 500, FPR 1%: at most 4 false positives, so
    # the chosen cut is the 5th highest non-member score c and the true TPR is 1 - Phi(c - 1.5).
    rng = np.random.default_rng(41)
    is_member = np.r_[np.ones(200, bool), np.zeros(500, bool)]
    hits = []
    for _ in range(400):
        scores = np.r_[rng.normal(1.5, 1.0, 200), rng.normal(0.0, 1.0, 500)]
        cut = np.sort(scores[~is_member])[-5]
        assert tpr_at_fpr(scores, is_member, 0.01) == pytest.approx(
            np.mean(scores[is_member] > cut)
        )
        lo, hi = tpr_at_fpr_ci(scores, is_member, 0.01)
        hits.append(lo <= norm.sf(cut - 1.5) <= hi)
    assert np.mean(hits) >= 0.93


def test_sort_once_bootstrap_equals_sorting_every_replicate(chunking: None) -> None:
    # The bootstrap sorts the scores once and counts draws along that order; every replicate's
    # advantage and AUC equal those of the replicate sorted on its own, bit for bit (ties too).
    scores, is_member = _tied_case()
    for seed in range(5):
        expected_adv, expected_auc = [], []
        for pos, neg in metrics._bootstrap_resamples(scores, is_member, 50, seed=seed):
            x = np.concatenate([pos, neg], axis=1)
            y = np.zeros(x.shape, dtype=bool)
            y[:, : pos.shape[1]] = True
            order = np.argsort(-x, axis=1, kind="stable")
            a, u = metrics._batch_advantage_auc(
                np.take_along_axis(x, order, axis=1), np.take_along_axis(y, order, axis=1)
            )
            expected_adv.append(a)
            expected_auc.append(u)
        adv, area = metrics._bootstrap_statistics(scores, is_member, 50, seed=seed)
        np.testing.assert_array_equal(adv, np.concatenate(expected_adv))
        np.testing.assert_array_equal(area, np.concatenate(expected_auc))
