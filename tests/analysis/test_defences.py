"""Each defence beside DP-SGD at equal accuracy on canary leakage (raymia.analysis.defences),
and the study-reproduction report's canary and strong-attack columns (synthetic sweeps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from raymia.analysis import defences, reproduction
from raymia.analysis.common import run_main
from raymia.analysis.defences import LESS, MORE, OUTSIDE, SAME, DpCurve, verdict
from raymia.data.datasets import load_pool
from raymia.privacy.canaries import MIN_TEST_LEFT, canary_columns
from raymia.privacy.metrics import clopper_pearson
from raymia.results.rows import load_results, write_trials
from raymia.sweep.space import load_space, shipped_space

ROOT = Path(__file__).resolve().parents[2]
MECHANISMS = ("augment", "label_smoothing", "dropout", "weight_decay", "dp_noise")


def row(trial_id: str, acc: float, found: int | None, members: int = 1000, **strengths) -> dict:
    """A completed trial: `found` of `members` member canaries at 1% FPR (None: canaries off)."""
    out = {"trial_id": trial_id, "status": "ok", "seed": 0, "dataset": "digits"}
    out.update(dict.fromkeys(MECHANISMS, 0.0), dp_clip=1.0, **strengths)
    out.update(test_acc=acc, adv=0.2, loss_adv=0.2, dtc_adv=0.1, dtc_auc=0.6)
    if found is None:
        out.update(canary_members=None, canary_non_members=None, canary_tpr_at_1pct=None)
    else:
        out.update(canary_members=members, canary_non_members=members)
        out.update(canary_tpr_at_1pct=found / members)
    return out


def run(module, argv: list, capsys) -> tuple[int, str, str]:
    code = run_main(module.main, [str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# DP-SGD on a known line: TPR = 2 * (acc - 0.7) + 0.05, from accuracy 0.70 to 0.95.
DP_LINE = [(0.70, 50), (0.80, 250), (0.90, 450), (0.95, 550)]


def dp_rows() -> list[dict]:
    return [
        row(f"dp{i}", acc, found, dp_noise=float(4 - i)) for i, (acc, found) in enumerate(DP_LINE)
    ]


def test_each_defence_against_the_dp_line_of_known_truth(tmp_path, capsys):
    rows = dp_rows() + [
        row("above", 0.85, 900, label_smoothing=0.1),  # DP-SGD at 0.85: 0.35
        row("below", 0.85, 50, dropout=0.3),
        row("inside", 0.85, 360, weight_decay=0.01),
        row("outside", 0.98, 990, augment=1),  # more accurate than any DP-SGD trial
    ]
    configs = defences.canary_configurations(load_results_of(tmp_path, rows))
    dp, compared = defences.compare_with_dp(configs)
    assert sorted(dp["tpr"]) == [0.05, 0.25, 0.45, 0.55]
    by = {r["config"].split("=")[0]: r for _, r in compared.iterrows()}
    # between the DP points at 0.80 and 0.90, halfway: the line's value and the mean band
    lo80, hi80 = clopper_pearson(250, 1000)
    lo90, hi90 = clopper_pearson(450, 1000)
    above = by["label_smoothing"]
    assert above["dp_tpr"] == pytest.approx(0.35)
    assert (above["dp_lo"], above["dp_hi"]) == pytest.approx(((lo80 + lo90) / 2, (hi80 + hi90) / 2))
    assert above["ratio"] == pytest.approx(0.9 / 0.35)
    assert above["difference"] == pytest.approx(0.55)
    assert above["verdict"] == MORE
    assert by["dropout"]["verdict"] == LESS
    assert by["weight_decay"]["verdict"] == SAME
    outside = by["augment"]
    assert outside["verdict"] == OUTSIDE and np.isnan(outside["dp_tpr"])
    assert np.isnan(outside["ratio"]) and np.isnan(outside["difference"])
    # the script: a table with every verdict, None and the range said for the outsider
    code, out, err = run(defences, [tmp_path, "--out", tmp_path / "D.md"], capsys)
    assert code == 0, err
    assert out.startswith("# Defences against DP-SGD") and (tmp_path / "D.md").exists()
    assert "leaks more than DP-SGD: 1, leaks less than DP-SGD: 1, no clear difference: 1, " in out
    assert "outside DP-SGD's accuracy range: 1 (None: no extrapolation)" in out
    assert "Each trial audits 1000 member and 1000 non-member canaries." in out
    line = next(li for li in out.splitlines() if li.startswith("| augment=1 "))
    assert "| None | None | None | outside DP-SGD's accuracy range (above 0.700-0.950) |" in line
    line = next(li for li in out.splitlines() if li.startswith("| label_smoothing=0.1 "))
    assert "| 0.900 [" in line and "| 0.350 [" in line and "| 2.57x | 0.550 |" in line


def load_results_of(path: Path, rows: list[dict]):
    write_trials(path, rows)
    return load_results(path)


def test_the_curve_is_monotone_and_never_extrapolates():
    # out of order at 0.9: pooled with 0.8 (equal weights) to 0.25, then linear between points
    curve = DpCurve(
        acc=np.array([0.7, 0.8, 0.9]),
        tpr=np.array([0.1, 0.3, 0.2]),
        lo=np.array([0.05, 0.2, 0.1]),
        hi=np.array([0.2, 0.4, 0.3]),
        weight=np.ones(3),
    )
    assert curve.at(0.85) == pytest.approx((0.25, 0.15, 0.35))
    assert curve.at(0.75) == pytest.approx((0.175, 0.1, 0.275))
    assert curve.at(0.7) == pytest.approx((0.1, 0.05, 0.2))  # the ends are in range
    assert curve.at(0.9) == pytest.approx((0.25, 0.15, 0.35))
    assert curve.at(0.69) is None and curve.at(0.91) is None
    grid = [curve.at(a)[0] for a in np.linspace(0.7, 0.9, 21)]
    assert np.all(np.diff(grid) >= 0)
    one = DpCurve(*(np.array([v]) for v in (0.8, 0.3, 0.2, 0.4, 1.0)))
    assert one.at(0.8) == pytest.approx((0.3, 0.2, 0.4)) and one.at(0.81) is None


def test_the_verdict_respects_both_intervals():
    band = (0.30, 0.25, 0.35)  # DP-SGD's value and band at the defence's accuracy
    assert verdict(0.36, 0.50, band) == MORE
    assert verdict(0.35, 0.50, band) == SAME  # touching the band is not clear of it
    assert verdict(0.10, 0.24, band) == LESS
    assert verdict(0.10, 0.25, band) == SAME
    assert verdict(0.28, 0.32, band) == SAME  # a defence whose TPR differs within the band
    assert verdict(0.9, 1.0, None) == OUTSIDE


def test_seeds_pool_and_one_trial_keeps_its_rows_exact_interval(tmp_path):
    rng = np.random.default_rng(0)
    is_member = np.r_[np.ones(130, bool), np.zeros(130, bool)]
    scores = np.r_[rng.normal(1.0, 1.0, 130), rng.normal(0.0, 1.0, 130)]
    measured = canary_columns({"loss": scores}, is_member)
    single = row("one", 0.9, None, dropout=0.3)
    single.update({k: v for k, v in measured.items() if k != "canary_attack"})
    seeds = [
        row(f"s{i}", 0.8 + 0.02 * i, found, 130, label_smoothing=0.1)
        for i, found in enumerate((60, 70))
    ]
    configs = defences.canary_configurations(load_results_of(tmp_path, [single, *seeds]))
    one = configs[configs["config"] == "dropout=0.3"].iloc[0]
    assert (one["lo"], one["hi"]) == pytest.approx(
        (measured["canary_tpr_at_1pct_lo"], measured["canary_tpr_at_1pct_hi"])
    )
    pooled = configs[configs["config"] == "label_smoothing=0.1"].iloc[0]
    assert (pooled["k"], pooled["n"], pooled["trials"]) == (130, 260, 2)
    assert pooled["test_acc"] == pytest.approx(0.81)
    assert (pooled["lo"], pooled["hi"]) == pytest.approx(clopper_pearson(130, 260))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("old rows", "no completed trial with canary leakage (`canary_tpr_at_1pct`)"),
        ("canaries off", "no completed trial with canary leakage"),
        ("no DP-SGD", "no DP-SGD trial (dp_noise > 0, no other mechanism)"),
        ("only DP-SGD", "no trial without DP-SGD with canary leakage"),
    ],
)
def test_what_cannot_be_compared_is_one_line(case, message, tmp_path, capsys):
    rows = {
        "old rows": [{k: v for k, v in row("a", 0.9, 1).items() if "canary" not in k}],
        "canaries off": [row("a", 0.9, None), row("b", 0.8, None, dp_noise=1.0)],
        "no DP-SGD": [row("a", 0.9, 500), row("b", 0.9, 400, dropout=0.3)],
        "only DP-SGD": dp_rows(),
    }[case]
    write_trials(tmp_path, rows)
    code, out, err = run(defences, [tmp_path], capsys)
    assert code == 2 and out == ""
    assert err.startswith("analysis: error: ") and message in err and err.count("\n") == 1


def test_the_shipped_space_audits_as_many_canaries_as_digits_allows():
    space = load_space(shipped_space("canaries"))
    pool = load_pool("digits", None, False)
    assert space.trial["attacks"]["canaries"] == len(pool.test_y) - MIN_TEST_LEFT  # 260
    assert space.trial["attacks"]["online_models"] >= 2  # the strongest attacks audit them
    noise = [entry["dp_noise"] for entry in space.grid if "dp_noise" in entry]
    assert len(noise) >= 4 and all(len(entry) == 1 for entry in space.grid if "dp_noise" in entry)
    assert {} in space.grid and len(space.grid) - len(noise) >= 8  # the defences and none


def test_the_help_states_the_rules(capsys):
    with pytest.raises(SystemExit) as stop:
        defences.main(["--help"])
    out = capsys.readouterr().out
    assert stop.value.code == 0 and "--fpr {1pct,0p1pct}" in out
    assert "**leaks more than DP-SGD** when the defence's lower" in out
    runner = (ROOT / "analysis" / "defences.py").read_text()
    assert 'run_module("raymia.analysis.defences"' in runner


# --------------------------------------------------------------------------------------------
# The study-reproduction report


def test_reproduction_of_a_sweep_without_mechanism_columns(tmp_path, capsys):
    """Every trial is the baseline: the DP-SGD and label-smoothing findings are not measured
    (an IndexError before)."""
    rows = [
        {k: v for k, v in row(f"t{i}", 0.9, None).items() if k not in MECHANISMS} for i in range(2)
    ]
    write_trials(tmp_path, rows)
    code, out, err = run(reproduction, [tmp_path, "--out", tmp_path / "R.md"], capsys)
    assert code == 0, err
    text = (tmp_path / "R.md").read_text()
    assert "| DP-SGD lowers advantage at an accuracy cost | not measured |" in text
    assert "| Label smoothing can raise attack advantage | not measured |" in text
    assert "Not measured: no completed trial with canary leakage" in text


def _header_of_every_mechanism_alone(text: str) -> str:
    section = text.split("## Every mechanism alone")[1]
    return next(line for line in section.splitlines() if line.startswith("| configuration"))


def test_reproduction_shows_strong_attacks_and_canaries_only_where_measured(tmp_path, capsys):
    plain = [row("p0", 0.97, None), row("p1", 0.90, None, dp_noise=1.0)]
    text = _reproduce(tmp_path / "plain", plain, capsys)
    header = _header_of_every_mechanism_alone(text)
    assert "rmia" not in header and "canary" not in header and "lira_online" not in header
    assert "(and " not in text.splitlines()[2]

    canary = dp_rows() + [row("c0", 0.85, 900), row("c1", 0.85, 800, label_smoothing=0.1)]
    for i, r in enumerate(canary):
        r.update(rmia_adv=0.3 + 0.01 * i, rmia_online_adv=0.4, lira_online_adv=None)
    text = _reproduce(tmp_path / "canary", canary, capsys)
    header = _header_of_every_mechanism_alone(text)
    assert "| rmia_adv | rmia_online_adv | canary TPR at 1% FPR |" in header
    assert "lira_online" not in header  # a column with no value is no column
    base = next(li for li in text.splitlines() if li.startswith("| none | 1 |"))
    lo, hi = clopper_pearson(900, 1000)
    assert f"| 0.340 ± - | 0.400 ± - | 0.900 [{lo:.3f}, {hi:.3f}] |" in base
    assert "## Defences against DP-SGD at equal accuracy, on canaries" in text
    assert "leaks more than DP-SGD: 2," in text

    # both kinds: the findings read the trials without canaries, the last section the others
    text = _reproduce(tmp_path / "both", plain + canary, capsys)
    assert "2 completed trials from" in text and "(and 6 with canaries" in text
    assert "canary" not in _header_of_every_mechanism_alone(text)
    assert "leaks more than DP-SGD: 2," in text


def _reproduce(path: Path, rows: list[dict], capsys) -> str:
    write_trials(path, rows)
    code, _, err = run(reproduction, [path, "--out", path / "R.md"], capsys)
    assert code == 0, err
    return (path / "R.md").read_text()


def test_each_defences_one_run_bound_beside_dp_sgds_epsilons_at_equal_accuracy(tmp_path, capsys):
    """DP-SGD on known lines: dp_epsilon = 20 (acc - 0.7) + 1, its one-run bound half that;
    at accuracy 0.85 both are read off the lines, never outside 0.70-0.95."""
    rows = dp_rows()
    for r in rows:
        r["dp_epsilon"] = 20 * (r["test_acc"] - 0.7) + 1
        r["eps_lb_one_run"], r["eps_lb_one_run_max"] = r["dp_epsilon"] / 2, 3.6
    inside = row("inside", 0.85, 360, weight_decay=0.01) | {
        "eps_lb_one_run": 3.1,
        "eps_lb_one_run_max": 3.6,
    }
    outside = row("outside", 0.98, 990, augment=1) | {"eps_lb_one_run": 3.6}
    configs = defences.canary_configurations(load_results_of(tmp_path, [*rows, inside, outside]))
    _, compared = defences.compare_with_dp(configs)
    by = {r["config"].split("=")[0]: r for _, r in compared.iterrows()}
    assert by["weight_decay"]["dp_dp_epsilon"] == pytest.approx(4.0)
    assert by["weight_decay"]["dp_eps_one_run"] == pytest.approx(2.0)
    assert by["weight_decay"]["eps_one_run"] == pytest.approx(3.1)
    assert np.isnan(by["augment"]["dp_dp_epsilon"]) and np.isnan(by["augment"]["dp_eps_one_run"])
    code, out, _ = run(defences, [tmp_path, "--out", tmp_path / "D.md"], capsys)
    line = next(li for li in out.splitlines() if li.startswith("| weight_decay=0.01 "))
    assert line.endswith("| 3.10 (3.60) | 4.000 | 2.000 |")
    assert "one-run ε (ceiling)" in out and code == 0


def test_seeds_whose_canary_draws_differ_are_one_configuration(tmp_path):
    """Each canary is a member with probability 1/2, so one configuration's seeds audit
    different numbers of member canaries: they still pool into one configuration."""
    rows = dp_rows()
    for seed, members in enumerate((125, 129, 132)):
        one = row(f"ls{seed}", 0.85, members // 2, members=members, label_smoothing=0.1)
        rows.append(one | {"seed": seed, "canary_non_members": 260 - members})
    configs = defences.canary_configurations(load_results_of(tmp_path, rows))
    smoothing = configs[configs["config"] == "label_smoothing=0.1"]
    assert len(smoothing) == 1 and int(smoothing["trials"].iloc[0]) == 3
    assert int(smoothing["n"].iloc[0]) == 125 + 129 + 132
