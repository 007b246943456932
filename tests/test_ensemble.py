"""Several models trained as one batched ensemble are the models trained one by one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raymia.config import parse_trial_config
from raymia.data import Split
from raymia.mechanisms import REGISTRY
from raymia.train import TrainSpec, ensemble_problem, train_model, train_models


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
