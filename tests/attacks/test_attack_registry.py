"""The attack registry is the one list of attacks: the options model, the scoring, the
objective columns and the reference-model count follow it, also for an attack registered at
runtime."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from raymia.attacks import REGISTRY, Attack, Target, register, score_all, unregister
from raymia.registry import Setting
from raymia.trial.config import ConfigError, attack_options_model, parse_trial_config
from raymia.trial.reference_models import reference_model_count
from raymia.trial.runner import objective_columns

BUILT_IN = (
    "loss",
    "merlin",
    "confidence",
    "entropy",
    "modified_entropy",
    "lira",
    "lira_online",
    "rmia",
    "rmia_online",
)


def test_the_registry_lists_the_built_in_attacks_in_column_order():
    assert tuple(REGISTRY) == BUILT_IN
    assert [a.name for a in REGISTRY.values() if a.needs_reference_models] == [
        "lira",
        "lira_online",
        "rmia",
        "rmia_online",
    ]
    assert all((a.from_logits is None) != (a.score is None) for a in REGISTRY.values())


def test_the_options_model_is_the_registry():
    """AttackOptions holds each attack's declared options, in registry order, then the
    general ones; with the declared defaults and bounds."""
    fields = attack_options_model().model_fields
    declared = {n: s for a in REGISTRY.values() for n, s in a.options.items()}
    general = ["shadow_calibration", "n_bootstrap", "n_permutations", "canaries"]
    assert list(fields) == [*declared, *general]
    for name, setting in declared.items():
        assert fields[name].default == setting.default and fields[name].annotation is setting.type
    with pytest.raises(ConfigError, match="attacks.merlin_neighbours = 0"):
        parse_trial_config({"attacks": {"merlin_neighbours": 0}})


def test_the_reference_models_follow_the_attacks_that_need_them():
    options = attack_options_model()
    assert reference_model_count(options(shadow_calibration=False)) == 0
    assert reference_model_count(options()) == 1  # the shadow
    assert reference_model_count(options(lira_reference_models=4)) == 4


def test_the_objectives_are_each_attacks_columns_and_the_rows_own():
    columns = objective_columns()
    for name in BUILT_IN:
        assert {f"{name}_adv", f"{name}_auc"} <= columns
    assert {"loss_yeom_adv", "adv", "adv_excess", "dtc_adv", "dtc_adv_excess"} <= columns
    assert "test_acc" in columns and "loss_adv_lo" not in columns


def test_an_attack_declares_one_way_to_score_and_its_own_options():
    with pytest.raises(ValueError, match="exactly one of"):
        Attack(name="both", summary="", citation="", rank=1)
    with pytest.raises(ValueError, match="not one of its options"):
        Attack(name="ref", summary="", citation="", rank=1, score=len, reference_models="toy_k")
    with pytest.raises(ValueError, match="'merlin_sigma'"):
        register(
            Attack(
                name="copycat",
                summary="",
                citation="",
                rank=70,
                score=len,
                options={"merlin_sigma": Setting(float, "taken", default=0.1, le=1.0)},
            )
        )
    assert "copycat" not in REGISTRY


def _top_logit(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return logits.max(dim=1).values


def _noisy_loss(target: Target) -> np.ndarray:
    gen = np.random.default_rng([target.seed, target.options.toy_copies])
    losses = nn.functional.cross_entropy(target.model(target.x), target.y, reduction="none")
    return -losses.detach().numpy() + gen.normal(0.0, 1e-3, len(target.y))


@pytest.fixture
def toy_attacks():
    """Two toy attacks: one from the shared logits, one with an option of its own."""
    added = [
        Attack(name="toy_top", summary="top logit", citation="-", rank=65, from_logits=_top_logit),
        Attack(
            name="toy_noisy",
            summary="noisy loss",
            citation="-",
            rank=5,
            score=_noisy_loss,
            options={"toy_copies": Setting(int, "toy copies", default=3, ge=1, le=10)},
        ),
    ]
    for attack in added:
        register(attack)
    try:
        yield added
    finally:
        for attack in added:
            unregister(attack.name)


def test_an_attack_registered_at_runtime_is_scored_configured_and_optimizable(toy_attacks):
    assert list(REGISTRY)[0] == "toy_noisy" and list(REGISTRY)[-1] == "toy_top"  # by rank
    options = parse_trial_config({"attacks": {"toy_copies": 5}}).attacks
    assert options.toy_copies == 5
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.randn(6, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    scores = score_all(model, x, y, options, seed=0)
    assert list(scores) == ["toy_noisy", *BUILT_IN[:5], "toy_top"]  # no reference models
    np.testing.assert_allclose(scores["toy_top"], model(x).max(dim=1).values.detach())
    assert {"toy_top_adv", "toy_noisy_auc"} <= objective_columns()
    unregister("toy_top")
    try:
        assert "toy_top" not in score_all(model, x, y, options, seed=0)
        assert "toy_top_adv" not in objective_columns()
    finally:
        register(toy_attacks[0])
