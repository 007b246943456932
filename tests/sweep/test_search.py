"""The search: a conditional space (each mechanism on or off, then its strength), DP-SGD's
clashes never drawn, seeds as replicates, and samplers fitted to the budget."""

from __future__ import annotations

import json
import sys

import numpy as np
import optuna
import pytest
from helpers.local_ray import local_ray
from helpers.sweep_journal import sweep_study

from raymia.errors import ConfigError
from raymia.sweep.run import SpaceDraw, make_sampler
from raymia.sweep.space import load_space, shipped_space
from raymia.sweep.worker import aggregate_replicates

optuna.logging.set_verbosity(optuna.logging.WARNING)

CLASHING = ("mixup", "distillation", "adv_reg")


def _space(tmp_path, body: str):
    path = tmp_path / "space.yaml"
    path.write_text(body)
    return load_space(path)


def _draws(space, n: int = 300, seed: int = 0) -> list[tuple[dict, dict]]:
    """Draw `n` configurations at random; return each (settings, Optuna params)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append((space.draw(trial), dict(trial.params)))
        study.tell(trial, 0.0)
    return out


def test_an_off_mechanism_is_0_and_has_no_strength_in_optuna(tmp_path):
    space = _space(
        tmp_path,
        "mechanisms:\n  label_smoothing: {uniform: [0.0, 0.3]}\n"
        "  early_stopping: {choice: [0, 3, 5]}\n  augment: {int: [0, 2]}\n  cutout: 2\n",
    )
    draws = _draws(space)
    for settings, params in draws:
        assert settings["cutout"] == 2  # fixed: in every trial, never asked of Optuna
        for name in ("label_smoothing", "early_stopping", "augment"):
            if params[f"on/{name}"]:
                assert settings[name] == params[f"mechanisms/{name}"] != 0
            else:
                assert settings[name] == 0 and f"mechanisms/{name}" not in params
    # the 0 of a choice and of an int range is the off state: on draws the other values
    assert {s["early_stopping"] for s, _ in draws} == {0, 3, 5}
    assert {s["augment"] for s, _ in draws} == {0, 1, 2}
    on_share = np.mean([p["on/label_smoothing"] for _, p in draws])
    assert 0.4 < on_share < 0.6
    # a typical trial runs some mechanisms, not all of them
    assert 0 < np.mean([sum(bool(s[n]) for n in ("label_smoothing", "augment")) for s, _ in draws])


def test_always_draws_the_strength_in_every_trial_with_no_switch(tmp_path):
    space = _space(tmp_path, "mechanisms:\n  early_stopping: {choice: [0, 3], always: true}\n")
    assert space.always == ["early_stopping"]
    draws = _draws(space, 60)
    assert all("on/early_stopping" not in p for _, p in draws)
    assert {s["early_stopping"] for s, _ in draws} == {0, 3}  # 0 is a strength here
    for body, needle in [
        (
            "  dp_noise: {choice: [1.0]}\n  dp_clip: {uniform: [0.5, 2], always: true}\n",
            "rides with dp_noise",
        ),
        ("  dropout: {uniform: [0.1, 0.5], always: maybe}\n", "expected true or false"),
        ("  dropout: {uniform: [0.1, 0.5], often: true}\n", "expected off, a number"),
    ]:
        with pytest.raises(ConfigError, match=needle):
            _space(tmp_path, "mechanisms:\n" + body)


def test_where_dp_sgd_is_on_the_clashing_mechanisms_are_never_drawn(tmp_path):
    space = load_space(shipped_space("frontier"))
    draws = _draws(space, 400)
    with_dp = [(s, p) for s, p in draws if s["dp_noise"]]
    without = [(s, p) for s, p in draws if not s["dp_noise"]]
    assert len(with_dp) > 100 and len(without) > 100
    for settings, params in with_dp:
        for name in CLASHING:
            assert settings[name] == 0
            assert f"on/{name}" not in params and f"mechanisms/{name}" not in params
    # without DP-SGD each of them is drawn, on in about half the trials
    for name in CLASHING:
        assert 0.3 < np.mean([bool(s[name]) for s, _ in without]) < 0.7


def test_a_fixed_setting_is_never_overridden_what_clashes_with_it_is_never_drawn(tmp_path):
    dp_fixed = _space(tmp_path, "mechanisms:\n  mixup: {choice: [0.2]}\n  dp_noise: 1.0\n")
    assert all(s == {"mixup": 0, "dp_noise": 1.0} and p == {} for s, p in _draws(dp_fixed, 20))
    mixup_fixed = _space(tmp_path, "mechanisms:\n  mixup: 0.2\n  dp_noise: {choice: [1.0]}\n")
    assert all(s == {"mixup": 0.2, "dp_noise": 0} and p == {} for s, p in _draws(mixup_fixed, 20))


def test_a_rider_is_drawn_only_where_its_mechanism_is_on(tmp_path):
    space = _space(
        tmp_path, "mechanisms:\n  dp_noise: {choice: [0.5, 1.0]}\n  dp_clip: {uniform: [0.5, 2]}\n"
    )
    for settings, params in _draws(space, 50):
        assert ("mechanisms/dp_clip" in params) == bool(settings["dp_noise"])
        assert ("dp_clip" in settings) == bool(settings["dp_noise"])


def test_the_define_by_run_space_gives_tune_every_mechanism_under_one_key(tmp_path):
    space = _space(tmp_path, "mechanisms:\n  dropout: {uniform: [0.1, 0.5]}\n  cutout: 2\n")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    config = SpaceDraw(space)(study.ask())
    assert set(config) == {"mechanisms/dropout", "mechanisms/cutout"}
    assert config["mechanisms/cutout"] == 2


def test_replicates_are_one_row_of_means_with_their_spread():
    rows = [
        {"seed": 0, "status": "ok", "members": 350, "dropout": 0.3, "test_acc": 0.90, "adv": 0.2,
         "dp_accountant": None, "epochs_run": 20, "loss_auc": float("nan")},
        {"seed": 1, "status": "ok", "members": 350, "dropout": 0.3, "test_acc": 0.94, "adv": 0.1,
         "dp_accountant": None, "epochs_run": 17, "loss_auc": 0.6},
    ]  # fmt: skip
    row = aggregate_replicates(rows, spread=["adv", "epochs_run"])
    assert row["seed"] is None and row["seeds"] == "0,1"
    assert row["members"] == 350 and isinstance(row["members"], int)  # shared: kept as is
    assert row["test_acc"] == pytest.approx(0.92) and row["adv"] == pytest.approx(0.15)
    assert row["test_acc_sd"] == pytest.approx(np.std([0.90, 0.94], ddof=1))
    assert row["epochs_run"] == 18.5 and row["epochs_run_sd"] == pytest.approx(2.1213, abs=1e-4)
    assert row["loss_auc"] == 0.6  # the seeds that measured it
    assert row["dp_accountant"] is None and row["status"] == "ok"


@pytest.mark.parametrize(
    ("samples", "population", "startup"),
    [(1, 4, 4), (16, 4, 4), (32, 8, 8), (64, 16, 10), (1000, 50, 10)],
)
def test_the_samplers_are_sized_to_the_budget(samples, population, startup):
    nsga2 = make_sampler("optuna", "nsga2", samples, 0)
    tpe = make_sampler("optuna", "tpe", samples, 0)
    assert nsga2._population_size == population
    assert tpe._n_startup_trials == startup and tpe._constant_liar
    assert isinstance(make_sampler("random", "tpe", samples, 0), optuna.samplers.RandomSampler)


def test_the_default_search_learns_from_its_first_trials_and_parallel_asks_differ(tmp_path):
    """At the default budget (16) TPE models from trial 5 on. Two trials asked at once (both
    running) are drawn apart by the constant liar: in a space of few discrete points, a TPE
    without it asks the same point twice every time."""
    from raymia.sweep.settings import SweepSettings

    defaults = SweepSettings(space="", out="")
    assert (defaults.sampler, defaults.samples) == ("tpe", 16)
    space = _space(
        tmp_path,
        "mechanisms:\n  dropout: {choice: [0.25, 0.5]}\n  label_smoothing: {choice: [0.1]}\n"
        "  early_stopping: {choice: [3]}\n",
    )

    def same_pairs(liar: bool) -> int:
        same = 0
        for seed in range(10):
            sampler = make_sampler("optuna", "tpe", 16, seed)
            sampler._constant_liar = liar
            study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
            for _ in range(6):  # past the 4 random start-up trials
                trial = study.ask()
                settings = space.draw(trial)
                study.tell(trial, [settings["dropout"], settings["label_smoothing"]])
            first, second = study.ask(), study.ask()
            same += space.draw(first) == space.draw(second)
        return same

    assert same_pairs(liar=True) <= 4
    assert same_pairs(liar=False) == 10


# --- a real sweep of millisecond trials -------------------------------------------------------


def light_run_trial(config, data=None, *, threads=None):
    """A millisecond stand-in for run_trial: objectives a known function of the mechanisms
    and the seed; the row has the configuration's columns like a real one."""
    from raymia.trial.config import TrialConfig

    cfg = TrialConfig.model_validate(config)
    m = cfg.mechanisms.model_dump()
    # distinct weights: distinct configurations get distinct objectives
    base = sum(
        float(v or 0) * (1 + 0.1 * np.sqrt(2 + i)) for i, (_, v) in enumerate(sorted(m.items()))
    )
    row = {**cfg.flat(), "status": "ok"}
    row["test_acc"] = 0.9 - 0.01 * base + 0.02 * cfg.seed
    row["adv"] = 0.3 / (1 + base) + 0.01 * cfg.seed
    row["dtc_adv"] = 0.2 / (1 + base) - 0.005 * cfg.seed
    n = 10
    row["scores"] = {"is_member": np.arange(n) % 2 == 0, "score_loss": np.full(n, float(cfg.seed))}
    return row


def light_trainable(params, pool=None, timeout=None):
    """The real trainable, every run_trial swapped for `light_run_trial`."""
    import raymia.trial.runner
    from raymia.sweep.worker import trainable

    raymia.trial.runner.run_trial = light_run_trial
    return trainable(params, pool, timeout)


@pytest.mark.slow
def test_a_sweep_records_what_ran_and_seeds_are_one_point(tmp_path, monkeypatch):
    from ray import cloudpickle

    from raymia.results.rows import load_scores
    from raymia.sweep import run as sweep_run
    from raymia.sweep.run import run_sweep
    from raymia.sweep.settings import SweepSettings

    space = tmp_path / "space.yaml"
    space.write_text(
        "trial: {epochs: 1}\nseeds: [0, 1]\nmechanisms:\n"
        "  label_smoothing: {uniform: [0.05, 0.3]}\n  mixup: {choice: [0.2, 0.5]}\n"
        "  distillation: {choice: [2.0]}\n  adv_reg: {choice: [0.5]}\n"
        "  dp_noise: {choice: [1.0, 2.0]}\n  dropout: {choice: [0.0, 0.3], always: true}\n"
    )
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(sweep_run, "trainable", light_trainable)
    out = tmp_path / "sweep"
    with local_ray(2):
        df = run_sweep(
            SweepSettings(
                space=str(space),
                out=str(out),
                samples=12,
                max_concurrent=2,
                objectives="acc:max,adv:min,dtc_adv:min",  # the three the check below reads
            )
        )
    assert len(df) == 12 and (df["status"] == "ok").all()
    study = sweep_study(out)
    trials = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(trials) == 12
    rows = df.to_dict("records")
    names = ["label_smoothing", "mixup", "distillation", "adv_reg", "dp_noise", "dropout"]
    matched = 0
    for trial in trials:
        # the row whose objectives Optuna was told is the row with the journal's parameters
        told = [
            r for r in rows if np.allclose(trial.values, [r["test_acc"], r["adv"], r["dtc_adv"]])
        ]
        assert told
        for row in told:
            for name in names:
                strength = trial.params.get(f"mechanisms/{name}", 0)
                assert row[name] == pytest.approx(strength), (name, trial.params)
                if not trial.params.get(f"on/{name}", name == "dropout"):
                    assert row[name] == 0
        matched += 1
    assert matched == 12
    assert (df["switched_off"].fillna("") == "").all()
    dp = df[df["dp_noise"] > 0]
    assert len(dp) and (dp[["mixup", "distillation", "adv_reg"]] == 0).all().all()
    assert (df["mixup"] > 0).any(), "the sampler drew mixup where DP-SGD was off"
    # seeds are replicates: one row per configuration, its objectives the seeds' mean
    assert df["seed"].isna().all() and (df["seeds"] == "0,1").all()
    for row in rows:
        per_seed = [
            light_run_trial({"epochs": 1, "seed": s, "mechanisms": _mech(row, names)})
            for s in (0, 1)
        ]
        for column in ("test_acc", "adv", "dtc_adv"):
            values = [r[column] for r in per_seed]
            assert row[column] == pytest.approx(np.mean(values))
            assert row[f"{column}_sd"] == pytest.approx(np.std(values, ddof=1))
    assert "seed" not in study.trials[0].params  # never a searched parameter
    scores = load_scores(out, rows[0]["trial_id"])
    assert sorted(set(scores["seed"])) == [0, 1] and len(scores) == 20
    assert json.loads((out / "sweep.json").read_text())["sampler"] == "tpe"


def _mech(row: dict, names: list[str]) -> dict:
    return {n: row[n] for n in names if row[n]}
