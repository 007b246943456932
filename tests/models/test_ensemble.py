"""Several models trained as one batched ensemble are the models trained one by one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raymia.data.datasets import Split
from raymia.mechanisms import REGISTRY
from raymia.trial.config import parse_trial_config
from raymia.trial.reference_models import (
    reference_training_path,
    train_online_models,
    train_reference_models,
)
from raymia.trial.runner import run_trial
from raymia.trial.train import TrainSpec, ensemble_problem, train_model, train_models


def _specs(splits, sizes: list[int]) -> list[TrainSpec]:
    """Reference models' specs: each its own rows of the reference split and its own seed."""
    n = len(splits.reference)
    return [
        TrainSpec(
            splits.reference.take(np.sort(np.random.default_rng(i).permutation(n)[:size])),
            splits.held_out,
            100 + 2 * i,
        )
        for i, size in enumerate(sizes)
    ]


def _one_by_one(config, splits, specs):
    return [
        train_model(config, splits.info, s.members, held_out=s.held_out, seed_offset=s.seed_offset)
        for s in specs
    ]


def _assert_same_models(ensemble, alone, x, tolerance: float = 1e-3) -> None:
    """Same epochs, and the same loss and logits to `tolerance` (float rounding differs
    between the batched and the single pass, and Adam carries it on from step to step)."""
    for together, single in zip(ensemble, alone, strict=True):
        assert together.epochs_run == single.epochs_run
        assert together.final_loss == pytest.approx(single.final_loss, rel=tolerance)
        with torch.no_grad():
            a, b = together.model(x), single.model(x)
        assert (a - b).abs().max().item() < tolerance * b.abs().max().item()
        assert not together.model.training


@pytest.mark.parametrize(
    "mechanisms",
    [
        {},
        {"augment": 1, "label_smoothing": 0.1, "weight_decay": 0.01},
        {"mixup": 0.4, "input_noise": 0.1, "confidence_penalty": 0.5, "cutout": 2},
        {"distillation": 2.0, "disturb_label": 0.1},
    ],
)
def test_ensemble_members_equal_the_models_trained_one_by_one(digits, mechanisms):
    config = parse_trial_config({"epochs": 3, "device": "cpu", "mechanisms": mechanisms})
    # 350 and 330 rows: six batches of 64 each, the last 30 and 10 rows (padded in the pass)
    specs = _specs(digits, [350, 330, 350])
    assert ensemble_problem(config, specs) is None
    _assert_same_models(
        train_models(config, digits.info, specs),
        _one_by_one(config, digits, specs),
        digits.test.x,
    )


def test_a_member_stopping_early_stops_alone(digits):
    # Member 0's held-out labels are all wrong, so its validation loss rises as it learns and
    # early stopping (patience 2) ends it after epoch 3; the others validate on true labels
    # and train on. Each stops where it would alone, its best weights restored.
    config = parse_trial_config({"epochs": 8, "device": "cpu", "mechanisms": {"early_stopping": 2}})
    specs = _specs(digits, [350, 350, 350])
    held_out = digits.held_out
    wrong = Split(held_out.x, (held_out.y + 1) % 10, held_out.indices)
    specs[0] = TrainSpec(specs[0].members, wrong, specs[0].seed_offset)
    alone = _one_by_one(config, digits, specs)
    assert alone[0].epochs_run == 3 and alone[1].epochs_run == alone[2].epochs_run == 8
    # eight epochs carry the rounding further than three: 1% of the logits' scale
    together = train_models(config, digits.info, specs)
    _assert_same_models(together, alone, digits.test.x, tolerance=1e-2)


def test_every_mechanism_declares_whether_it_supports_the_ensemble():
    declared = {name: cls.ensemble for name, cls in REGISTRY.items()}
    assert all(isinstance(v, bool) for v in declared.values())
    assert {name for name, ok in declared.items() if not ok} == {
        "dropout",
        "adv_reg",
        "dp_noise",
    }


@pytest.mark.parametrize(
    ("settings", "sizes", "expected"),
    [
        ({"mechanisms": {"dropout": 0.3}}, [350, 350], "mechanisms dropout do not support"),
        ({"mechanisms": {"adv_reg": 1.0}}, [350, 350], "mechanisms adv_reg do not support"),
        ({"mechanisms": {"dp_noise": 1.0}}, [350, 350], "mechanisms dp_noise do not support"),
        ({"norm": "batch"}, [350, 350], "norm = 'batch'"),
        ({}, [350, 300], "different numbers of batches per epoch ([5, 6])"),
    ],
)
def test_what_cannot_train_as_an_ensemble_says_why(digits, settings, sizes, expected):
    config = parse_trial_config({"epochs": 1, "device": "cpu", **settings})
    specs = _specs(digits, sizes)
    problem = ensemble_problem(config, specs)
    assert problem is not None and expected in problem
    with pytest.raises(ValueError, match="cannot train as an ensemble"):
        train_models(config, digits.info, specs)


def _assert_close_logits(a: torch.Tensor, b: torch.Tensor) -> None:
    """Logits within 1% of their scale and the same predictions on 99% of the images: Adam's
    first steps turn rounding-level gradient differences (batched against single kernels)
    into steps of lr on a few weights, so members drift apart by more than the last bits."""
    assert (a - b).abs().max().item() < 1e-2 * b.abs().max().item()
    assert (a.argmax(1) == b.argmax(1)).float().mean().item() >= 0.99


# ---- reference models: the path each trial takes ------------------------------------------


@pytest.mark.parametrize(
    ("settings", "device", "expected"),
    [
        ({}, "cpu", "sequential"),  # auto on a CPU: what the benchmark measured faster
        ({}, "cuda", "ensemble"),  # auto on CUDA: the ensemble
        ({"reference_training": "ensemble"}, "cpu", "ensemble"),
        ({"reference_training": "sequential"}, "cuda", "sequential"),
        # a mechanism without ensemble support falls back to one model after another
        ({"reference_training": "ensemble", "mechanisms": {"dropout": 0.3}}, "cpu", "sequential"),
        ({"reference_training": "ensemble", "norm": "batch"}, "cpu", "sequential"),
    ],
)
def test_reference_training_path(settings, device, expected):
    config = parse_trial_config({"device": "cpu", **settings})
    assert reference_training_path(config, torch.device(device)) == expected


def test_reference_models_trained_as_an_ensemble_equal_those_trained_one_by_one(digits):
    settings = {"epochs": 3, "device": "cpu", "mechanisms": {"label_smoothing": 0.1}}
    sizes = {"n_trained": len(digits.members), "n_held_out": len(digits.held_out)}
    models = {}
    for path in ("ensemble", "sequential"):
        config = parse_trial_config({**settings, "reference_training": path})
        models[path] = train_reference_models(config, digits.info, digits.reference, 3, **sizes)
    x = digits.test.x
    with torch.no_grad():
        for together, alone in zip(models["ensemble"], models["sequential"], strict=True):
            _assert_close_logits(together(x), alone(x))


def test_online_models_of_unequal_sizes_train_in_groups(digits):
    # online models train on about half the pool each: their sizes differ, so they train as
    # one ensemble per number of batches per epoch, and each equals the model trained alone
    settings = {"epochs": 2, "device": "cpu"}
    sizes = {"n_trained": len(digits.members), "n_held_out": len(digits.held_out)}
    scored = digits.members.take(slice(0, 300))
    sets = {}
    for path in ("ensemble", "sequential"):
        config = parse_trial_config({**settings, "reference_training": path})
        sets[path] = train_online_models(config, digits.info, scored, digits.reference, 6, **sizes)
    assert np.array_equal(sets["ensemble"].is_in, sets["sequential"].is_in)
    x = digits.test.x
    with torch.no_grad():
        for together, alone in zip(sets["ensemble"].models, sets["sequential"].models, strict=True):
            _assert_close_logits(together(x), alone(x))


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"reference_training": "ensemble", "attacks": {"lira_reference_models": 2}}, "ensemble"),
        ({"reference_training": "ensemble", "mechanisms": {"dropout": 0.3}}, "sequential"),
        ({"attacks": {"shadow_calibration": False}}, "none"),  # no reference model at all
    ],
)
def test_the_row_records_the_reference_training_path_taken(fast, settings, expected):
    config = {**fast, "epochs": 2, "device": "cpu"}
    config["attacks"] = {**fast["attacks"], "shadow_calibration": True}
    for key, value in settings.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    row = run_trial(config)
    assert row["status"] == "ok"
    assert row["reference_training"] == expected
