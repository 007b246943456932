from __future__ import annotations

import pytest

from raymia.trial.config import (
    ConfigError,
    Mechanisms,
    apply_overrides,
    load_yaml,
    parse_trial_config,
)


def test_defaults_are_the_unregularized_digits_trial():
    config = parse_trial_config({})
    assert config.dataset == "digits"
    assert config.mechanisms.active() == {}


def test_out_of_range_strength_names_key_value_and_bound():
    with pytest.raises(ConfigError) as err:
        parse_trial_config({"mechanisms": {"label_smoothing": 1.5}}, "space.yaml")
    message = str(err.value)
    assert message.startswith("space.yaml: mechanisms.label_smoothing = 1.5")
    assert "less than 1" in message
    assert "\n" not in message


def test_unknown_mechanism_lists_the_known_ones():
    with pytest.raises(ConfigError) as err:
        parse_trial_config({"mechanisms": {"label_smothing": 0.1}}, "space.yaml")
    message = str(err.value)
    assert "unknown key 'mechanisms.label_smothing'" in message
    assert "label_smoothing" in message and "dp_noise" in message


def test_unknown_data_set_is_rejected():
    with pytest.raises(ConfigError, match="dataset = 'mnist'"):
        parse_trial_config({"dataset": "mnist"})


@pytest.mark.parametrize("other", ["mixup", "distillation", "adv_reg"])
def test_dp_sgd_rejects_mechanisms_that_break_its_bound(other):
    value = 2.0 if other == "distillation" else 0.5
    with pytest.raises(ConfigError) as err:
        parse_trial_config({"mechanisms": {"dp_noise": 1.0, other: value}})
    assert f"mechanisms.{other}" in str(err.value) and "dp_noise" in str(err.value)


def test_distillation_temperature_below_one_is_rejected():
    with pytest.raises(ConfigError, match="temperature >= 1"):
        parse_trial_config({"mechanisms": {"distillation": 0.5}})


def test_active_lists_only_mechanisms_that_are_on():
    mech = Mechanisms(label_smoothing=0.1, dropout=0.2, dp_clip=2.0)
    assert mech.active() == {"label_smoothing": 0.1, "dropout": 0.2}


def test_overrides_resolve_unqualified_mechanism_names():
    data = apply_overrides({}, ["label_smoothing=0.1", "epochs=3", "dtc.norm=linf"])
    assert data == {"mechanisms": {"label_smoothing": 0.1}, "epochs": 3, "dtc": {"norm": "linf"}}
    config = parse_trial_config(data)
    assert config.mechanisms.label_smoothing == 0.1 and config.dtc.norm == "linf"


def test_override_with_unknown_key_fails_naming_it():
    with pytest.raises(ConfigError, match="unknown key 'bogus'"):
        apply_overrides({}, ["bogus=1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["epochs"])


def test_bad_tau_spec():
    with pytest.raises(ConfigError, match="expected 'quantile:q' or 'absolute:p'"):
        parse_trial_config({"dtc": {"tau": "quantile:1.5"}})


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("epochs: 3\nmechanisms: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_yaml(path)
    assert str(path) in str(err.value) and "line" in str(err.value)


def test_flat_holds_every_mechanism_strength():
    flat = parse_trial_config({"mechanisms": {"dropout": 0.3}}).flat()
    assert flat["dropout"] == 0.3 and flat["label_smoothing"] == 0.0 and flat["seed"] == 0
