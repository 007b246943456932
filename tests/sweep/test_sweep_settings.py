"""A sweep's settings: defaults in one place (SweepSettings), overridden by the space file's
`sweep:` block, overridden in turn by the flags; checked before anything runs."""

from __future__ import annotations

import dataclasses

import pytest

from raymia.cli import build_parser
from raymia.errors import ConfigError
from raymia.sweep.command import settings_from_args
from raymia.sweep.settings import SweepSettings, check_settings, default_out
from raymia.sweep.space import load_space, shipped_space

DEFAULTS = {
    f.name: f.default
    for f in dataclasses.fields(SweepSettings)
    if f.default is not dataclasses.MISSING
}


def _settings(*flags: str) -> SweepSettings:
    args = build_parser().parse_args(["sweep", *flags])
    settings, resume = settings_from_args(args)
    assert not resume
    return settings


def test_the_default_sweep_takes_every_default_from_sweep_settings():
    settings = _settings()
    assert settings.space == str(shipped_space("frontier"))
    assert settings.out.startswith("runs/sweep-") and len(settings.out) == len(default_out())
    for name, default in DEFAULTS.items():
        assert getattr(settings, name) == default, name


def test_a_space_block_overrides_a_default_and_a_flag_overrides_both(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(
        "sweep: {samples: 5, sampler: tpe}\nmechanisms: {dropout: {uniform: [0.0, 0.5]}}\n"
    )
    settings = _settings("--space", str(space), "--samples", "7", "--sampler-seed", "3")
    assert settings.samples == 7 and settings.sampler == "tpe" and settings.sampler_seed == 3
    assert settings.search == DEFAULTS["search"] and settings.objectives == DEFAULTS["objectives"]


def test_the_shipped_spaces_repeat_no_default():
    for name in ("frontier", "paper", "combinations"):
        block = load_space(shipped_space(name)).sweep
        for field, value in block.model_dump(exclude_none=True).items():
            assert value != DEFAULTS[field], f"{name}.yaml repeats the default {field}"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"search": "bayes"}, "--search bayes: expected one of optuna, grid, random"),
        ({"sampler": "cmaes"}, "--sampler cmaes: expected one of nsga2, tpe"),
        ({"objectives": "acc:max,bogus:min"}, "unknown objective 'bogus'"),
    ],
)
def test_settings_read_back_from_a_file_are_checked_too(tmp_path, change, message):
    space = tmp_path / "space.yaml"
    space.write_text("mechanisms: {dropout: {uniform: [0.0, 0.5]}}\n")
    settings = SweepSettings(space=str(space), out=str(tmp_path / "out"), **change)
    with pytest.raises(ConfigError, match=message):
        check_settings(settings, load_space(space))
