"""The search-space parser (raymia.sweep.space): what a space file may say, and the one-line
errors for what it may not."""

from __future__ import annotations

import pytest

from raymia.errors import ConfigError
from raymia.sweep.space import load_space, shipped_space


def _load(tmp_path, body: str):
    path = tmp_path / "space.yaml"
    path.write_text(body)
    return load_space(path)


def _refused(tmp_path, body: str) -> str:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, body)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "space.yaml") in message
    return message


def test_each_entry_is_off_fixed_or_a_distribution(tmp_path):
    space = _load(
        tmp_path,
        "trial: {epochs: 2}\nseeds: [0, 3]\nmechanisms:\n"
        "  label_smoothing: {uniform: [0.0, 0.3]}\n  weight_decay: {loguniform: [1.0e-5, 0.1]}\n"
        "  augment: {int: [0, 2]}\n  dropout: {choice: [0.0, 0.5]}\n  cutout: 2\n"
        "  mixup: off\n  input_noise: 0\n  dp_noise: {choice: [0.0, 1.0]}\n  dp_clip: 2.0\n",
    )
    assert space.mechanisms == {
        "label_smoothing": ("uniform", [0.0, 0.3]),
        "weight_decay": ("loguniform", [1e-5, 0.1]),
        "augment": ("int", [0, 2]),
        "dropout": ("choice", [0.0, 0.5]),
        "cutout": ("fixed", 2),
        "mixup": ("off", None),
        "input_noise": ("off", None),
        "dp_noise": ("choice", [0.0, 1.0]),
        "dp_clip": ("fixed", 2.0),  # a rider is a setting, never "off"
    }
    assert space.varied() == ["label_smoothing", "weight_decay", "augment", "dropout", "dp_noise"]
    assert space.seeds == [0, 3] and space.trial == {"epochs": 2} and not space.is_grid()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("mechanisms:\n  labl_smoothing: 0.1\n", "unknown mechanism 'mechanisms.labl_smoothing'"),
        ("mechanisms:\n  dropout: {normal: [0, 1]}\n", "unknown distribution 'normal'"),
        ("mechanisms:\n  dropout: {uniform: [0.5, 0.1]}\n", "expected low < high"),
        ("mechanisms:\n  weight_decay: {loguniform: [0, 0.1]}\n", "expected low > 0"),
        ("mechanisms:\n  augment: {int: [0, 1.5]}\n", "expected integer bounds"),
        ("mechanisms:\n  dropout: {uniform: [0.0, 0.95]}\n", "0.95 is out of range"),
        ("mechanisms:\n  dropout: [0.1]\n", "expected off, a number, or one of"),
        ("mechanisms:\n  mixup: 0.2\n  dp_noise: 1.0\n", "cannot combine with"),
        ("mechanisms: {dropout: 0.1}\ngrid:\n  - {}\n", "not both"),
        ("trial: {mechanisms: {dropout: 0.1}}\n", "put mechanisms under the top-level key"),
        ("trial: {epochs: 0}\n", "trial.epochs = 0"),
        ("sweep: {search: bayes}\n", "sweep.search = 'bayes'"),
        ("seeds: [1, 1]\n", "expected distinct non-negative integers"),
    ],
)
def test_a_bad_space_is_one_line_naming_file_and_key(tmp_path, body, needle):
    assert needle in _refused(tmp_path, body)


def test_a_searched_dp_sgd_may_sit_beside_what_it_cannot_run_with(tmp_path):
    """Fixed together they are refused (above); with one searched, a trial never draws what
    cannot run beside what is on (tests/sweep/test_search.py)."""
    space = _load(tmp_path, "mechanisms:\n  mixup: {choice: [0.0, 0.2]}\n  dp_noise: 1.0\n")
    assert space.mechanisms["dp_noise"] == ("fixed", 1.0)


def test_a_rider_is_checked_only_where_its_mechanism_can_be_on(tmp_path):
    body = "trial: {members: 100}\nmechanisms:\n  dp_delta: 0.05\n"
    assert _load(tmp_path, body).mechanisms["dp_delta"] == ("fixed", 0.05)
    assert "dp_delta = 0.05" in _refused(tmp_path, body + "  dp_noise: {choice: [0.0, 1.0]}\n")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("mechanisms:\n  cutout: {int: [0, 8]}\n", "mechanisms.cutout.int = [0, 8]"),
        ("mechanisms:\n  augment: {choice: [0, 1, 3]}\n", "mechanisms.augment.choice"),
        ("mechanisms:\n  augment: 4\n", "mechanisms.augment = 4"),
        ("grid:\n  - {}\n  - {cutout: 6}\n", "grid[1]"),
        (
            "trial: {norm: batch}\nmechanisms:\n  dp_noise: {choice: [0.0, 1.0]}\n",
            "norm = 'batch'",
        ),
        (
            "trial: {members: 100}\nmechanisms:\n  dp_noise: {choice: [0.0, 1.0]}\n"
            "  dp_delta: 0.05\n",
            "dp_delta = 0.05",
        ),
    ],
)
def test_search_spaces_refuse_what_the_trial_rules_out(tmp_path, body, needle):
    path = tmp_path / "space.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_space(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and needle in message


@pytest.mark.parametrize("name", ["paper", "frontier", "combinations"])
def test_the_shipped_spaces_still_load(name):
    assert load_space(shipped_space(name))
