"""Tests for raymia.dtc on tiny models fitted to sklearn's bundled 8x8 digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from raymia.dtc import (
    DtcOptions,
    DtcResult,
    dtc,
    dtc_reference,
    resolve_tau,
    summarize_dtc,
    true_class_confidence,
)

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
    # A tau that some samples already meet and others must be pushed to.
    return float(np.quantile(true_class_confidence(model, x, y), 0.5))


def test_zero_for_samples_already_confident(model, samples):
    x, y = samples
    conf = true_class_confidence(model, x, y)
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
    taus = [0.3, 0.6, 0.9, 0.99, 0.999]
    dists = np.stack([dtc(model, x, y, t, opts).distance for t in taus])
    assert np.all(np.diff(dists, axis=0) >= 0.0)
    assert np.any(np.diff(dists, axis=0) > 0.0)  # the taus actually matter


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_batched_equals_per_sample_reference(model, samples, norm):
    x, y = samples
    tau = 0.99
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
    conf = true_class_confidence(model, x, y)
    tau = 0.999999
    assert np.all(conf < tau)
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
        DtcOptions(tau="median")


def test_resolve_tau_known_answers():
    ref = np.linspace(0.0, 1.0, 11)
    assert resolve_tau("quantile:0.9", ref) == pytest.approx(0.9)
    assert resolve_tau("quantile:0.5", ref) == pytest.approx(0.5)
    assert resolve_tau("absolute:0.75", None) == 0.75


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
        true_class_confidence(model, x, y)
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
    assert set(s) == {
        "dtc_auc",
        "dtc_adv",
        "dtc_median_member",
        "dtc_median_non_member",
        "dtc_censored",
    }


def test_members_closer_on_memorizing_model(digits):
    x, y = digits
    members, non_members = slice(0, 60), slice(60, 120)
    target = _fit_mlp(x[members], y[members], epochs=150, seed=1)
    ref_conf = true_class_confidence(target, x[1200:1300], y[1200:1300])
    tau = resolve_tau("quantile:0.9", ref_conf)
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
    from raymia.models import SmallCNN

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
    tau = float(np.quantile(true_class_confidence(model, x, y), 0.9))
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
