"""The membership protocol: which model trains, stops, regularizes and calibrates on what."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.contexts import cpu_context

import raymia.trial.measure
import raymia.trial.reference_models
import raymia.trial.runner
import raymia.trial.train
from raymia.data.datasets import MIN_CALIBRATION, Split, load_splits
from raymia.mechanisms import REGISTRY, Batch
from raymia.mechanisms.training import InferenceModel
from raymia.trial.config import parse_trial_config
from raymia.trial.train import train_model

SIZES = {"members": 60, "non_members": 60, "held_out": 20, "reference": 130}


def _side_data(kwargs: dict) -> list[set[int]]:
    """Return the pool indices of every Split a train_model call got beside its members."""
    return [set(v.indices.tolist()) for v in kwargs.values() if isinstance(v, Split)]


def test_every_model_sees_only_its_own_data_through_run_trial(monkeypatch):
    splits = load_splits("digits", 0, **SIZES)
    config = {
        **SIZES,
        "epochs": 2,
        "device": "cpu",
        "mechanisms": {"early_stopping": 1, "adv_reg": 0.5},
        "attacks": {
            "shadow_calibration": True,
            "lira_reference_models": 2,
            "n_bootstrap": 0,
            "n_permutations": 0,
            "merlin_neighbours": 5,
        },
        "dtc": {"enabled": False},
    }
    calls: list[tuple[set[int], list[set[int]], int]] = []
    evaluations: list[tuple[set[int], set[int]]] = []

    def recording_train(config, info, members, **kwargs):
        side = _side_data(kwargs)
        calls.append((set(members.indices.tolist()), side, kwargs.get("seed_offset", 0)))
        return raymia.trial.train.train_model(config, info, members, **kwargs)

    real_evaluation = raymia.trial.measure.balanced_evaluation

    def recording_evaluation(members, non_members, seed):
        evaluations.append((set(members.indices.tolist()), set(non_members.indices.tolist())))
        return real_evaluation(members, non_members, seed)

    monkeypatch.setattr(raymia.trial.runner, "train_model", recording_train)
    monkeypatch.setattr(raymia.trial.reference_models, "train_model", recording_train)
    monkeypatch.setattr(raymia.trial.measure, "balanced_evaluation", recording_evaluation)
    row = raymia.trial.runner.run_trial(config, splits)

    members, non_members, held_out, reference = (
        set(getattr(splits, name).indices.tolist())
        for name in ("members", "non_members", "held_out", "reference")
    )
    # the target: every member, and the owner's held-out data beside them
    targets = [call for call in calls if call[2] == 0]
    assert len(targets) == 1
    target_members, target_side, _ = targets[0]
    assert target_members == members and row["members_trained"] == len(members)
    assert target_side and all(side == held_out for side in target_side)
    assert not held_out & (members | non_members | reference)

    # the shadow and the LiRA reference models: trained like the target, on reference data
    references = sorted((call for call in calls if call[2] != 0), key=lambda call: call[2])
    assert len(references) == 2 and len(calls) == 3
    for trained, side, _ in references:
        assert len(trained) == len(members) and trained <= reference
        assert side and all(len(s) == len(held_out) and s <= reference for s in side)
        assert all(not s & trained for s in side)
    assert references[0][0] != references[1][0]

    # the shadow is calibrated on reference samples it never trained, stopped or regularized on
    shadow_trained, shadow_side, _ = references[0]
    shadow_members, calibration = evaluations[1]
    assert shadow_members <= shadow_trained
    assert calibration <= reference and len(calibration) >= MIN_CALIBRATION
    assert not calibration & shadow_trained
    assert all(not calibration & side for side in shadow_side)
    assert not calibration & (target_members | set().union(*target_side))

    # nothing trains, stops or regularizes on the target's non-members
    for trained, side, _ in calls:
        assert not non_members & trained
        assert all(not non_members & s for s in side)


def _clean_rows(x: torch.Tensor, source: Split) -> np.ndarray:
    """Return, per row of x, the row of `source` it equals exactly (raise if one has none)."""
    equal = (x.flatten(1)[:, None, :] == source.x.flatten(1)[None, :, :]).all(dim=2)
    assert bool(equal.any(dim=1).all()), "input rows that are not clean source rows"
    return equal.int().argmax(dim=1).numpy()


def test_inference_model_sees_clean_members_and_held_out_rows(monkeypatch):
    splits = load_splits("digits", 0, **SIZES)
    members = splits.members.take(slice(0, 64))
    forwards: list[tuple[torch.Tensor, torch.Tensor]] = []
    judged: list[tuple[torch.Tensor, torch.Tensor]] = []
    real_build = raymia.trial.train.build_network

    def build_recorded(*args, **kwargs):
        model = real_build(*args, **kwargs)
        model.register_forward_hook(
            lambda _m, inputs, out: forwards.append((inputs[0].detach(), out.detach()))
        )
        return model

    real_judge = InferenceModel.forward

    def judge_recorded(self, logits, labels_one_hot):
        judged.append((logits.detach(), labels_one_hot.detach()))
        return real_judge(self, logits, labels_one_hot)

    monkeypatch.setattr(raymia.trial.train, "build_network", build_recorded)
    monkeypatch.setattr(InferenceModel, "forward", judge_recorded)
    config = parse_trial_config(
        {
            "epochs": 1,
            "batch_size": 32,
            "device": "cpu",
            "mechanisms": {"augment": 1, "input_noise": 0.3, "mixup": 1.0, "adv_reg": 1.0},
        }
    )
    train_model(config, splits.info, members, held_out=splits.held_out)

    assert len(judged) == 6  # two steps: member, held-out, member (privacy term)
    for i, (logits, one_hot) in enumerate(judged):
        source = splits.held_out if i % 3 == 1 else members
        matching = [
            x for x, out in forwards if out.shape == logits.shape and torch.equal(out, logits)
        ]
        assert matching, f"inference call {i}: logits from no recorded classifier pass"
        rows = _clean_rows(matching[0], source)
        assert torch.equal(source.y[rows], one_hot.argmax(dim=1))  # with their true labels
    assert not set(splits.held_out.indices) & set(splits.reference.indices)


def _bn_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: buf.clone() for name, buf in model.named_buffers()}


def test_adversarial_regularization_leaves_batchnorm_statistics_to_the_training_pass():
    splits = load_splits("digits", 0, **SIZES)
    members = splits.members.take(slice(0, 64))
    runs = {}
    for adv_reg in (0.0, 1.0):
        config = parse_trial_config(
            {
                "epochs": 1,
                "device": "cpu",
                "norm": "batch",
                "mechanisms": {"augment": 1, "input_noise": 0.3, "adv_reg": adv_reg},
            }
        )
        model = train_model(config, splits.info, members, held_out=splits.held_out).model
        runs[adv_reg] = _bn_buffers(model)
    plain, regularized = runs[0.0], runs[1.0]
    assert any("running_mean" in name for name in plain)
    for name, value in plain.items():
        assert torch.equal(value, regularized[name]), name


def test_privacy_term_trains_the_classifier_through_the_clean_member_pass():
    splits = load_splits("digits", 0, **SIZES)
    config = parse_trial_config(
        {"norm": "batch", "mechanisms": {"adv_reg": 1.0, "input_noise": 0.5}}
    )
    context = cpu_context(config, splits)
    model = raymia.trial.train.build_network(splits.info, norm="batch").train()
    context.model = model
    mech = REGISTRY["adv_reg"](1.0, context)
    mech.prepare()
    # the defender's reference data is its own held-out set, not the attacker's reference split
    assert torch.equal(mech.reference_x, splits.held_out.x)
    batch = mech.transform(Batch(splits.members.x[:32], splits.members.y[:32], 10))
    noisy = REGISTRY["input_noise"](0.5, context).transform(batch)
    logits = model(noisy.x)
    stats = _bn_buffers(model)
    term = mech.loss_term(logits, noisy)
    assert all(torch.equal(stats[n], b) for n, b in model.named_buffers())
    # the privacy term does not depend on the transformed pass, yet reaches every weight
    assert torch.autograd.grad(term, logits, retain_graph=True, allow_unused=True)[0] is None
    term.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)


def test_adversarial_regularization_refuses_to_run_without_held_out_data():
    splits = load_splits("digits", 0, **SIZES)
    config = parse_trial_config({"epochs": 1, "mechanisms": {"adv_reg": 1.0}})
    with pytest.raises(ValueError, match="held-out"):
        train_model(config, splits.info, splits.members)
