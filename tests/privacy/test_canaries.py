"""Canaries: mislabeled test images, half trained on, audited apart (raymia.privacy.canaries)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from raymia.cli import main
from raymia.data.datasets import load_splits
from raymia.errors import ConfigError, DataError
from raymia.privacy.canaries import COLUMNS, MIN_TEST_LEFT, canary_columns, draw_canaries
from raymia.privacy.metrics import clopper_pearson
from raymia.sweep.space import load_space
from raymia.trial import measure
from raymia.trial.config import parse_trial_config
from raymia.trial.runner import run_trial

# Cheap measurement: no DtC, no shadow, no resampling.
_QUICK = {
    "dtc": {"enabled": False},
    "attacks": {
        "shadow_calibration": False,
        "rmia_offline": 0,
        "n_bootstrap": 0,
        "n_permutations": 0,
        "merlin_neighbours": 5,
    },
}


def _trial(canaries: int, epochs: int, **settings) -> dict:
    attacks = {**_QUICK["attacks"], "canaries": canaries, **settings.pop("attacks", {})}
    return run_trial({**_QUICK, "epochs": epochs, "attacks": attacks, **settings}, threads=1)


def test_shifted_members_give_the_known_tpr_and_its_exact_interval():
    non_members = np.arange(100.0)  # 100 non-member canaries: 1% FPR allows no false positive
    is_member = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    strong = np.r_[non_members + 95.0, non_members]  # 95 members above every non-member
    weak = np.r_[non_members + 40.0, non_members]  # 40
    columns = canary_columns({"weak": weak, "strong": strong, "same": strong}, is_member)
    assert tuple(columns) == COLUMNS
    assert columns["canary_attack"] == "strong"  # the highest TPR; ties to the first
    assert columns["canary_members"] == columns["canary_non_members"] == 100
    assert columns["canary_tpr_at_1pct"] == pytest.approx(0.95)
    lo, hi = clopper_pearson(95, 100)
    assert (columns["canary_tpr_at_1pct_lo"], columns["canary_tpr_at_1pct_hi"]) == (lo, hi)
    assert 0.88 < lo < 0.95 < hi < 0.99
    assert columns["canary_tpr_at_0p1pct"] is None  # 100 non-members: 0.1% is undefined
    assert columns["canary_adv"] == pytest.approx(0.95)
    # Pairs a member does not win: members 95..99 lose to 4 + 3 + 2 + 1 + 0 and tie 5.
    assert columns["canary_auc"] == pytest.approx(1 - (10 + 5 / 2) / 100**2)
    # Too few non-members for 1%: the strongest by advantage, its TPR columns None.
    few = np.r_[np.ones(10, bool), np.zeros(10, bool)]
    small = canary_columns(
        {
            "weak": np.r_[np.arange(10.0) + 3, np.arange(10.0)],
            "strong": np.r_[np.arange(10.0) + 8, np.arange(10.0)],
        },
        few,
    )
    assert small["canary_attack"] == "strong" and small["canary_tpr_at_1pct"] is None
    assert small["canary_adv"] == pytest.approx(0.8)
    assert canary_columns(None, None) == dict.fromkeys(COLUMNS)


def test_the_exact_interval_covers_the_true_tpr_at_least_95_percent():
    # Members N(1.5, 1), non-members N(0, 1); with 100 non-members the 1% point's threshold
    # is the largest non-member score t, whose true TPR is 1 - Phi(t - 1.5).
    rng = np.random.default_rng(7)
    shift, n, reps = 1.5, 100, 800
    is_member = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    covered = 0
    for _ in range(reps):
        scores = np.r_[rng.normal(shift, 1.0, n), rng.normal(0.0, 1.0, n)]
        truth = norm.sf(scores[n:].max() - shift)
        columns = canary_columns({"loss": scores}, is_member)
        covered += columns["canary_tpr_at_1pct_lo"] <= truth <= columns["canary_tpr_at_1pct_hi"]
    assert covered / reps >= 0.95


def test_canaries_are_test_images_with_a_wrong_label_each_a_member_with_probability_half():
    test = load_splits("digits", 0).test
    canaries = draw_canaries(test, 200, 10, seed=3)
    assert len(canaries.members) + len(canaries.non_members) == 200
    # independent inclusion bits (the one-run audit's premise): the member count is
    # Binomial(200, 1/2) over seeds, mean 100, sd 7.07, not exactly half every time
    counts = np.array([len(draw_canaries(test, 200, 10, seed=s).members) for s in range(300)])
    assert abs(counts.mean() - 100) < 1.5 and 6.0 < counts.std() < 8.2
    drawn = np.r_[canaries.members.indices, canaries.non_members.indices]
    assert len(np.unique(drawn)) == 200
    assert not set(drawn) & set(canaries.test.indices)
    assert len(canaries.test) == len(test) - 200
    for part in (canaries.members, canaries.non_members):
        true = test.y[part.indices]
        assert (part.y != true).all() and (part.y >= 0).all() and (part.y < 10).all()
        assert (part.x == test.x[part.indices]).all()
    offsets = (canaries.scored().y - test.y[drawn]) % 10
    assert set(offsets.tolist()) == set(range(1, 10))  # every other class is drawn
    again = draw_canaries(test, 200, 10, seed=3)
    assert (again.members.indices == canaries.members.indices).all()
    other = draw_canaries(test, 200, 10, seed=4)
    assert set(other.members.indices) != set(canaries.members.indices)
    assert draw_canaries(test, 0, 10, seed=3) is None
    with pytest.raises(DataError, match="use at most 260"):
        draw_canaries(test, len(test) - MIN_TEST_LEFT + 2, 10, seed=3)


@pytest.mark.parametrize(
    "value, expected",
    [(3, "multiple of 2"), (-2, "greater than or equal to 0"), (10_002, "less than or equal")],
)
def test_bad_canary_counts_are_one_line(value, expected, tmp_path, capsys):
    with pytest.raises(ConfigError, match=f"attacks.canaries = {value}: .*{expected}"):
        parse_trial_config({"attacks": {"canaries": value}})
    assert main(["trial", "--set", f"canaries={value}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and "Traceback" not in err
    space = tmp_path / "space.yaml"
    space.write_text(f"trial:\n  attacks:\n    canaries: {value}\n")
    with pytest.raises(ConfigError, match=f"trial.attacks.canaries = {value}"):
        load_space(space)


def test_canaries_are_reachable_from_a_space_and_a_config_file(tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("trial:\n  attacks:\n    canaries: 200\n")
    assert parse_trial_config(load_space(space).trial).attacks.canaries == 200
    config = tmp_path / "trial.yaml"
    config.write_text("attacks:\n  canaries: 300\n")  # digits' test split holds 360
    assert main(["trial", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "attacks.canaries = 300" in err and "at most 260" in err


def test_online_models_train_on_the_canaries_each_in_for_half_of_them(monkeypatch):
    seen = {}

    def spy(config, info, scored, *args, **kwargs):
        seen["online"] = online = train_online_models(config, info, scored, *args, **kwargs)
        seen["scored"] = len(scored)
        return online

    train_online_models = measure.train_online_models
    monkeypatch.setattr(measure, "train_online_models", spy)
    row = _trial(20, 1, attacks={"online_models": 2})
    n_eval = 2 * row["eval_members"]
    assert seen["scored"] == n_eval + 20
    assert (seen["online"].is_in[:, n_eval:].sum(axis=0) == 1).all()  # IN for 1 of 2 models
    assert row["canary_members"] + row["canary_non_members"] == 20
    assert row["canary_attack"] is not None


@pytest.mark.slow
def test_a_memorizing_target_leaks_its_canaries_and_dp_sgd_hides_them():
    free = _trial(200, 30)
    assert free["members_trained"] == 350 + free["canary_members"]
    assert free["canary_members"] + free["canary_non_members"] == 200
    assert free["canary_non_members"] >= 100  # seed 0's draw: TPR at 1% FPR is defined
    assert round(free["test_acc"] * 160, 6).is_integer()  # 360 test images - 200 canaries
    ordinary = max(v for k, v in free.items() if k.endswith("_tpr_at_1pct") and "canary" not in k)
    # The canaries leak far more than the average member (Aerni et al.'s point).
    assert free["canary_tpr_at_1pct_lo"] > 5 * ordinary
    dp = _trial(200, 30, mechanisms={"dp_noise": 2.0})
    assert dp["canary_tpr_at_1pct_hi"] < free["canary_tpr_at_1pct_lo"]
    print(
        f"canary TPR at 1% FPR: memorizing {free['canary_tpr_at_1pct']:.2f} "
        f"[{free['canary_tpr_at_1pct_lo']:.2f}, {free['canary_tpr_at_1pct_hi']:.2f}] "
        f"({free['canary_attack']}; ordinary best {ordinary:.3f}), DP-SGD noise 2 "
        f"{dp['canary_tpr_at_1pct']:.2f} [{dp['canary_tpr_at_1pct_lo']:.2f}, "
        f"{dp['canary_tpr_at_1pct_hi']:.2f}] (eps {dp['dp_epsilon']:.1f})"
    )


@pytest.mark.parametrize(
    ("canaries", "objective", "expected"),
    [
        (0, "canary_tpr_at_1pct:min", "canary_tpr_at_1pct needs trial.attacks.canaries >= 260"),
        (100, "canary_tpr_at_1pct:min", "space.yaml sets 100"),
        (
            200,
            "canary_tpr_at_0p1pct:min",
            "canary_tpr_at_0p1pct needs trial.attacks.canaries >= 2200",
        ),
        (0, "canary_auc:min", "canary_auc needs trial.attacks.canaries >= 2"),
    ],
)
def test_a_canary_objective_needs_enough_canaries(tmp_path, capsys, canaries, objective, expected):
    space = tmp_path / "space.yaml"
    space.write_text(
        f"trial: {{attacks: {{canaries: {canaries}}}}}\n"
        "mechanisms: {dropout: {uniform: [0.0, 0.5]}}\n"
    )
    out = tmp_path / "out"
    code = main(
        ["sweep", "--space", str(space), "--out", str(out), "--objectives", f"acc:max,{objective}"]
    )
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert expected in err
    assert not out.exists()


@pytest.mark.slow
def test_a_sweep_searches_against_the_canary_tpr(tmp_path):
    from helpers.sweep_journal import sweep_study

    from raymia.sweep.run import run_sweep
    from raymia.sweep.settings import SweepSettings

    space = tmp_path / "space.yaml"
    space.write_text(
        "trial: {epochs: 2, members: 150, non_members: 150, reference: 300, dtc: {enabled: false},"
        " attacks: {canaries: 260, shadow_calibration: false, rmia_offline: 0, n_bootstrap: 0,"
        " n_permutations: 0, merlin_neighbours: 5}}\n"
        "mechanisms: {dropout: {uniform: [0.0, 0.5]}}\n"
    )
    settings = SweepSettings(
        space=str(space),
        out=str(tmp_path / "out"),
        samples=2,
        search="random",
        objectives="acc:max,canary_tpr_at_1pct:min",
        max_concurrent=2,
        ray_init={"num_cpus": 2},
    )
    df = run_sweep(settings)
    assert len(df) == 2 and (df["status"] == "ok").all(), df.get("error")
    assert df["canary_tpr_at_1pct"].between(0, 1).all()
    study = sweep_study(tmp_path / "out")
    # Optuna was told each trial's canary TPR as its second objective
    told = sorted(t.values[1] for t in study.trials)
    assert told == pytest.approx(sorted(df["canary_tpr_at_1pct"]))
