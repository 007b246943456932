"""A sweep's settings: defaults in one place (SweepSettings), overridden by the space file's
`sweep:` block, overridden in turn by the flags; checked before anything runs."""

from __future__ import annotations

import dataclasses
import re

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


# --------------------------------------------------------------------------------------------
# One table: each setting's type, bounds and default, read by the flags, a space's sweep:
# block, sweep.json and the checks alike.


def _outside(spec: dataclasses.Field) -> object:
    """Return a value just outside a setting's bounds or choices (its rule in the table)."""
    rule = spec.metadata
    if rule["choices"]:
        return "no-such-" + rule["choices"][0]
    whole = isinstance(spec.default, int) or spec.name == "max_concurrent"
    if rule["hi"] is not None:
        return int(rule["hi"]) + 1 if whole else rule["hi"] * 1.5
    if rule["lo"] is not None:
        return int(rule["lo"]) - 1 if whole else rule["lo"] - 0.5
    if rule["above"] is not None:
        return rule["above"]
    return None


BOUNDED = [spec for spec in dataclasses.fields(SweepSettings) if _outside(spec) is not None]


def test_every_bounded_setting_is_a_row_of_the_table():
    # the settings with bounds or choices, as the table declares them
    assert [spec.name for spec in BOUNDED] == [
        "samples",
        "search",
        "sampler",
        "cpus_per_trial",
        "gpus_per_trial",
        "max_concurrent",
        "sampler_seed",
        "max_failures",
        "trial_timeout",
        "reference_workers",
    ]


@pytest.mark.parametrize("spec", BOUNDED, ids=[spec.name for spec in BOUNDED])
def test_a_value_outside_a_bound_is_refused_alike_by_the_checks_sweep_json_and_a_space(
    spec, tmp_path
):
    import json

    from raymia.sweep.settings import load_settings, setting_problem

    value = _outside(spec)
    problem = setting_problem(spec.name, value)
    assert problem and problem.startswith("expected ")
    problem = re.escape(problem)
    space = tmp_path / "space.yaml"
    space.write_text("mechanisms: {dropout: {uniform: [0.0, 0.5]}}\n")
    # the checks (what a flag's value meets)
    settings = SweepSettings(space=str(space), out=str(tmp_path / "out"), **{spec.name: value})
    with pytest.raises(ConfigError, match=f"--{spec.name.replace('_', '-')} .*{problem}"):
        check_settings(settings, load_space(space))
    # sweep.json
    (tmp_path / "sweep.json").write_text(
        json.dumps({"space": "space.yaml", "out": ".", spec.name: value})
    )
    with pytest.raises(ConfigError, match=f"sweep.json: .*{spec.name} = .*{problem}"):
        load_settings(tmp_path)
    # a space's sweep: block, where the table lets a space give the setting
    block = tmp_path / "block.yaml"
    block.write_text(
        f"sweep: {{{spec.name}: {json.dumps(value)}}}\n"
        "mechanisms: {dropout: {uniform: [0.0, 0.5]}}\n"
    )
    if spec.metadata["space"]:
        with pytest.raises(ConfigError, match=f"sweep.{spec.name} = .*{problem}"):
            load_space(block)
    else:
        with pytest.raises(ConfigError, match=f"unknown key 'sweep.{spec.name}'"):
            load_space(block)


def test_every_setting_with_help_is_a_flag_and_every_space_setting_a_sweep_key():
    from raymia.sweep.space import SweepDefaults

    parser = build_parser()
    sweep = next(
        a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith("sweep")
    )
    flags = {opt for action in sweep._actions for opt in action.option_strings}
    for spec in dataclasses.fields(SweepSettings):
        assert (f"--{spec.name.replace('_', '-')}" in flags) == (spec.metadata["help"] is not None)
        assert (spec.name in SweepDefaults.model_fields) == spec.metadata["space"], spec.name


def test_a_value_inside_every_bound_passes_all_three_readers(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(
        "sweep: {samples: 100000, max_concurrent: 10000, cpus_per_trial: 0.25, "
        "gpus_per_trial: 0}\nmechanisms: {dropout: {uniform: [0.0, 0.5]}}\n"
    )
    block = load_space(space).sweep
    assert block.samples == 100_000 and block.cpus_per_trial == 0.25
    settings = SweepSettings(
        space=str(space),
        out=str(tmp_path / "out"),
        samples=100_000,
        reference_workers=0,
        trial_timeout=1.0,
        sampler_seed=0,
        max_failures=0,
    )
    check_settings(settings, load_space(space))


#: A value other than the default for each setting with a flag, as it is typed.
TYPED = {
    "space": ("frontier", None),
    "out": ("elsewhere", "elsewhere"),
    "samples": ("7", 7),
    "search": ("random", "random"),
    "sampler": ("nsga2", "nsga2"),
    "objectives": ("acc:max,adv:min", "acc:max,adv:min"),
    "cpus_per_trial": ("2", 2.0),
    "gpus_per_trial": ("0.5", 0.5),
    "max_concurrent": ("3", 3),
    "address": ("auto", "auto"),
    "sampler_seed": ("4", 4),
    "trial_timeout": ("60", 60.0),
    "reference_workers": ("2", 2),
}


def test_every_flag_typed_reaches_the_settings():
    from raymia.sweep.settings import flagged

    assert sorted(spec.name for spec in flagged()) == sorted(TYPED)
    for spec in flagged():
        text, value = TYPED[spec.name]
        if value is None:
            continue
        settings = _settings(f"--{spec.name.replace('_', '-')}", text)
        assert getattr(settings, spec.name) == value, spec.name


def test_every_flag_a_resume_keeps_is_refused_on_resume_and_the_others_are_taken(tmp_path, capsys):
    from raymia.cli import main
    from raymia.sweep.settings import flagged, save_settings

    kept = [spec.name for spec in flagged(fixed=True)]
    assert kept == [
        "space", "out", "samples", "search", "sampler", "objectives", "cpus_per_trial",
        "gpus_per_trial", "max_concurrent", "sampler_seed", "reference_workers",
    ]  # fmt: skip
    out = tmp_path / "sweep"
    out.mkdir()
    save_settings(SweepSettings(space=str(shipped_space("frontier")), out=str(out)), out)
    for name in kept:
        typed = f"--{name.replace('_', '-')}"
        assert main(["sweep", "--resume", str(out), typed, TYPED[name][0]]) == 2, name
        assert f"{typed} cannot change on resume" in capsys.readouterr().err
    free = [spec.name for spec in flagged(fixed=False)]
    assert free == ["address", "trial_timeout"]
    typed = [text for name in free for text in (f"--{name.replace('_', '-')}", TYPED[name][0])]
    settings, resume = settings_from_args(
        build_parser().parse_args(["sweep", "--resume", str(out), *typed])
    )
    assert resume and (settings.address, settings.trial_timeout) == ("auto", 60.0)
