"""The sweep's answer (raymia.analysis.answer) on simulated sweeps of known truth: the best
configuration per accuracy budget, when two configurations can be told apart and how many
seeds would do it, DP-SGD at the same accuracy, and the front within noise."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from raymia.analysis.answer import (
    Estimate,
    answer,
    answer_markdown,
    configurations,
    distinguishable,
    estimate,
    front_within_noise,
    parse_budgets,
    row_interval,
    seeds_to_separate,
)
from raymia.errors import AnalysisError
from raymia.results.front import pareto_front, parse_objectives

MECHANISMS = ("augment", "label_smoothing", "dropout", "weight_decay", "dp_noise")
OBJECTIVES = parse_objectives("acc:max,adv:min")
HALF = 0.03  # the simulated advantage interval's half-width (a DKW-like fixed width)


def trial(
    trial_id: str,
    acc: float,
    leak: float,
    seed: int = 0,
    null: float = 0.05,
    half: float = HALF,
    n_test: int = 1000,
    **strengths: float,
) -> dict:
    """A completed trial row: accuracy with its Clopper-Pearson-like interval over `n_test`,
    the best attack (loss) at `leak` with a fixed-width interval, and its null."""
    from raymia.privacy.metrics import clopper_pearson

    lo, hi = clopper_pearson(round(acc * n_test), n_test)
    row = {"trial_id": trial_id, "status": "ok", "seed": seed, "dataset": "digits"}
    row |= dict.fromkeys(MECHANISMS, 0.0) | {"dp_clip": 1.0} | strengths
    row |= {"test_acc": acc, "test_acc_lo": lo, "test_acc_hi": hi}
    row |= {"loss_adv": leak, "loss_adv_lo": max(0.0, leak - half), "loss_adv_hi": leak + half}
    row |= {"merlin_adv": leak / 2, "merlin_adv_lo": 0.0, "merlin_adv_hi": leak}
    row |= {"adv": leak, "adv_null_q95": null, "adv_excess": max(0.0, leak - null)}
    return row


def sweep(
    configs: dict[str, tuple[float, float, dict]], seeds: int, sd: float, rng
) -> pd.DataFrame:
    """`seeds` grid rows per configuration: true (accuracy, leakage) plus seed noise."""
    rows = []
    for name, (acc, leak, strengths) in configs.items():
        for s in range(seeds):
            rows.append(
                trial(
                    f"{name}-{s}",
                    acc + rng.normal(0, sd / 5),
                    leak + rng.normal(0, sd),
                    seed=s,
                    **strengths,
                )
            )
    return pd.DataFrame(rows)


# the undefended model, and defences on a known trade-off: each buys less leakage for accuracy
KNOWN = {
    "none": (0.950, 0.30, {}),
    "ls": (0.947, 0.20, {"label_smoothing": 0.1}),  # within 0.5 points
    "wd": (0.943, 0.10, {"weight_decay": 0.01}),  # within 1 point
    "aug": (0.935, 0.05, {"augment": 2.0}),  # within 2 points
    "drop": (0.850, 0.01, {"dropout": 0.5}),  # 10 points: outside every budget
}


def test_the_answer_is_the_least_leaking_configuration_within_each_budget():
    rng = np.random.default_rng(0)
    result = answer(sweep(KNOWN, 3, 0.004, rng), OBJECTIVES)
    chosen = {b.budget: b.best["config"] for b in result.budgets}
    assert chosen == {
        0.5: "label_smoothing=0.1",
        1.0: "weight_decay=0.01",
        2.0: "augment=2",
        5.0: "augment=2",
    }
    assert result.reference_kind == "undefended" and result.reference["config"] == "none"
    for b in result.budgets:
        assert b.best["seeds"] == 3
        assert b.distinguishable  # 0.05 apart or more at a seed sd of 0.004
    runner = {b.budget: b.runner_up["config"] for b in result.budgets}
    assert runner[5.0] == "weight_decay=0.01" and runner[0.5] == "none"
    text = answer_markdown(result)
    assert "Giving up at most 1 point" in text and "**weight_decay=0.01**" in text
    assert "distinguishable" in text and "no DP-SGD trial" in text


def test_without_an_undefended_trial_the_budget_counts_from_the_most_accurate():
    rng = np.random.default_rng(1)
    configs = {k: v for k, v in KNOWN.items() if k != "none"}
    result = answer(sweep(configs, 2, 0.004, rng), OBJECTIVES, budgets=(0.5,))
    assert result.reference_kind == "most accurate"
    assert result.reference["config"] == "label_smoothing=0.1"
    assert "has no undefended trial" in answer_markdown(result)


def test_two_configurations_of_equal_leakage_are_not_distinguishable():
    rows = [trial("a", 0.95, 0.12, label_smoothing=0.1), trial("b", 0.95, 0.12, dropout=0.5)]
    result = answer(pd.DataFrame(rows), OBJECTIVES, budgets=(1.0,))
    (b,) = result.budgets
    assert b.distinguishable is False and b.seeds_needed is None
    assert "not distinguishable" in answer_markdown(result)
    assert "no number of seeds" in answer_markdown(result)


def test_near_equal_leakage_says_how_many_seeds_would_separate_them():
    rows = [trial("a", 0.95, 0.12, label_smoothing=0.1), trial("b", 0.95, 0.14, dropout=0.5)]
    (b,) = answer(pd.DataFrame(rows), OBJECTIVES, budgets=(1.0,)).budgets
    assert b.best["config"] == "label_smoothing=0.1" and not b.distinguishable
    # per-seed sd read off the intervals: 0.03 / 1.96 each; n = 2.8^2 * 2 sd^2 / 0.02^2
    sd = HALF / 1.959964
    expected = math.ceil((1.959964 + 0.841621) ** 2 * 2 * sd**2 / 0.02**2)
    assert b.seeds_needed == expected
    assert f"about {expected} seeds of each" in answer_markdown(
        answer(pd.DataFrame(rows), OBJECTIVES, budgets=(1.0,))
    )


def test_equal_configurations_are_called_distinguishable_at_most_at_the_test_level():
    """Null level: two configurations of the same true leakage, 3 seeds each, 2,000 sweeps."""
    rng = np.random.default_rng(2)
    calls = 0
    for _ in range(2000):
        a = estimate([{"adv": v} for v in rng.normal(0.1, 0.02, 3)], "adv")
        b = estimate([{"adv": v} for v in rng.normal(0.1, 0.02, 3)], "adv")
        calls += distinguishable(a, b)
    assert calls / 2000 <= 0.05


def test_one_trials_own_interval_holds_the_level_too():
    """Null level with one seed each and correct normal intervals of known width."""
    rng = np.random.default_rng(3)
    sd = 0.02
    half = 1.959964 * sd
    calls = 0
    for _ in range(4000):
        a, b = rng.normal(0.1, sd, 2)
        calls += distinguishable(
            Estimate(a, a - half, a + half, 1, sd), Estimate(b, b - half, b + half, 1, sd)
        )
    assert 0.03 <= calls / 4000 <= 0.07  # the nominal 5%


def test_the_seeds_the_rule_asks_for_separate_the_configurations_most_of_the_time():
    """Power: a true difference of one per-seed sd; the rule's seed count, then 400 sweeps of
    that many seeds each: detected about 80% of the time (a little less, the t-interval's
    width at ~16 seeds)."""
    sd, d = 0.02, 0.02
    one = Estimate(0.10, 0.10 - 1.959964 * sd, 0.10 + 1.959964 * sd, 1, sd)
    other = Estimate(0.12, 0.12 - 1.959964 * sd, 0.12 + 1.959964 * sd, 1, sd)
    n = seeds_to_separate(one, other)
    assert n == math.ceil((1.959964 + 0.841621) ** 2 * 2 * sd**2 / d**2)
    rng = np.random.default_rng(4)
    hits = 0
    for _ in range(400):
        a = estimate([{"adv": v} for v in rng.normal(0.10, sd, n)], "adv")
        b = estimate([{"adv": v} for v in rng.normal(0.12, sd, n)], "adv")
        hits += distinguishable(a, b)
    assert 0.65 <= hits / 400 <= 0.92


def test_dp_sgd_at_the_answers_accuracy_is_interpolated_never_extrapolated():
    # DP-SGD on a known line: adv = 2 * (acc - 0.80) + 0.02 from 0.80 to 0.92
    dp = [
        trial(f"dp{i}", a, 2 * (a - 0.80) + 0.02, dp_noise=n)
        for i, (a, n) in enumerate([(0.80, 4.0), (0.86, 2.0), (0.92, 1.0)])
    ]
    rows = [*dp, trial("none", 0.95, 0.3), trial("wd", 0.89, 0.05, weight_decay=0.01)]
    result = answer(pd.DataFrame(rows), OBJECTIVES, budgets=(1.0, 10.0))
    within_one, within_ten = result.budgets
    assert within_one.best["config"] == "none" and within_one.dp is None  # above 0.92
    assert "nothing is extrapolated" in answer_markdown(result)
    assert within_ten.best["config"] == "weight_decay=0.01"
    assert within_ten.dp[0] == pytest.approx(2 * (0.89 - 0.80) + 0.02)
    assert within_ten.dp_verdict == "leaks less than DP-SGD"  # 0.05 +- 0.03 against 0.20
    assert "leaks less than DP-SGD" in answer_markdown(result)


def test_an_excess_over_the_null_carries_its_interval_less_the_null():
    row = trial("a", 0.9, 0.20, null=0.08)
    assert row_interval(row, "adv") == (pytest.approx(0.17), pytest.approx(0.23))
    assert row_interval(row, "adv_excess") == (pytest.approx(0.09), pytest.approx(0.15))
    low = trial("b", 0.9, 0.05, null=0.08)
    assert row_interval(low, "adv_excess") == (0.0, 0.0)


def test_budgets_parse_and_refuse_in_one_line():
    assert parse_budgets("2, 0.5,1") == (0.5, 1.0, 2.0)
    with pytest.raises(ValueError, match="'x' is not a number"):
        parse_budgets("1,x")
    with pytest.raises(ValueError, match="not within 0 to 100"):
        parse_budgets("150")


def test_objectives_without_leakage_give_no_answer():
    with pytest.raises(AnalysisError, match="no leakage to minimise"):
        answer(pd.DataFrame([trial("a", 0.9, 0.1)]), parse_objectives("acc:max"))


def test_configurations_pool_seeds_with_a_t_interval():
    rows = [trial(f"s{i}", 0.9, v, seed=i) for i, v in enumerate([0.10, 0.12, 0.14])]
    (config,) = configurations(pd.DataFrame(rows), ["adv"]).to_dict("records")
    half = 4.302653 * 0.02 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(3)
    assert config["adv"] == pytest.approx(0.12)
    assert (config["adv_lo"], config["adv_hi"]) == (
        pytest.approx(0.12 - half),
        pytest.approx(0.12 + half),
    )
    assert config["seeds"] == 3 and config["adv_null"] == pytest.approx(0.05)
    replicate = {**rows[0], "seed": None, "seeds": "0,1,2", "adv": 0.12, "adv_sd": 0.02}
    (again,) = configurations(pd.DataFrame([replicate]), ["adv"]).to_dict("records")
    assert again["adv_lo"] == pytest.approx(config["adv_lo"]) and again["seeds"] == 3


# ---- the front within noise ----------------------------------------------------------------


def test_the_front_within_noise_drops_only_trials_clearly_beaten():
    rows = [
        trial("best", 0.95, 0.10, half=0.02),
        trial("near", 0.948, 0.11, half=0.02, dropout=0.1),  # dominated, within the noise
        trial("worse", 0.80, 0.40, half=0.02, dropout=0.2),  # beaten in both by far
        trial("quiet", 0.80, 0.04, null=0.05, half=0.005, dropout=0.3),  # below its null
        trial("tight", 0.95, 0.005, null=0.05, half=0.002, dropout=0.4),
    ]
    df = pd.DataFrame(rows)
    kept = front_within_noise(df, OBJECTIVES)
    ids = set(df.loc[kept[kept].index, "trial_id"])
    # "quiet" is far less accurate than "tight", and its leakage is higher by more than the
    # intervals, but below its null: chance explains it, so it is not clearly beaten
    assert ids == {"best", "near", "quiet", "tight"}
    plain = set(pareto_front(df, OBJECTIVES)["trial_id"])
    assert plain == {"tight"} and plain <= ids


def test_the_plain_front_is_always_within_the_front_within_noise():
    rng = np.random.default_rng(5)
    for _ in range(30):
        rows = [
            trial(f"t{i}", rng.uniform(0.8, 0.95), rng.uniform(0, 0.3), half=rng.uniform(0, 0.05))
            for i in range(12)
        ]
        df = pd.DataFrame(rows)
        kept = front_within_noise(df, OBJECTIVES)
        plain = set(pareto_front(df, OBJECTIVES).index)
        assert plain <= set(kept[kept].index)


# ---- where the answer is read: the sweep's end and the report ------------------------------


def test_the_sweep_ends_with_the_answer_then_the_front_within_noise(tmp_path):
    from raymia.sweep.command import sweep_answer
    from raymia.sweep.settings import SweepSettings

    rng = np.random.default_rng(6)
    df = sweep(KNOWN, 1, 0.004, rng)
    settings = SweepSettings(space="x.yaml", out=str(tmp_path), objectives="acc:max,adv:min")
    text = sweep_answer(df, settings, (1.0,))
    assert text.index("The answer") < text.index("Pareto front")
    assert "Giving up at most 1 point" in text and "**weight_decay=0.01**" in text
    assert "| front |" in text.splitlines()[-len(KNOWN) - 2]  # the table's header
    assert "Pareto" in text and "within noise of it" in text
    failed = pd.DataFrame([{"trial_id": "x", "status": "failed", "error": "boom"}])
    assert "no successful trials" in sweep_answer(failed, settings, (1.0,))


def test_the_report_opens_with_the_answer(tmp_path):
    from raymia.analysis import report
    from raymia.results.rows import write_trials

    rng = np.random.default_rng(7)
    write_trials(tmp_path, sweep(KNOWN, 2, 0.004, rng).to_dict("records"))
    path = report.write_report(tmp_path, "acc:max,adv:min", max_roc=0, budgets=(0.5, 2.0))
    text = path.read_text()
    assert text.index("## The answer") < text.index("## Pareto front")
    assert "Giving up at most 0.5 points" in text and "**label_smoothing=0.1**" in text
    assert "Giving up at most 2 points" in text and "**augment=2**" in text
    assert "within noise" in text


def test_the_seeds_asked_for_use_the_seeds_spread_not_the_t_intervals_width():
    a = estimate([{"adv": 0.10}, {"adv": 0.1141}], "adv")
    b = estimate([{"adv": 0.12}, {"adv": 0.1341}], "adv")
    sd = np.std([0.10, 0.1141], ddof=1)
    assert a.se == pytest.approx(sd / math.sqrt(2))
    expected = math.ceil((1.959964 + 0.841621) ** 2 * 2 * sd**2 / 0.02**2)
    assert seeds_to_separate(a, b) == expected == 4


def test_without_an_interval_the_answer_does_not_claim_a_difference():
    rows = [trial("a", 0.95, 0.12, label_smoothing=0.1), trial("b", 0.95, 0.30, dropout=0.5)]
    for row in rows:  # a leakage column without intervals (an older sweep's, say)
        row["eps_lb"] = row["adv"]
    objectives = parse_objectives("acc:max,eps_lb:min")
    result = answer(pd.DataFrame(rows), objectives, budgets=(1.0,))
    (b,) = result.budgets
    assert b.best["config"] == "label_smoothing=0.1" and b.distinguishable is None
    assert b.seeds_needed is None
    assert "Whether the two differ is unknown" in answer_markdown(result)
    kept = front_within_noise(pd.DataFrame(rows), objectives)
    assert kept.all()  # unknown noise: neither clearly beats the other
