"""Every mechanism does what its name says, alone and in combination.

Each test here failed before its fix: DisturbLabel silently off under distillation, weight decay
too weak to move the weights, DP-SGD's accountant sized after training (and at tiny noise past
any machine's memory) with a hard-coded delta and its own architecture, crop padding grey
instead of background, image-size strengths unbounded by the image, and a missing CUDA device
found only after the data was loaded.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
import torch
from helpers.contexts import cpu_context
from torch import nn

from raymia.data.datasets import DATASETS, Split
from raymia.mechanisms import REGISTRY, Batch
from raymia.mechanisms.training import DPSGD
from raymia.sweep.space import load_space, shipped_space
from raymia.trial.config import ConfigError, Mechanisms, parse_trial_config
from raymia.trial.train import _optimizer, train_model, weighted_parameters

DIGITS = DATASETS["digits"]

# A middling strength per mechanism, for the short combination trainings.
STRENGTHS: dict[str, float] = {
    "augment": 1,
    "input_noise": 0.1,
    "cutout": 2,
    "mixup": 0.5,
    "label_smoothing": 0.1,
    "confidence_penalty": 0.5,
    "disturb_label": 0.2,
    "distillation": 4.0,
    "dropout": 0.3,
    "weight_decay": 0.1,
    "early_stopping": 1,
    "adv_reg": 1.0,
    "dp_noise": 1.0,
}
TINY = 40  # members in the combination trainings
CPU = {"device": "cpu"}  # the trainings compare weights and evaluate on CPU tensors


@pytest.fixture(scope="module")
def tiny(digits) -> tuple[Split, Split]:
    """(members, held_out): 40 members, and as the held-out set the same 40 images with every
    label wrong.

    Wrong held-out labels make early stopping bite within two epochs: as the model learns the
    true labels its loss on the wrong ones rises (measured +0.006 under DP-SGD, +0.05 to +0.15
    otherwise), so patience 1 stops after epoch 2 and restores epoch 1's weights. With right
    labels it would keep the last weights: a legitimate no-op the combination test could not
    tell from a broken one.
    """
    members = digits.members.take(slice(0, TINY))
    wrong = Split(members.x, (members.y + 1) % DIGITS.num_classes, members.indices)
    return members, wrong


def _train_tiny(tiny, mechanisms: dict[str, float], epochs: int = 2) -> nn.Module:
    members, held_out = tiny
    config = parse_trial_config(
        {"epochs": epochs, "batch_size": 20, "members": TINY, "mechanisms": mechanisms, **CPU}
    )
    return train_model(config, DIGITS, members, held_out=held_out).model


def _max_weight_change(a: nn.Module, b: nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


def _accepted(names: dict[str, float]) -> bool:
    try:
        parse_trial_config({"members": TINY, "mechanisms": names})
    except ConfigError:
        return False
    return True


# --- 1. target transforms under distillation -------------------------------------------------


@pytest.mark.parametrize("other", ["disturb_label", "label_smoothing", "mixup"])
def test_target_transforms_still_act_under_distillation(tiny, other):
    """The student's targets are the teacher's; a target transform must change them, not be
    overwritten by them (DisturbLabel was: disturb_label=0.9 trained exactly as without)."""
    strength = 0.9 if other == "disturb_label" else STRENGTHS[other]
    alone = _train_tiny(tiny, {"distillation": 4.0}, epochs=1)
    both = _train_tiny(tiny, {"distillation": 4.0, other: strength}, epochs=1)
    assert _max_weight_change(alone, both) > 1e-4


def test_disturb_label_disturbs_the_teachers_targets(digits):
    """Under distillation, a disturbed sample's target is a random one-hot, the others keep
    the teacher's soft targets."""
    config = parse_trial_config({"mechanisms": {"distillation": 4.0, "disturb_label": 0.5}})
    context = cpu_context(config, digits)
    teacher = REGISTRY["distillation"](4.0, context)
    teacher.teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    disturb = REGISTRY["disturb_label"](0.5, context)
    batch = Batch(digits.members.x[:200], digits.members.y[:200], 10)
    out = batch
    for m in sorted([disturb, teacher], key=lambda m: m.order):
        out = m.transform(out)
    one_hot = out.targets.max(dim=1).values == 1.0
    assert 0.3 < float(one_hot.float().mean()) < 0.7  # about half disturbed
    assert float(out.targets[~one_hot].max(dim=1).values.max()) < 0.99  # the rest still soft


@pytest.mark.slow
def test_no_mechanism_is_silently_off_under_another(tiny):
    """For every pair (A, B) the config accepts together, A + B trains other weights than A
    alone (1-2 epochs, 40 members, seeded): B is never a no-op under A."""
    alone = {name: _train_tiny(tiny, {name: s}) for name, s in STRENGTHS.items()}
    silent = []
    for a, b in itertools.permutations(STRENGTHS, 2):
        pair = {a: STRENGTHS[a], b: STRENGTHS[b]}
        if not _accepted(pair):
            continue
        if _max_weight_change(alone[a], _train_tiny(tiny, pair)) <= 1e-4:
            silent.append(f"{b} under {a}")
    assert not silent, silent


# --- 2. weight decay is an L2 penalty that bites ---------------------------------------------


def _paper_grid_top(name: str) -> float:
    space = load_space(shipped_space("paper"))
    return max(point[name] for point in space.grid or [] if name in point)


def test_weight_decay_at_the_grids_top_strength_shrinks_the_weights(digits):
    """At the paper grid's top strength the weights' norm drops by half or more (measured:
    -57% on 100 members, -72% on the default trial) and the members' loss rises (the model is
    less sure of its members). AdamW's decoupled decay at lr 1e-3 moved it by 2%."""
    top = _paper_grid_top("weight_decay")
    members = digits.members.take(slice(0, 100))

    def trained(decay: float) -> nn.Module:
        config = parse_trial_config({"members": 100, "mechanisms": {"weight_decay": decay}, **CPU})
        return train_model(config, DIGITS, members).model

    def weight_norm(model: nn.Module) -> float:
        return float(sum(p.detach().norm() ** 2 for p in model.parameters() if p.ndim > 1) ** 0.5)

    def member_loss(model: nn.Module) -> float:
        with torch.no_grad():
            return float(nn.functional.cross_entropy(model(members.x), members.y))

    def loss_gap(model: nn.Module) -> float:
        with torch.no_grad():
            test_loss = float(nn.functional.cross_entropy(model(digits.test.x), digits.test.y))
        return test_loss - member_loss(model)

    plain, decayed = trained(0.0), trained(top)
    assert weight_norm(decayed) < 0.5 * weight_norm(plain)
    assert member_loss(decayed) > 5 * member_loss(plain)
    # The train-test loss gap moves measurably (measured 0.14 -> 0.23: the penalty raises the
    # test loss more than the members' loss on this small model; AdamW's decay moved neither).
    assert abs(loss_gap(decayed) - loss_gap(plain)) > 0.05


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_weight_decay_is_coupled_l2_on_weights_only(optimizer):
    """Both optimizers add lambda * w to the weights' gradients (the L2 penalty's gradient),
    and nothing to biases or normalization parameters."""
    config = parse_trial_config({"optimizer": optimizer})
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4), nn.Flatten(), nn.Linear(144, 3))
    opt = _optimizer(config, weighted_parameters(model), {"weight_decay": 0.1})
    assert not isinstance(opt, torch.optim.AdamW)
    decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        assert decay[id(p)] == (0.1 if name.endswith("weight") and p.ndim > 1 else 0.0), name


def test_weight_decay_matches_a_penalty_on_the_loss():
    """One SGD step with weight_decay equals one step on loss + lambda / 2 * ||w||^2."""
    torch.manual_seed(0)
    config = parse_trial_config({"optimizer": "sgd", "lr": 0.1})
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    a = nn.Linear(5, 3)
    b = nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    opt_a = _optimizer(config, weighted_parameters(a), {"weight_decay": 0.3})
    nn.functional.cross_entropy(a(x), y).backward()
    opt_a.step()
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    loss = nn.functional.cross_entropy(b(x), y) + 0.3 / 2 * b.weight.pow(2).sum()
    loss.backward()
    opt_b.step()
    assert torch.allclose(a.weight, b.weight, atol=1e-6) and torch.allclose(a.bias, b.bias)


# --- 3. DP-SGD: the accountant, delta, one architecture --------------------------------------


def test_the_accountant_is_decided_before_training_and_cheaply():
    """At noise 0.01 PRV's grid would need tens of GiB: RDP is picked, in well under a
    second; at the default noise PRV fits."""
    started = time.perf_counter()
    tiny_noise = DPSGD.choose_accountant(0.01, 1 / 6, 60, 1e-5)
    assert time.perf_counter() - started < 2.0
    assert tiny_noise == "rdp"
    assert DPSGD.prv_grid_points(0.01, 1 / 6, 60, 1e-5) * DPSGD.PRV_BYTES_PER_POINT > 2**34
    assert DPSGD.choose_accountant(1.0, 1 / 6, 180, 1e-5) == "prv"


def test_the_row_records_the_accountant_and_delta():
    row = parse_trial_config({"mechanisms": {"dp_noise": 1.0}}).flat()
    assert row["dp_accountant"] == "prv" and row["dp_delta"] == 1e-5
    assert parse_trial_config({"mechanisms": {"dp_noise": 0.01}}).flat()["dp_accountant"] == "rdp"
    assert parse_trial_config({}).flat()["dp_accountant"] is None


def test_dp_delta_rides_with_dp_noise():
    assert Mechanisms(dp_noise=1.0, dp_delta=1e-6).active() == {"dp_noise": 1.0}
    with pytest.raises(ConfigError) as err:
        parse_trial_config({"members": 100, "mechanisms": {"dp_noise": 1.0, "dp_delta": 0.01}})
    message = str(err.value)
    assert "\n" not in message and "dp_delta = 0.01" in message and "1/100" in message


def test_tiny_noise_trains_and_reports_a_finite_epsilon_at_the_default_noise(tiny):
    """Noise 0.01 trains through the RDP path; at the default noise (1.0) PRV gives a finite
    epsilon, and a smaller delta a larger one."""
    members, held_out = tiny
    results = {}
    for noise, delta in [(0.01, 1e-5), (1.0, 1e-5), (1.0, 1e-7)]:
        config = parse_trial_config(
            {
                "epochs": 1,
                "batch_size": 20,
                "members": TINY,
                "mechanisms": {"dp_noise": noise, "dp_delta": delta},
                **CPU,
            }
        )
        results[noise, delta] = train_model(config, DIGITS, members).dp_epsilon
    assert np.isfinite(results[1.0, 1e-5]) and results[1.0, 1e-5] > 0
    assert results[1.0, 1e-7] > results[1.0, 1e-5]
    assert results[0.01, 1e-5] > results[1.0, 1e-5]


def test_one_normalization_for_every_trial(tiny):
    """Every trial builds GroupNorm by default, DP-SGD or not; norm=batch on request only,
    and refused (one line) under DP-SGD."""

    def norms(settings: dict) -> set[type]:
        cfg = parse_trial_config(
            {"epochs": 1, "batch_size": 20, "members": TINY, **settings, **CPU}
        )
        model = train_model(cfg, DIGITS, tiny[0]).model
        return {type(m) for m in model.modules() if isinstance(m, nn.GroupNorm | nn.BatchNorm2d)}

    assert parse_trial_config({}).norm == "group" and parse_trial_config({}).flat()["norm"]
    assert norms({}) == {nn.GroupNorm}
    assert norms({"mechanisms": {"dp_noise": 1.0}}) == {nn.GroupNorm}
    assert norms({"norm": "batch"}) == {nn.BatchNorm2d}
    assert norms({"norm": "none"}) == set()
    with pytest.raises(ConfigError) as err:
        parse_trial_config({"norm": "batch", "mechanisms": {"dp_noise": 1.0}})
    assert "\n" not in str(err.value) and "norm = 'batch'" in str(err.value)
    assert "dp_noise = 1.0" in str(err.value)


# --- 4. crop padding is background ------------------------------------------------------------


def test_crop_padding_is_the_background_value(digits):
    """Padded borders hold the standardized value of a raw 0 pixel per channel (black on
    digits), not 0 (the data mean, mid-grey)."""
    config = parse_trial_config({"mechanisms": {"augment": 2}})
    context = cpu_context(config, digits)
    background = float(digits.members.x.min())  # raw 0, standardized: about -0.8 on digits
    assert background < -0.5
    x = digits.members.x[:64]
    out = REGISTRY["augment"](2, context).transform(Batch(x, digits.members.y[:64], 10)).x
    padded = torch.full((64, 1, 12, 12), background)
    padded[:, :, 2:10, 2:10] = x
    for i in range(64):
        crops = [padded[i, :, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], crop) for crop in crops), i
    # the images shifted right by 2 have a whole padded column at the left border
    left = out[:, 0, :, 0]
    shifted = (left == background).all(dim=1)
    assert shifted.any() and not (left[shifted] == 0).any()


# --- 5. strengths fit the data set ----------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "limit"), [("cutout", 32, 4), ("cutout", 5, 4), ("augment", 3, 2)]
)
def test_image_size_strengths_are_bounded_by_the_image(key, value, limit):
    with pytest.raises(ConfigError) as err:
        parse_trial_config({"mechanisms": {key: value}}, "--set")
    message = str(err.value)
    assert "\n" not in message
    assert f"mechanisms.{key} = {value}" in message and "digits" in message
    assert f"at most {limit}" in message


def test_image_size_bounds_follow_the_data_set():
    ok = parse_trial_config({"dataset": "cifar10", "mechanisms": {"cutout": 16, "augment": 8}})
    assert ok.mechanisms.cutout == 16
    parse_trial_config({"mechanisms": {"cutout": 4, "augment": 2}})


# --- 6. a device that is not there -----------------------------------------------------------


def test_missing_cuda_is_one_line_before_any_work(monkeypatch, capsys):
    import raymia.data.datasets
    import raymia.trial.runner
    from raymia.cli import main

    def no_data(*args, **kwargs):
        raise AssertionError("data loaded before the device was checked")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for module, name in [
        (raymia.data.datasets, "load_pool"),
        (raymia.data.datasets, "load_splits"),
        (raymia.trial.runner, "load_splits"),
    ]:
        monkeypatch.setattr(module, name, no_data)
    started = time.perf_counter()
    code = main(["trial", "--set", "device=cuda"])
    assert time.perf_counter() - started < 5.0
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "device" in err and "cuda" in err
