"""Tests for raymia.privacy.dtc on tiny models fitted to sklearn's bundled 8x8 digits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logit
from sklearn.datasets import load_digits
from torch import nn

from raymia.data.datasets import load_splits
from raymia.privacy import metrics
from raymia.privacy.dtc import (
    DtcOptions,
    DtcResult,
    balanced_rows,
    dtc,
    dtc_reference,
    resolve_tau,
    summarize_dtc,
)
from raymia.privacy.logits import true_class_margin
from raymia.trial.config import AttackOptions, DtcSettings, TrialConfig
from raymia.trial.measure import _measure_dtc, balanced_evaluation

torch.set_num_threads(1)

# Small searches keep the file fast; the algorithm is the same at any size.
FAST = {"bisection_steps": 6, "pgd_steps": 8}


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    x = data.data.astype(np.float64)
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-6)  # standardized, as raymia's inputs are
    return x, data.target.astype(np.int64)


def _fit_mlp(x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> nn.Module:
    # float64 so that batched and per-sample runs cannot differ by float rounding at the
    # tau boundary; the algorithm's equality does not depend on it, the test's stability does.
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 10)).double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    model.train()
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture(scope="module")
def model(digits: tuple[np.ndarray, np.ndarray]) -> nn.Module:
    x, y = digits
    return _fit_mlp(x[:300], y[:300], epochs=40, seed=0)


@pytest.fixture(scope="module")
def samples(digits: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    x, y = digits
    return x[1000:1030], y[1000:1030]


def _mid_tau(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    # A margin target that some samples already meet and others must be pushed to.
    return float(np.quantile(true_class_margin(model, x, y), 0.5))


def test_zero_for_samples_already_confident(model, samples):
    x, y = samples
    conf = true_class_margin(model, x, y)
    tau = _mid_tau(model, x, y)
    res = dtc(model, x, y, tau, DtcOptions(**FAST))
    confident = conf >= tau
    assert confident.any() and (~confident).any()
    assert np.all(res.distance[confident] == 0.0)
    assert np.all(res.distance[~confident] > 0.0)
    assert not res.censored[confident].any()


def test_non_decreasing_in_tau(model, samples):
    x, y = samples
    opts = DtcOptions(**FAST)
    taus = logit([0.3, 0.6, 0.9, 0.99, 0.999])
    dists = np.stack([dtc(model, x, y, t, opts).distance for t in taus])
    assert np.all(np.diff(dists, axis=0) >= 0.0)
    assert np.any(np.diff(dists, axis=0) > 0.0)  # the taus actually matter


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_batched_equals_per_sample_reference(model, samples, norm):
    x, y = samples
    tau = logit(0.99)
    # batch_size 7 also exercises chunking with a ragged last chunk; a fine bisection makes
    # the comparison sensitive to small differences in the PGD trajectories.
    opts = DtcOptions(norm=norm, batch_size=7, bisection_steps=16, pgd_steps=10)
    batched = dtc(model, x, y, tau, opts)
    ref = dtc_reference(model, x, y, tau, opts)
    assert np.allclose(batched.distance, ref.distance, rtol=0.0, atol=1e-12)
    np.testing.assert_array_equal(batched.censored, ref.censored)
    # Not a trivial agreement: some samples needed a real search.
    assert np.any((batched.distance > 0) & ~batched.censored)


def test_censored_at_eps_max(model, samples):
    x, y = samples
    tau = logit(0.999999)
    assert np.all(true_class_margin(model, x, y) < tau)
    res = dtc(model, x, y, tau, DtcOptions(eps_max=1e-3, **FAST))
    assert res.censored.all()
    np.testing.assert_array_equal(res.distance, np.full(len(x), 1e-3))


def test_default_eps_max_depends_on_norm():
    assert DtcOptions().eps_max == 8.0
    assert DtcOptions(norm="linf").eps_max == 1.0
    assert DtcOptions(norm="linf", eps_max=0.5).eps_max == 0.5
    with pytest.raises(ValueError, match="'l1'"):
        DtcOptions(norm="l1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="quantile:q"):
        resolve_tau("median", None)


def test_resolve_tau_known_answers():
    ref = np.linspace(0.0, 1.0, 11)
    assert resolve_tau("quantile:0.9", ref) == pytest.approx(0.9)
    assert resolve_tau("quantile:0.5", ref) == pytest.approx(0.5)
    # absolute:p is the margin at which p_y = p: logit(0.75) = log 3
    assert resolve_tau("absolute:0.75", None) == pytest.approx(math.log(3.0))
    # a margin, not a probability: quantiles far past p_y = 1 stay what they are
    assert resolve_tau("quantile:0.5", np.array([30.0, 40.0, 50.0])) == pytest.approx(40.0)


@pytest.mark.parametrize(
    "spec", ["quantile", "quantile:", "quantile:1.0", "absolute:0", "absolute:-0.1", "q:0.9", ""]
)
def test_resolve_tau_rejects_bad_specs(spec):
    with pytest.raises(ValueError) as err:
        resolve_tau(spec, np.array([0.5]))
    assert repr(spec) in str(err.value)
    assert "'quantile:q'" in str(err.value) and "'absolute:p'" in str(err.value)


def test_resolve_tau_quantile_needs_reference():
    with pytest.raises(ValueError, match="reference non-members"):
        resolve_tau("quantile:0.9", None)


def test_mode_restored_and_no_parameter_grads(model, samples):
    x, y = samples
    model.train()
    model[2].eval()  # a submodule in its own mode must get it back, not the parent's
    model[3].bias.requires_grad_(False)  # and a frozen parameter must stay frozen
    try:
        dtc(model, x[:5], y[:5], 0.99, DtcOptions(**FAST))
        dtc_reference(model, x[:3], y[:3], 0.99, DtcOptions(**FAST))
        true_class_margin(model, x, y)
        assert model.training and model[0].training and not model[2].training
        assert not model[3].bias.requires_grad
    finally:
        model.eval()
        model[3].bias.requires_grad_(True)
    for p in model.parameters():
        assert p.grad is None
        assert p.requires_grad


def test_works_under_no_grad(model, samples):
    x, y = samples
    opts = DtcOptions(**FAST)
    with torch.no_grad():
        res = dtc(model, x, y, 0.99, opts)
    np.testing.assert_array_equal(res.distance, dtc(model, x, y, 0.99, opts).distance)


def test_summarize_dtc_known_answer():
    member = DtcResult(np.array([0.0, 0.5, 1.0, 8.0]), np.array([False, False, False, True]))
    non_member = DtcResult(np.array([0.75, 2.0, 8.0]), np.array([False, False, True]))
    s = summarize_dtc(member, non_member)
    # Pairs (member, non-member) with the member closer: 3 + 3 + 2 + 0, plus a tie (8 vs 8).
    assert s["dtc_auc"] == pytest.approx(8.5 / 12)
    # Best threshold at distance <= 0.5: TPR 2/4, FPR 0 -> 0.5.
    assert s["dtc_adv"] == pytest.approx(0.5)
    assert s["dtc_median_member"] == pytest.approx(0.75)
    assert s["dtc_median_non_member"] == pytest.approx(2.0)
    assert s["dtc_censored"] == pytest.approx(2 / 7)
    assert s["dtc_adv_null_q95"] is None and s["dtc_adv_p"] is None  # n_permutations = 0
    assert s["dtc_auc_lo"] is None and s["dtc_auc_hi"] is None  # n_boot = 0
    assert s["dtc_adv_lo"] <= 0.5 <= s["dtc_adv_hi"]  # DKW: needs no resampling
    assert set(s) == {
        "dtc_auc",
        "dtc_auc_lo",
        "dtc_auc_hi",
        "dtc_adv",
        "dtc_adv_lo",
        "dtc_adv_hi",
        "dtc_adv_null_q95",
        "dtc_adv_p",
        "dtc_median_member",
        "dtc_median_non_member",
        "dtc_censored",
    }


def test_summarize_dtc_intervals_are_the_attacks_intervals():
    # DtC's AUC and advantage carry the intervals every attack carries, on the same functions
    # (their coverage is tested in test_metrics): the bootstrap of -distance, seeded.
    rng = np.random.default_rng(3)
    member = DtcResult(rng.exponential(1.0, 200), np.zeros(200, bool))
    non_member = DtcResult(rng.exponential(1.5, 200), np.zeros(200, bool))
    s = summarize_dtc(member, non_member, n_boot=300, seed=5)
    scores = -np.r_[member.distance, non_member.distance]
    is_member = np.r_[np.ones(200, bool), np.zeros(200, bool)]
    assert (s["dtc_auc_lo"], s["dtc_auc_hi"]) == metrics.bootstrap_ci(
        scores, is_member, "auc", n_boot=300, seed=5
    )
    assert (s["dtc_adv_lo"], s["dtc_adv_hi"]) == metrics.advantage_ci(scores, is_member, 0.95)
    assert s["dtc_auc_lo"] < s["dtc_auc"] < s["dtc_auc_hi"]
    assert s["dtc_adv_lo"] <= s["dtc_adv"] <= s["dtc_adv_hi"]
    assert summarize_dtc(member, non_member, n_boot=300, seed=5) == s  # seeded


def test_members_closer_on_memorizing_model(digits):
    x, y = digits
    members, non_members = slice(0, 60), slice(60, 120)
    target = _fit_mlp(x[members], y[members], epochs=150, seed=1)
    ref_margin = true_class_margin(target, x[1200:1300], y[1200:1300])
    tau = resolve_tau("quantile:0.9", ref_margin)
    opts = DtcOptions(**FAST)
    s = summarize_dtc(
        dtc(target, x[members], y[members], tau, opts),
        dtc(target, x[non_members], y[non_members], tau, opts),
    )
    assert s["dtc_auc"] > 0.7
    assert s["dtc_median_member"] < s["dtc_median_non_member"]


@pytest.fixture(scope="module")
def cnn_and_images(
    digits: tuple[np.ndarray, np.ndarray],
) -> tuple[nn.Module, np.ndarray, np.ndarray]:
    # raymia's own image model (the batched path lays image batches out channels-last and runs
    # its ReLUs in place), fitted briefly so that confidences spread out.
    from raymia.models.networks import SmallCNN

    x, y = digits
    images = x.reshape(-1, 1, 8, 8)
    torch.manual_seed(0)
    model = SmallCNN(channels=1, num_classes=10, width=8, image_size=8).double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.as_tensor(images[:300]), torch.as_tensor(y[:300])
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return model.eval(), images[1000:1045], y[1000:1045]


def test_batched_equals_reference_on_image_model(cnn_and_images):
    model, x, y = cnn_and_images
    # 45 samples in one chunk: as they finish the batch shrinks to 32 rows padded with finished
    # ones, whose later steps must not change any result.
    opts = DtcOptions(batch_size=64, bisection_steps=12, pgd_steps=8)
    tau = float(np.quantile(true_class_margin(model, x, y), 0.9))
    batched = dtc(model, x, y, tau, opts)
    ref = dtc_reference(model, x, y, tau, opts)
    assert np.allclose(batched.distance, ref.distance, rtol=0.0, atol=1e-12)
    np.testing.assert_array_equal(batched.censored, ref.censored)
    assert np.sum((batched.distance > 0) & ~batched.censored) > 32


def test_caller_model_keeps_its_layout(cnn_and_images):
    model, x, y = cnn_and_images
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dtc(model, x[:10], y[:10], 0.99, DtcOptions(**FAST))
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert relus and not any(m.inplace for m in relus)
    for name, value in model.state_dict().items():
        assert value.is_contiguous(), name  # not turned channels-last
        assert torch.equal(value, before[name]), name
    assert all(not m._forward_pre_hooks for m in model.modules())


# --- confident models: margins, not probabilities ----------------------------------------------


def float32_confidence(model: nn.Module, x, y) -> np.ndarray:
    """The true-class softmax probability in the model's float32, where DtC measured before
    it moved to margins: confident samples round to exactly 1.0 there."""
    with torch.no_grad():
        p = torch.softmax(model(torch.as_tensor(x)), dim=1)
    return p[torch.arange(len(y)), torch.as_tensor(y)].numpy()


def test_pgd_climbs_past_where_float32_confidence_is_one():
    # Two classes, margin = 4 x0 + 3 x1, so the margin gains ||(4, 3)|| = 5 per unit of L2
    # radius along its gradient. At x = (5, 0) the margin is 20: p_y = 1 - 2e-9, exactly 1.0
    # in float32, where log p_y and its gradient are exactly 0. Reaching margin 25 takes 1.0.
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[4.0, 3.0], [0.0, 0.0]]))
        model.bias.zero_()
    x, y = np.array([[5.0, 0.0]], dtype=np.float32), np.array([0])
    assert float32_confidence(model, x, y)[0] == 1.0
    assert true_class_margin(model, x, y)[0] == pytest.approx(20.0)
    opts = DtcOptions(bisection_steps=10)  # eps_max 8: resolution 8 / 1024
    for fn in (dtc, dtc_reference):
        res = fn(model, x, y, 25.0, opts)
        assert not res.censored[0]
        assert 1.0 <= res.distance[0] <= 1.0 + 8 / 1024 + 1e-9


@pytest.fixture(scope="module")
def digits_splits():
    return {seed: load_splits("digits", seed) for seed in range(3)}


def _saturated_linear(splits, scale: float) -> nn.Module:
    # A float32 linear model fitted to the members, its weights scaled up so that most
    # reference non-members get p_y = 1.0 exactly in float32.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(splits.members.x), splits.members.y).backward()
        opt.step()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return model.eval()


def _dtc_config(seed: int, max_samples: int, n_permutations: int = 0) -> TrialConfig:
    return TrialConfig(
        seed=seed,
        device="cpu",
        dtc=DtcSettings(max_samples=max_samples, bisection_steps=3, pgd_steps=2),
        attacks=AttackOptions(n_permutations=n_permutations),
    )


def test_saturated_model_is_measured_not_failed(digits_splits):
    splits = digits_splits[0]
    model = _saturated_linear(splits, scale=20.0)
    ref_conf = float32_confidence(model, splits.reference.x, splits.reference.y)
    assert np.quantile(ref_conf, 0.9) == 1.0  # the old probability-domain tau was 1.0
    evaluation = balanced_evaluation(splits.members, splits.non_members, 0)
    summary, distance, censored = _measure_dtc(
        _dtc_config(0, 200, n_permutations=50), splits, model, evaluation
    )
    assert np.isfinite(summary["dtc_tau"]) and summary["dtc_tau"] > 20.0  # a margin
    assert np.isfinite(summary["dtc_adv"]) and np.isfinite(summary["dtc_auc"])
    assert 0.0 < summary["dtc_adv_p"] <= 1.0 and summary["dtc_adv_null_q95"] is not None
    measured = ~np.isnan(distance)
    assert measured.sum() == 200 and np.all(np.isfinite(distance[measured]))
    assert summary["dtc_samples"] == 200  # the row says how many were measured
    assert np.any(distance[measured] > 0)  # a real search, not all confident at d = 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_measured_subset_is_class_balanced(digits_splits, seed):
    splits = digits_splits[seed]
    model = _saturated_linear(splits, scale=1.0)
    evaluation = balanced_evaluation(splits.members, splits.non_members, seed)
    n = len(evaluation.is_member) // 2
    assert 2 * n > 300
    _, distance, _ = _measure_dtc(_dtc_config(seed, 300), splits, model, evaluation)
    measured = ~np.isnan(distance)
    labels = evaluation.y.numpy()
    counts_m = np.bincount(labels[:n][measured[:n]], minlength=10)
    counts_n = np.bincount(labels[n:][measured[n:]], minlength=10)
    np.testing.assert_array_equal(counts_m, counts_n)
    assert counts_m.sum() == 150
    # proportional to the evaluation set's classes (largest remainders: within one)
    share = np.bincount(labels[:n], minlength=10) * 150 / n
    assert np.all(np.abs(counts_m - share) < 1.0)


def test_balanced_rows_known_answers():
    y_m = np.array([0, 0, 0, 0, 1, 1, 2])
    y_n = np.array([1, 0, 0, 2, 2, 1, 0, 1])
    # available pairs per class: 0 -> 3, 1 -> 2, 2 -> 1
    rows_m, rows_n = balanced_rows(y_m, y_n, 100, seed=0)
    assert len(rows_m) == len(rows_n) == 6
    np.testing.assert_array_equal(np.bincount(y_m[rows_m]), [3, 2, 1])
    np.testing.assert_array_equal(np.bincount(y_n[rows_n]), [3, 2, 1])
    rows_m, rows_n = balanced_rows(y_m, y_n, 4, seed=0)  # shares 2, 4/3, 2/3 -> 2, 1, 1
    np.testing.assert_array_equal(np.bincount(y_m[rows_m], minlength=3), [2, 1, 1])
    np.testing.assert_array_equal(np.bincount(y_n[rows_n], minlength=3), [2, 1, 1])
    again = balanced_rows(y_m, y_n, 4, seed=0)
    np.testing.assert_array_equal(rows_m, again[0])
    np.testing.assert_array_equal(rows_n, again[1])
    assert all(len(r) == 0 for r in balanced_rows(y_m, y_n, 0, seed=0))


# --- the permutation null of dtc_adv --------------------------------------------------------------


def _null_distances(rng: np.random.Generator, n: int) -> np.ndarray:
    # No signal, with DtC's ties: some samples confident at d = 0, some censored at eps_max.
    d = rng.uniform(0.0, 8.0, n)
    d[rng.random(n) < 0.1] = 0.0
    d[rng.random(n) < 0.2] = 8.0
    return d


def _summary(d_member: np.ndarray, d_non_member: np.ndarray, seed: int, n_perm: int = 99):
    return summarize_dtc(
        DtcResult(d_member, d_member == 8.0),
        DtcResult(d_non_member, d_non_member == 8.0),
        n_permutations=n_perm,
        seed=seed,
    )


def test_dtc_null_has_its_level_without_signal():
    rng = np.random.default_rng(2024)
    rows = [_summary(_null_distances(rng, 100), _null_distances(rng, 100), s) for s in range(400)]
    p = np.array([r["dtc_adv_p"] for r in rows])
    q95 = np.array([r["dtc_adv_null_q95"] for r in rows])
    assert np.mean(p <= 0.05) <= 0.09
    assert 0.4 < np.mean(p) < 0.6  # roughly uniform, not merely conservative
    assert 0.1 < np.median(q95) < 0.25  # about 0.16 at 100 per side
    # The observed advantage exceeds its own q95 about as often as p <= 0.05.
    assert np.mean([r["dtc_adv"] > r["dtc_adv_null_q95"] for r in rows]) <= 0.09


def test_dtc_null_detects_signal():
    rng = np.random.default_rng(7)
    s = _summary(_null_distances(rng, 100) * 0.5, _null_distances(rng, 100), seed=0)
    assert s["dtc_adv"] > s["dtc_adv_null_q95"]
    assert s["dtc_adv_p"] == pytest.approx(1 / 100)


def test_dtc_auc_interval_covers_at_the_subsample_size():
    # Known truth: member distances ~ Exp(mean 1), non-members ~ Exp(mean 1.5), so
    # AUC = P(member closer) = 1 / (1 + 2/3) = 0.6. At 125 per side (dtc.max_samples = 250)
    # the bootstrap interval holds about its 95% level.
    rng = np.random.default_rng(11)
    hits = 0
    for seed in range(200):
        d_m = np.minimum(rng.exponential(1.0, 125), 8.0)
        d_n = np.minimum(rng.exponential(1.5, 125), 8.0)
        s = summarize_dtc(
            DtcResult(d_m, d_m == 8.0), DtcResult(d_n, d_n == 8.0), n_boot=200, seed=seed
        )
        hits += s["dtc_auc_lo"] <= 0.6 <= s["dtc_auc_hi"]
    assert 0.90 <= hits / 200 <= 0.99
