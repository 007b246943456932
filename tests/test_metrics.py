"""Tests for raymia.metrics: hand-computed ROC values, count rule, bootstrap and null vs loops."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from raymia import metrics
from raymia.metrics import (
    NullResult,
    advantage,
    advantage_at_threshold,
    auc,
    balanced_accuracy,
    best_threshold,
    bootstrap_ci,
    null_advantage,
    roc,
    summarize,
    tpr_at_fpr,
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
    assert balanced_accuracy(HAND_SCORES, HAND_MEMBER) == pytest.approx(5 / 6)
    # 0.8 and 0.6 both give 2/3; the highest is returned.
    assert best_threshold(HAND_SCORES, HAND_MEMBER) == 0.8
    assert advantage_at_threshold(HAND_SCORES, HAND_MEMBER, 0.8) == pytest.approx(2 / 3)
    assert advantage_at_threshold(HAND_SCORES, HAND_MEMBER, 0.7) == pytest.approx(1 / 3)
    assert advantage_at_threshold(HAND_SCORES, HAND_MEMBER, 0.55) == pytest.approx(2 / 3)
    assert advantage_at_threshold(HAND_SCORES, HAND_MEMBER, 0.0) == 0.0
    # 3 non-members: an FPR of 1/3 allows one false positive; 0.3 allows none.
    assert tpr_at_fpr(HAND_SCORES, HAND_MEMBER, 1 / 3) == pytest.approx(1.0)
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
    # The tied group at 0.5 cannot be split: one false positive allowed keeps TPR at 1/3.
    assert tpr_at_fpr(TIE_SCORES, TIE_MEMBER, 1 / 3) == pytest.approx(1 / 3)
    assert tpr_at_fpr(TIE_SCORES, TIE_MEMBER, 2 / 3) == pytest.approx(2 / 3)


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
    # Reference value: highest TPR among ROC points with at most 5 false positives.
    fpr, tpr, _ = roc_curve(is_member, scores, drop_intermediate=False)
    assert at_1pct == pytest.approx(tpr[np.rint(fpr * 500) <= 5].max())

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
    assert balanced_accuracy(scores, is_member) == 1.0
    assert tpr_at_fpr(scores, is_member, 0.02) == 1.0
    assert best_threshold(scores, is_member) == scores[:50].min()
    null = null_advantage(scores, is_member, n_permutations=200, seed=0)
    assert null.p_value == pytest.approx(1 / 201)
    assert bootstrap_ci(scores, is_member, "advantage", n_boot=50) == (1.0, 1.0)
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
    lo, hi = bootstrap_ci(scores, is_member, "advantage", n_boot=n_boot, seed=5)
    assert (lo, hi) == pytest.approx(tuple(np.quantile(loop_adv, [0.025, 0.975])))


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
    row = summarize(
        scores,
        is_member,
        prefix="loss",
        reference_scores=ref_scores,
        reference_is_member=ref_member,
        n_boot=20,
        n_permutations=20,
    )
    assert row["loss_adv_calibrated"] == pytest.approx(direct)
    # A threshold fitted elsewhere cannot beat the optimistic one on the evaluation set.
    assert row["loss_adv_calibrated"] <= row["loss_adv"]
    # A threshold from a reference where membership runs the other way goes negative.
    flipped = summarize(
        -scores,
        is_member,
        prefix="loss",
        reference_scores=ref_scores,
        reference_is_member=ref_member,
        n_boot=20,
        n_permutations=20,
    )
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
            "tpr_at_0p1pct",
            "adv_null_q95",
            "adv_p",
        )
    }
    assert set(row) == expected
    assert row["merlin_tpr_at_0p1pct"] is None
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


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError, match="one member and one non-member"):
        advantage(np.arange(3.0), np.ones(3, bool))
    with pytest.raises(ValueError, match="differ in length"):
        auc(np.arange(3.0), np.array([True, False]))
    with pytest.raises(ValueError, match="boolean"):
        roc(np.arange(3.0), np.array([0, 2, 1]))
    with pytest.raises(ValueError, match="statistic"):
        bootstrap_ci(HAND_SCORES, HAND_MEMBER, "accuracy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="both"):
        summarize(HAND_SCORES, HAND_MEMBER, prefix="x", reference_scores=HAND_SCORES)
    # 0/1 integer labels are accepted.
    assert auc(HAND_SCORES, HAND_MEMBER.astype(int)) == pytest.approx(8 / 9)
