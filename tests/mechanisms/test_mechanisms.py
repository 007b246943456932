"""Each mechanism does its job: unit checks on batches, then effects of short trainings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.contexts import cpu_context

from raymia.data.datasets import DATASETS
from raymia.mechanisms import REGISTRY, Batch, TrainContext
from raymia.trial.config import parse_trial_config
from raymia.trial.train import train_model

DIGITS = DATASETS["digits"]


def _context(digits, **mechanisms) -> TrainContext:
    return cpu_context(parse_trial_config({"mechanisms": mechanisms}), digits)


def _batch(digits, n=64) -> Batch:
    x, y = digits.members.x[:n], digits.members.y[:n]
    return Batch(x, y, 10)


def _make(name, strength, digits):
    return REGISTRY[name](strength, _context(digits, **{name: strength}))


def test_every_mechanism_declares_known_hooks():
    from raymia.mechanisms.base import HOOKS

    for cls in REGISTRY.values():
        assert cls.hooks and cls.hooks <= set(HOOKS), cls


def test_augment_shifts_images_within_the_padding(digits):
    batch = _batch(digits)
    out = _make("augment", 2, digits).transform(batch)
    assert out.x.shape == batch.x.shape
    assert not torch.equal(out.x, batch.x)
    # every output image is the input shifted by at most 2 pixels (background-filled borders)
    padded = F.pad(batch.x, (2, 2, 2, 2), value=float(digits.members.x.min()))
    for i in range(8):
        matches = [
            torch.equal(out.x[i], padded[i, :, dy : dy + 8, dx : dx + 8])
            for dy in range(5)
            for dx in range(5)
        ]
        assert any(matches)


def test_input_noise_has_the_asked_sigma(digits):
    batch = _batch(digits)
    out = _make("input_noise", 0.5, digits).transform(batch)
    assert float((out.x - batch.x).std()) == pytest.approx(0.5, rel=0.05)
    assert torch.equal(out.targets, batch.targets)


def test_cutout_blanks_a_square(digits):
    batch = _batch(digits).with_(x=torch.ones(64, 1, 8, 8))
    out = _make("cutout", 3, digits).transform(batch)
    blanked = (out.x == 0).sum(dim=(1, 2, 3))
    assert blanked.max() == 9 and blanked.min() >= 1  # a 3x3 square, clipped at borders


def test_mixup_blends_inputs_and_targets_convexly(digits):
    batch = _batch(digits)
    out = _make("mixup", 1.0, digits).transform(batch)
    assert not torch.equal(out.x, batch.x)
    assert torch.allclose(out.targets.sum(dim=1), torch.ones(64))
    assert (out.targets.max(dim=1).values < 1).any()  # some targets are now soft


def test_label_smoothing_targets(digits):
    out = _make("label_smoothing", 0.2, digits).transform(_batch(digits))
    assert torch.allclose(out.targets.max(dim=1).values, torch.full((64,), 0.82))
    assert torch.allclose(out.targets.min(dim=1).values, torch.full((64,), 0.02))


def test_disturb_label_replaces_about_alpha_of_the_labels(digits):
    batch = _batch(digits, n=500)
    out = _make("disturb_label", 0.5, digits).transform(batch)
    changed = float((out.targets.argmax(dim=1) != batch.y).float().mean())
    assert changed == pytest.approx(0.5 * 9 / 10, abs=0.07)


def test_confidence_penalty_rewards_entropy(digits):
    mech = _make("confidence_penalty", 2.0, digits)
    batch = _batch(digits, n=4)
    flat = torch.zeros(4, 10)
    peaked = torch.zeros(4, 10)
    peaked[:, 0] = 20.0
    assert float(mech.loss_term(flat, batch)) == pytest.approx(-2.0 * np.log(10), rel=1e-5)
    assert float(mech.loss_term(peaked, batch)) > float(mech.loss_term(flat, batch))


def test_weight_decay_and_dropout_feed_the_optimizer_and_model(digits):
    assert _make("weight_decay", 0.3, digits).optimizer_options() == {"weight_decay": 0.3}
    assert _make("dropout", 0.4, digits).model_options() == {"dropout": 0.4}
    assert _make("dp_noise", 1.0, digits).model_options() == {}  # the trial's `norm` decides


def test_distillation_trains_on_the_teachers_soft_targets(digits):
    config = parse_trial_config({"epochs": 3, "mechanisms": {"distillation": 4.0}})
    context = _context(digits, distillation=4.0)
    context.config = config
    context.train_plain = lambda: (
        train_model(config, DIGITS, digits.members, use_mechanisms=False, seed_offset=1).model
    )
    mech = REGISTRY["distillation"](4.0, context)
    mech.prepare()
    batch = _batch(digits)
    out = mech.transform(batch)
    with torch.no_grad():
        expected = F.softmax(mech.teacher(batch.x) / 4.0, dim=1)
    assert torch.allclose(out.targets, expected)
    assert float(out.targets.max(dim=1).values.mean()) < 0.99  # soft, not one-hot
    assert mech.train_temperature == 4.0


# --- effects of whole (short) trainings, same seed, same split -------------------------------


def _train(splits, epochs=20, **mechanisms):
    config = parse_trial_config({"epochs": epochs, "mechanisms": mechanisms})
    return train_model(config, splits.info, splits.members, held_out=splits.held_out)


def _member_confidence(model, split) -> float:
    with torch.no_grad():
        return float(F.softmax(model(split.x), dim=1).max(dim=1).values.mean())


def _weight_norm(model) -> float:
    return float(sum(p.detach().norm() ** 2 for p in model.parameters()) ** 0.5)


@pytest.mark.slow
def test_label_smoothing_lowers_member_confidence(small_digits):
    plain = _train(small_digits)
    smoothed = _train(small_digits, label_smoothing=0.3)
    assert _member_confidence(smoothed.model, small_digits.members) < (
        _member_confidence(plain.model, small_digits.members) - 0.1
    )


@pytest.mark.slow
def test_weight_decay_lowers_the_weight_norm(small_digits):
    plain = _train(small_digits)
    decayed = _train(small_digits, weight_decay=0.5)
    assert _weight_norm(decayed.model) < 0.97 * _weight_norm(plain.model)


@pytest.mark.slow
def test_dp_sgd_epsilon_is_finite_and_shrinks_as_noise_grows(small_digits):
    low = _train(small_digits, epochs=2, dp_noise=0.8)
    high = _train(small_digits, epochs=2, dp_noise=2.0)
    assert low.dp_epsilon is not None and np.isfinite(low.dp_epsilon)
    assert 0 < high.dp_epsilon < low.dp_epsilon
    assert _train(small_digits, epochs=1).dp_epsilon is None


@pytest.mark.slow
def test_early_stopping_stops_before_the_epoch_limit(fast):
    from raymia.trial.runner import run_trial

    row = run_trial({**fast, "epochs": 200, "mechanisms": {"early_stopping": 2}})
    assert row["epochs_run"] < 200
    assert row["members_trained"] == 350  # every member: stopping is judged on held_out


@pytest.mark.slow
def test_adversarial_regularization_narrows_the_member_non_member_loss_gap(small_digits):
    """The loss-threshold attack separates members from non-members less well.

    The separation is measured as the AUC of -loss (scale-free, unlike a difference of mean
    losses, which grows whenever accuracy drops)."""
    from raymia.privacy.metrics import auc

    def loss_auc(model) -> float:
        with torch.no_grad():
            members = F.cross_entropy(
                model(small_digits.members.x), small_digits.members.y, reduction="none"
            )
            non_members = F.cross_entropy(
                model(small_digits.non_members.x), small_digits.non_members.y, reduction="none"
            )
        scores = -torch.cat([members, non_members]).numpy()
        labels = np.r_[np.ones(len(members)), np.zeros(len(non_members))].astype(bool)
        return auc(scores, labels)

    plain = _train(small_digits, epochs=30)
    regularized = _train(small_digits, epochs=30, adv_reg=3.0)
    assert loss_auc(regularized.model) < loss_auc(plain.model) - 0.03
