"""Tests for raymia.attacks: known answers on hand-made models, and leakage on a real target."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import norm
from torch import nn

from raymia import attacks
from raymia.data.datasets import DataError, load_splits
from raymia.privacy import metrics
from raymia.privacy.logits import per_sample_loss, sample_loss, true_class_margin
from raymia.trial import reference_models as reference
from raymia.trial.config import AttackOptions, Mechanisms, TrialConfig


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The test box is shared: keep torch to one core while this module runs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------
# Hand-made models
# --------------------------------------------------------------------------------------------

W = np.array([[1.0, -2.0, 0.5, 0.0], [0.0, 1.0, -1.0, 2.0], [-1.0, 0.5, 0.0, 1.0]])
B = np.array([0.1, -0.2, 0.3])
X = np.array(
    [[[[1.0, 0.0], [2.0, -1.0]]], [[[0.5, 0.5], [-0.5, 1.5]]], [[[-1.0, 3.0], [0.0, 0.2]]]]
)  # (3, 1, 2, 2)
Y = np.array([0, 2, 1])


def linear_model() -> nn.Module:
    """A float64 linear classifier on flattened 2x2 images with fixed weights."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.from_numpy(W))
        model[1].bias.copy_(torch.from_numpy(B))
    return model


def numpy_probs() -> np.ndarray:
    logits = X.reshape(3, 4) @ W.T + B
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class Bowl(nn.Module):
    """Two classes; class 0's logit is -||x - c||^2, class 1's is 0.

    The loss of class 0, softplus(||x - c||^2), has its strict minimum at x = c, where the loss
    of class 1 has its strict maximum.
    """

    def __init__(self, centre: torch.Tensor):
        super().__init__()
        self.centre = nn.Parameter(centre.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = ((x - self.centre) ** 2).flatten(1).sum(dim=1)
        return torch.stack([-d, torch.zeros_like(d)], dim=1)


def test_probability_scores_match_hand_computation():
    model = linear_model()
    p = numpy_probs()
    rows = np.arange(3)
    p_y = p[rows, Y]
    loss = -np.log(p_y)
    entropy = -(p * np.log(p)).sum(axis=1)
    others = np.ones_like(p, dtype=bool)
    others[rows, Y] = False
    mentr = -(1 - p_y) * np.log(p_y) - np.where(others, p * np.log(1 - p), 0.0).sum(axis=1)

    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    scores = attacks.score_all(model, x, y, AttackOptions(), seed=0)
    from_arrays = attacks.score_all(model, X, Y, AttackOptions(), seed=0)
    np.testing.assert_allclose(per_sample_loss(model, x, y), loss, rtol=1e-12)
    np.testing.assert_allclose(scores["loss"], -loss, rtol=1e-12)
    # confidence is reported as the logit of p_y (monotone in p_y, never rounded to 1)
    np.testing.assert_allclose(scores["confidence"], np.log(p_y) - np.log1p(-p_y), rtol=1e-12)
    np.testing.assert_allclose(scores["entropy"], -entropy, rtol=1e-12)
    np.testing.assert_allclose(from_arrays["modified_entropy"], -mentr, rtol=1e-12)
    # LiRA's statistic: log p_y - log(1 - p_y)
    np.testing.assert_allclose(
        true_class_margin(model, x, y), np.log(p_y) - np.log(1 - p_y), rtol=1e-12
    )


def test_scores_do_not_depend_on_chunking_and_restore_train_mode():
    model = linear_model().train()
    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    options = AttackOptions(merlin_neighbours=5, merlin_sigma=0.1)
    whole = attacks.score_all(model, x, y, options, seed=3)
    one_by_one = attacks.score_all(model, x, y, options, seed=3, batch_size=1)
    without_references = [a.name for a in attacks.REGISTRY.values() if not a.reference_models]
    assert list(whole) == without_references
    for key in ("loss", "confidence", "entropy", "modified_entropy"):
        np.testing.assert_allclose(whole[key], one_by_one[key], rtol=1e-12)
        assert whole[key].dtype == np.float64 and whole[key].shape == (3,)
    assert model.training and all(m.training for m in model.modules())


def test_extreme_logits_stay_finite_and_ordered():
    model = linear_model()
    with torch.no_grad():
        model[1].weight.mul_(200.0)  # p_y rounds to 1 (or 0) in float64
    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    scores = attacks.score_all(model, x, y, AttackOptions(merlin_neighbours=3), seed=0)
    for key, values in scores.items():
        assert np.all(np.isfinite(values)), key
    phi = true_class_margin(model, x, y)
    assert np.all(np.isfinite(phi))
    # phi keeps resolving confidences that round to exactly 1: it is z_y - logsumexp(z_others).
    logits = X.reshape(3, 4) @ (200 * W).T + B
    rows = np.arange(3)
    others = np.where(np.eye(3, dtype=bool)[Y], -np.inf, logits)
    expected = logits[rows, Y] - logsumexp(others, axis=1)
    np.testing.assert_allclose(phi, expected, rtol=1e-9)
    assert np.max(phi) > 40  # far past where p_y = 1 in float64


def test_empty_input_gives_empty_scores():
    model = linear_model()
    x, y = torch.zeros(0, 1, 2, 2, dtype=torch.float64), torch.zeros(0, dtype=torch.long)
    scores = attacks.score_all(model, x, y, AttackOptions(), seed=0)
    assert all(v.shape == (0,) for v in scores.values())


def test_yeom_threshold_pairs_with_advantage_at_threshold():
    train_losses = np.array([0.1, 0.2, 0.3])
    assert attacks.yeom_threshold(train_losses) == pytest.approx(0.2)
    losses = np.array([0.05, 0.2, 0.25, 0.9])  # member iff loss <= 0.2
    is_member = np.array([True, True, False, False])
    threshold = attacks.yeom_score_threshold(train_losses)
    assert metrics.advantage_at_threshold(-losses, is_member, threshold) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        attacks.yeom_threshold(np.array([]))


# --------------------------------------------------------------------------------------------
# Merlin
# --------------------------------------------------------------------------------------------


def test_merlin_known_answers_at_a_strict_minimum_and_maximum():
    centre = torch.tensor([[[0.5, -1.0], [2.0, 0.0]]])
    model = Bowl(centre)
    x = torch.stack([centre, centre, centre + 0.3])
    y = torch.tensor([0, 1, 0])
    scores = attacks.merlin_scores(model, x, y, neighbours=50, sigma=0.1, seed=0)
    assert scores[0] == 1.0  # every noisy copy leaves the minimum: loss rises
    assert scores[1] == 0.0  # every noisy copy leaves the maximum: loss falls
    assert 0.0 < scores[2] < 1.0


def test_merlin_is_deterministic_given_the_seed():
    model = linear_model()
    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    a = attacks.merlin_scores(model, x, y, neighbours=40, sigma=0.5, seed=7)
    b = attacks.merlin_scores(model, x, y, neighbours=40, sigma=0.5, seed=7)
    c = attacks.merlin_scores(model, x, y, neighbours=40, sigma=0.5, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all((a >= 0) & (a <= 1))
    np.testing.assert_allclose(a * 40, np.round(a * 40))  # fractions of the 40 copies
    with pytest.raises(ValueError):
        attacks.merlin_scores(model, x, y, neighbours=0, sigma=0.5, seed=0)


def test_antithetic_merlin_is_unbiased_with_less_noise():
    # Known truth: the Bowl's loss rises at x = c + delta iff ||delta + sigma e||^2 > ||delta||^2,
    # whose probability p a million numpy draws give. Over 300 seeds both estimators average to
    # p; the antithetic one (pairs +e, -e) varies less. On a linear loss every pair has one rise
    # and one fall: antithetic Merlin is exactly 1/2, the independent one only on average.
    centre = torch.zeros(1, 2, 2)
    delta = torch.tensor([[[0.3, -0.2], [0.1, 0.25]]])
    sigma, t = 0.05, 10  # small against delta: the linear term dominates, p near 0.6
    e = np.random.default_rng(0).normal(size=(1_000_000, 4))
    d = delta.numpy().reshape(-1)
    p = np.mean(((d + sigma * e) ** 2).sum(axis=1) > (d**2).sum())
    model, x, y = Bowl(centre), (centre + delta).unsqueeze(0), torch.tensor([0])
    runs = {
        anti: np.array(
            [
                attacks.merlin_scores(model, x, y, t, sigma, seed, antithetic=anti)[0]
                for seed in range(300)
            ]
        )
        for anti in (False, True)
    }
    for scores in runs.values():
        assert abs(scores.mean() - p) < 3 * scores.std() / np.sqrt(300) + 1e-9
    assert runs[True].var() < 0.7 * runs[False].var()

    class Ramp(nn.Module):  # logits (w . x, 0): the loss is monotone in one linear function
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = x.flatten(1) @ torch.tensor([1.0, -2.0, 0.5, 1.5], dtype=x.dtype)
            return torch.stack([z, torch.zeros_like(z)], dim=1)

    linear = Ramp()
    xs, ys = torch.from_numpy(X), torch.from_numpy(Y) % 2
    anti = attacks.merlin_scores(linear, xs, ys, 10, 0.5, 0, antithetic=True)
    iid = attacks.merlin_scores(linear, xs, ys, 10, 0.5, 0, antithetic=False)
    np.testing.assert_array_equal(anti, 0.5)
    assert not np.all(iid == 0.5)
    odd = attacks.merlin_scores(linear, xs, ys, 11, 0.5, 0, antithetic=True)
    np.testing.assert_allclose(odd * 11, np.round(odd * 11))  # 5 pairs and one unpaired copy
    assert np.all(np.abs(odd - 0.5) <= 0.5 / 11 + 1e-12)


# --------------------------------------------------------------------------------------------
# LiRA offline
# --------------------------------------------------------------------------------------------


def test_lira_offline_known_answer_with_pooled_std():
    reference = np.array([[0.0, 1.0, 2.0], [1.0, 2.0, 2.0], [2.0, 0.0, 5.0], [1.0, 1.0, 3.0]])
    target = np.array([4.0, 1.0, 0.0])
    mean = reference.mean(axis=0)  # [1, 1, 3]
    k, n = reference.shape
    pooled = np.sqrt(((reference - mean) ** 2).sum() / (n * (k - 1)))
    expected = norm.logcdf(target, loc=mean, scale=pooled)
    scores = attacks.lira_offline_scores(target, reference)
    np.testing.assert_allclose(scores, expected, rtol=1e-12)
    assert scores[0] > scores[1] > scores[2]  # phi above the OUT mean scores highest
    assert np.all(scores <= 0)


def test_lira_offline_per_sample_std_from_sixteen_models():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(16, 5)) * np.array([0.5, 1.0, 2.0, 3.0, 4.0])
    target = rng.normal(size=5)
    expected = norm.logcdf(target, loc=reference.mean(0), scale=reference.std(0, ddof=1))
    np.testing.assert_allclose(attacks.lira_offline_scores(target, reference), expected, rtol=1e-12)


def test_lira_offline_single_model_and_bad_shapes():
    reference = np.array([[0.0, 2.0, 4.0]])
    target = np.array([1.0, 1.0, 1.0])
    expected = norm.logcdf(target, loc=reference[0], scale=reference.std())
    np.testing.assert_allclose(attacks.lira_offline_scores(target, reference), expected)
    # identical reference outputs: no division by zero, still ordered
    flat = attacks.lira_offline_scores(np.array([1.0, 0.0]), np.zeros((3, 2)))
    assert flat[0] > flat[1]
    with pytest.raises(ValueError):
        attacks.lira_offline_scores(target, reference[0])
    with pytest.raises(ValueError):
        attacks.lira_offline_scores(target[:2], reference)


# --------------------------------------------------------------------------------------------
# A memorizing target on digits, and reference models under the same config
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_splits("digits", 0, members=100, non_members=100, reference=100)


@pytest.fixture(scope="module")
def target(digits):
    from raymia.trial.train import train_model

    config = TrialConfig(members=100, non_members=100, reference=100, epochs=30, device="cpu")
    model = train_model(config, digits.info, digits.members, device=torch.device("cpu")).model
    x = torch.cat([digits.members.x, digits.non_members.x])
    y = torch.cat([digits.members.y, digits.non_members.y])
    is_member = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    return config, model, x, y, is_member


@pytest.mark.slow
def test_attacks_detect_members_of_a_memorizing_target(target):
    config, model, x, y, is_member = target
    scores = attacks.score_all(
        model, x, y, AttackOptions(merlin_neighbours=30, merlin_sigma=0.1), 0
    )
    aucs = {key: metrics.auc(values, is_member) for key, values in scores.items()}
    assert aucs["loss"] > 0.6, aucs
    assert aucs["merlin"] > 0.5, aucs
    for key in ("confidence", "entropy", "modified_entropy"):
        assert aucs[key] > 0.6, aucs
    # the Yeom threshold (mean member loss) beats guessing on the evaluation set
    member_losses = per_sample_loss(model, x[:100], y[:100])
    threshold = attacks.yeom_score_threshold(member_losses)
    assert metrics.advantage_at_threshold(scores["loss"], is_member, threshold) > 0.1


@pytest.mark.slow
def test_reference_models_are_distinct_out_models_and_feed_lira(target, digits):
    config, model, x, y, is_member = target
    trained_on: list = []
    real_train_model = reference.train_model

    def recording(config, info, members, **kwargs):
        trained_on.append((members, kwargs))
        return real_train_model(config, info, members, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reference, "train_model", recording)
        models = reference.train_reference_models(
            config, digits.info, digits.reference, k=2, n_trained=50, n_held_out=20
        )

    assert len(models) == 2
    assert all(not m.training for m in models for m in m.modules())
    first, second = (dict(m.named_parameters()) for m in models)
    assert any(not torch.equal(first[name], second[name]) for name in first)

    evaluated = set(digits.members.indices) | set(digits.non_members.indices)
    halves = []
    for members, kwargs in trained_on:
        used = set(members.indices)
        assert len(used) == 50 and used <= set(digits.reference.indices)
        assert not used & evaluated
        held = set(kwargs["held_out"].indices)
        assert len(held) == 20 and held <= set(digits.reference.indices) and not used & held
        assert kwargs["seed_offset"] >= 100
        halves.append(used)
    assert halves[0] != halves[1]
    assert trained_on[0][1]["seed_offset"] != trained_on[1][1]["seed_offset"]

    target_phi = true_class_margin(model, x, y)
    reference_phi = np.stack([true_class_margin(m, x, y) for m in models])
    lira = attacks.lira_offline_scores(target_phi, reference_phi)
    assert metrics.auc(lira, is_member) > 0.6


def test_reference_models_train_under_mechanisms_that_need_side_data(digits):
    config = TrialConfig(
        members=100,
        non_members=100,
        reference=100,
        epochs=2,
        device="cpu",
        mechanisms=Mechanisms(adv_reg=1.0, early_stopping=1),
    )
    sizes = {"n_trained": 50, "n_held_out": 20}
    models = reference.train_reference_models(config, digits.info, digits.reference, k=1, **sizes)
    assert len(models) == 1 and not models[0].training
    assert reference.train_reference_models(config, digits.info, digits.reference, 0, **sizes) == []


def test_reference_rows_are_seeded_disjoint_and_sized():
    rows = reference.reference_rows(50, 20, 5, 3, seed=5)
    again = reference.reference_rows(50, 20, 5, 3, seed=5)
    for (a, b, c), (d, e, f) in zip(rows, again, strict=True):
        for got, want in ((a, d), (b, e), (c, f)):
            np.testing.assert_array_equal(got, want)
        assert (len(a), len(b), len(c)) == (20, 5, 25)
        assert np.array_equal(np.sort(np.r_[a, b, c]), np.arange(50))
    assert not np.array_equal(rows[0][0], rows[1][0])
    with pytest.raises(DataError, match="reference = 44 is too small"):
        reference.reference_rows(44, 20, 5, 1, seed=5)


# --------------------------------------------------------------------------------------------
# Scores past float saturation
# --------------------------------------------------------------------------------------------


def _margin_logits(margins: list[float], classes: int = 10) -> torch.Tensor:
    """Logits (float64) whose true class 0 leads every other class by the given margin."""
    logits = torch.zeros(len(margins), classes, dtype=torch.float64)
    logits[:, 0] = torch.tensor(margins, dtype=torch.float64)
    return logits


def test_scores_stay_ordered_past_float_saturation():
    # Beyond a margin of about 37, float64's log_softmax gives loss exactly 0 and p_y exactly 1.
    margins = [30.0, 40.0, 50.0, 60.0]
    logits = _margin_logits(margins)
    y = torch.zeros(len(margins), dtype=torch.long)
    found = {k: v.numpy() for k, v in attacks.scores_from_logits(logits, y).items()}
    loss = sample_loss(logits, y).numpy()
    np.testing.assert_array_equal(-loss, found["loss"])
    assert np.all(loss > 0)
    assert np.all(np.diff(loss) < 0)  # more confident, lower loss
    for key in ("confidence", "entropy", "modified_entropy"):
        assert np.all(np.diff(found[key]) > 0), key  # strictly increasing: no ties
    # Known answers: 9 other classes, s = 9 e^-m, loss = log1p(s), phi = m - log 9,
    # -H = -(log1p(s) / (1 + s) + s (m + log1p(s)) / (1 + s)), Mentr ~ 90 e^-2m.
    m = np.array(margins)
    s = 9 * np.exp(-m)
    np.testing.assert_allclose(loss, np.log1p(s), rtol=1e-12)
    np.testing.assert_allclose(found["confidence"], m - np.log(9), rtol=1e-12)
    neg_entropy = -(np.log1p(s) + s * (m + np.log1p(s))) / (1 + s)
    np.testing.assert_allclose(found["entropy"], neg_entropy, rtol=1e-9)
    np.testing.assert_allclose(found["modified_entropy"], -90 * np.exp(-2 * m), rtol=1e-9)


def test_stable_scores_equal_the_textbook_formulas_on_ordinary_logits():
    gen = torch.Generator().manual_seed(0)
    logits = 3.0 * torch.randn(200, 10, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (200,), generator=gen)
    found = attacks.scores_from_logits(logits, y)
    # The formulas before the stable log-softmax (exact wherever float64 does not saturate).
    log_p = torch.log_softmax(logits, dim=1)
    p = log_p.exp()
    rows = torch.arange(200)
    p_y, log_p_y = p[rows, y], log_p[rows, y]
    others = torch.ones_like(p, dtype=torch.bool)
    others[rows, y] = False
    mentr = -(1 - p_y) * log_p_y - torch.where(others, p * torch.log1p(-p), 0.0).sum(dim=1)
    np.testing.assert_allclose(found["loss"], log_p_y, rtol=1e-12)
    np.testing.assert_allclose(sample_loss(logits, y), -log_p_y, rtol=1e-12)
    np.testing.assert_allclose(torch.sigmoid(found["confidence"]), p_y, rtol=1e-12)
    np.testing.assert_allclose(found["entropy"], (p * log_p).sum(dim=1), rtol=1e-12)
    np.testing.assert_allclose(found["modified_entropy"], -mentr, rtol=1e-12, atol=1e-15)


def test_merlin_counts_loss_rises_past_float_saturation():
    """A sample at margin ~50: every noisy copy that lowers the margin raises the loss, which
    cross_entropy rounds to 0 on both sides; Merlin must still count those rises."""
    import torch
    from torch import nn

    from raymia.attacks import merlin_scores

    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[25.0, 0.0], [-25.0, 0.0]]))
    x = torch.tensor([[1.0, 0.0]])  # margin 50 for class 0
    y = torch.tensor([0])
    score = merlin_scores(model, x, y, neighbours=200, sigma=0.1, seed=0)
    # the margin falls for about half the copies (noise on the first input below 0)
    assert 0.35 < score[0] < 0.65
