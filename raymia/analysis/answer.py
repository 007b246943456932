"""The answer a sweep exists for: at a given accuracy budget, which configuration leaks least.

A practitioner asks "I can give up one point of accuracy: what should I turn on, how much
leakage does it remove, and is that better than DP-SGD?". This module reads a sweep's rows and
answers that for accuracy budgets, with each figure's noise:

1. *Configurations.* Completed trials are grouped by configuration (the mechanisms on, with
   their strengths: `raymia.results.labels.config_key`). A configuration's value of a column is the
   mean over its seeds; its 95% interval is the t-interval of that mean where it has two or
   more seeds (a grid's rows, or a replicate row's ``<column>_sd``), else the row's own
   interval (:func:`row_interval`: the DKW interval of the best attack's advantage, the
   bootstrap interval of an AUC, the Clopper-Pearson interval of the test accuracy, ...).
2. *The budget.* The accuracy to keep is the most accurate undefended configuration's (every
   mechanism off), or the most accurate configuration's where the sweep has none. Within a
   budget of b points, the configurations whose accuracy is at least that minus b / 100 are
   eligible; the one with the least leakage (by the sweep's leakage objective: its first
   objective to minimise) is the answer, the next one the runner-up.
3. *Distinguishable.* The two differ when Welch's t-test on their means rejects equality at
   5%: a mean over seeds has the standard error sd / sqrt(seeds), a single trial its
   interval's width / (2 x 1.96) (known noise); without an interval the question stays open.
   Where they do not, the number of seeds of each that
   would tell them apart at the observed spread (a two-sided test at 5%, power 80%) is
   n = (1.96 + 0.84)^2 (s_1^2 + s_2^2) / d^2, with s_i the per-seed standard deviation
   (standard error x sqrt(seeds)) and d the observed difference; none where d is 0.
4. *DP-SGD at that accuracy*: the configurations with DP-SGD alone give (accuracy, leakage,
   interval) points, fitted non-decreasing and interpolated as `raymia.analysis.defences`
   does (`DpCurve`), never extrapolated.

The front within noise (:func:`front_within_noise`) answers which differences between trials
are real: a trial is *clearly beaten* by another that is better in every objective by more
than the noise, its interval wholly on the better side of the trial's interval, and, for a
leakage objective, the beaten trial's leakage above its permutation null (two trials whose
leakage chance alone explains do not differ in it). The trials no other trial clearly beats
hold the plain Pareto front and every trial the noise cannot tell from it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from raymia.analysis.defences import (
    LESS,
    MORE,
    SAME,
    DpCurve,
    configuration_kind,
    seed_count,
    verdict,
)
from raymia.errors import AnalysisError
from raymia.privacy.leakage import LEAKAGE_NULLS, finite_number
from raymia.results.front import Objective
from raymia.results.labels import config_key, config_label
from raymia.results.rows import ok_trials
from raymia.results.tables import fmt, markdown_table
from raymia.sweep.settings import DEFAULT_BUDGETS, parse_budgets

__all__ = [
    "BUDGETS",
    "Answer",
    "BudgetAnswer",
    "answer",
    "answer_markdown",
    "answer_text",
    "front_summary",
    "configurations",
    "front_within_noise",
    "leakage_objective",
    "parse_budgets",
    "row_interval",
    "seeds_to_separate",
]

#: The default accuracy budgets, in points of test accuracy given up.
BUDGETS = DEFAULT_BUDGETS
#: The accuracy columns: every other objective to minimise is a leakage.
ACCURACY = ("test_acc", "train_acc")
#: Two-sided 5% and 80% power: the normal quantiles of the seeds' rule.
Z_LEVEL = float(stats.norm.ppf(0.975))
Z_POWER = float(stats.norm.ppf(0.80))


def leakage_objective(objectives: Sequence[Objective]) -> Objective | None:
    """Return the sweep's leakage objective: its first objective to minimise that is not an
    accuracy, or None when there is none."""
    for objective in objectives:
        if objective.direction == "min" and objective.column not in ACCURACY:
            return objective
    return None


def _null_column(column: str) -> str | None:
    """Return the column holding `column`'s permutation null (its 95th percentile), if any."""
    if column in LEAKAGE_NULLS:
        return LEAKAGE_NULLS[column]
    if column.endswith("_adv"):
        return f"{column}_null_q95"
    return None


def row_null(row: Mapping[str, Any], column: str) -> float | None:
    """Return the 95th percentile of `column`'s permutation null in one row (0 for an excess
    over the null, which is measured from it), or None where the row has none."""
    if column.endswith("_excess"):
        return 0.0
    null_column = _null_column(column)
    return finite_number(row.get(null_column)) if null_column else None


def row_interval(row: Mapping[str, Any], column: str) -> tuple[float, float] | None:
    """Return one trial's own 95% interval of `column`, or None where the row has none.

    ``<column>_lo`` / ``_hi`` where the row holds them (each attack's advantage and AUC, DtC's,
    ``test_acc``); for ``adv`` (the best attack's advantage) the interval of the attack that
    reached it; for an excess over the null (``adv_excess``) its statistic's interval less the
    null, floored at 0 as the excess is.
    """
    lo, hi = finite_number(row.get(f"{column}_lo")), finite_number(row.get(f"{column}_hi"))
    if lo is not None and hi is not None:
        return lo, hi
    if column == "adv":
        value = finite_number(row.get("adv"))
        for key in row:
            if key.endswith("_adv") and key not in ("adv", "dtc_adv", "canary_adv"):
                if value is not None and finite_number(row.get(key)) == value:
                    return row_interval(row, key)
        return None
    if column.endswith("_excess"):
        base = column.removesuffix("_excess")
        interval, null = row_interval(row, base), row_null(row, base)
        if interval is None or null is None:
            return None
        return max(0.0, interval[0] - null), max(0.0, interval[1] - null)
    return None


@dataclass(frozen=True)
class Estimate:
    """A configuration's mean of one column over its seeds, with its 95% interval, the
    number of seeds and the mean's standard error `se`: sd / sqrt(seeds) over two or more
    seeds (a t-interval), a trial's own interval's half-width / 1.96 for one, None where the
    noise is unknown (no interval)."""

    mean: float
    lo: float
    hi: float
    seeds: int
    se: float | None

    def text(self) -> str:
        """Return ``mean [lo, hi]``, or the mean alone where the noise is unknown."""
        if self.se is None:
            return f"{fmt(self.mean)} (no interval)"
        return f"{fmt(self.mean)} [{fmt(self.lo)}, {fmt(self.hi)}]"


def estimate(rows: Sequence[Mapping[str, Any]], column: str) -> Estimate | None:
    """Return the mean of `column` over `rows` (one configuration's trials) with its 95%
    interval: the t-interval over the seeds where there are two or more (rows, or one
    replicate row's ``<column>_sd``), else the one row's own (:func:`row_interval`; the
    noise unknown where it has none). None where no row measured it."""
    values = [(finite_number(r.get(column)), r) for r in rows]
    values = [(v, r) for v, r in values if v is not None]
    if not values:
        return None
    if len(values) >= 2:
        x = np.array([v for v, _ in values])
        n, mean, sd = len(x), float(x.mean()), float(x.std(ddof=1))
    else:
        mean, row = values[0]
        n = seed_count(row)
        sd = finite_number(row.get(f"{column}_sd")) if n >= 2 else None
        if sd is None:
            own = row_interval(row, column)
            if own is None:
                return Estimate(mean, mean, mean, 1, None)
            lo, hi = min(own[0], mean), max(own[1], mean)
            return Estimate(mean, lo, hi, 1, (own[1] - own[0]) / (2 * Z_LEVEL))
    se = sd / math.sqrt(n)
    half = float(stats.t.ppf(0.975, n - 1)) * se
    return Estimate(mean, mean - half, mean + half, n, se)


def configurations(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Return one row per configuration of the completed trials of `df`.

    Columns: ``config`` (its label), ``kind`` ("none", "dp": DP-SGD alone, "dp+", "defence"),
    ``trials`` (their ids, comma-separated), ``seeds``; then for each of `columns` the mean
    over the seeds and its interval, ``<column>``, ``<column>_lo``, ``<column>_hi``, and
    ``<column>_null`` (the mean 95th percentile of its permutation null; NaN without one).
    Configurations that did not measure every column are left out.
    """
    ok = ok_trials(df)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for record in ok.to_dict("records"):
        groups.setdefault(config_key(record), []).append(record)
    out = []
    for key, rows in groups.items():
        found = {c: estimate(rows, c) for c in columns}
        if any(e is None for e in found.values()):
            continue
        entry: dict[str, Any] = {
            "config": config_label(rows[0]),
            "kind": "none" if not key else configuration_kind(key),
            "trials": ",".join(str(r.get("trial_id")) for r in rows),
            "seeds": max(e.seeds for e in found.values() if e is not None),
        }
        for column, e in found.items():
            assert e is not None
            nulls = [row_null(r, column) for r in rows]
            finite = [n for n in nulls if n is not None]
            entry |= {
                column: e.mean,
                f"{column}_lo": e.lo,
                f"{column}_hi": e.hi,
                f"{column}_se": np.nan if e.se is None else e.se,
                f"{column}_null": float(np.mean(finite)) if finite else np.nan,
            }
        out.append(entry)
    return pd.DataFrame(out)


def _estimate_of(row: Mapping[str, Any], column: str) -> Estimate:
    se = finite_number(row.get(f"{column}_se"))
    return Estimate(row[column], row[f"{column}_lo"], row[f"{column}_hi"], int(row["seeds"]), se)


def seeds_to_separate(a: Estimate, b: Estimate) -> int | None:
    """Return how many seeds of each configuration would tell `a` from `b` apart at their
    observed spread (a two-sided test at 5% with 80% power), or None where their means are
    equal (no number of seeds would) or the noise is unknown. Each per-seed standard
    deviation is the mean's standard error times sqrt(seeds)."""
    difference = abs(a.mean - b.mean)
    if difference == 0 or a.se is None or b.se is None:
        return None
    variance = a.se**2 * a.seeds + b.se**2 * b.seeds
    return max(2, math.ceil((Z_LEVEL + Z_POWER) ** 2 * variance / difference**2))


def distinguishable(a: Estimate, b: Estimate) -> bool | None:
    """Return whether `a` and `b` differ at 5% (two-sided): Welch's t-test on their means,
    a configuration of one trial counting as known noise (its interval); None where either's
    noise is unknown."""
    if a.se is None or b.se is None:
        return None
    se = math.hypot(a.se, b.se)
    if se == 0:
        return a.mean != b.mean
    terms = [e.se**4 / (e.seeds - 1) for e in (a, b) if e.seeds >= 2]
    critical = Z_LEVEL if not terms else float(stats.t.ppf(0.975, se**4 / sum(terms)))
    return abs(a.mean - b.mean) > critical * se


@dataclass(frozen=True)
class BudgetAnswer:
    """The answer at one accuracy budget: the configuration that leaks least among those
    within it, the runner-up, whether they differ, the seeds that would tell them apart, and
    DP-SGD at the answer's accuracy."""

    budget: float
    floor: float
    best: dict[str, Any] | None
    runner_up: dict[str, Any] | None
    distinguishable: bool | None
    seeds_needed: int | None
    dp: tuple[float, float, float] | None
    dp_verdict: str | None


@dataclass(frozen=True)
class Answer:
    """The answers at every budget, with what they were read against."""

    leakage: str
    accuracy: str
    reference: dict[str, Any]
    reference_kind: str  # "undefended" or "most accurate"
    budgets: list[BudgetAnswer]
    dp_range: tuple[float, float] | None


def answer(
    df: pd.DataFrame,
    objectives: Sequence[Objective],
    budgets: Sequence[float] = BUDGETS,
    accuracy: str = "test_acc",
) -> Answer:
    """Return the answer of the sweep `df` at each accuracy budget (see the module's rules).

    Raises AnalysisError (one line) where the objectives hold no leakage to minimise or no
    completed configuration measured both accuracy and leakage.
    """
    objective = leakage_objective(objectives)
    if objective is None:
        raise AnalysisError(
            f"no answer: the objectives {', '.join(map(str, objectives))} hold no leakage to "
            "minimise"
        )
    leak = objective.column
    base = leak.removesuffix("_excess")
    configs = configurations(df, list(dict.fromkeys([accuracy, leak, base])))
    if configs.empty:
        raise AnalysisError(f"no answer: no completed trial measured both {accuracy} and {leak}")
    undefended = configs[configs["kind"] == "none"]
    pool, kind = (undefended, "undefended") if not undefended.empty else (configs, "most accurate")
    reference = pool.sort_values(accuracy, ascending=False).iloc[0].to_dict()
    dp = configs[configs["kind"] == "dp"]
    curve = (
        DpCurve(
            acc=dp[accuracy].to_numpy(float),
            tpr=dp[leak].to_numpy(float),
            lo=dp[f"{leak}_lo"].to_numpy(float),
            hi=dp[f"{leak}_hi"].to_numpy(float),
            weight=dp["seeds"].to_numpy(float),
        )
        if not dp.empty
        else None
    )
    ranked = configs.sort_values([leak, accuracy], ascending=[True, False], kind="stable")
    out = []
    for budget in sorted(budgets):
        floor = float(reference[accuracy]) - budget / 100
        eligible = ranked[ranked[accuracy] >= floor - 1e-12]
        best = eligible.iloc[0].to_dict() if len(eligible) else None
        runner = eligible.iloc[1].to_dict() if len(eligible) > 1 else None
        apart = needed = None
        if best is not None and runner is not None:
            a, b = _estimate_of(best, leak), _estimate_of(runner, leak)
            apart = distinguishable(a, b)
            needed = None if apart else seeds_to_separate(a, b)
        band = curve.at(float(best[accuracy])) if (curve is not None and best) else None
        dp_verdict = (
            verdict(best[f"{leak}_lo"], best[f"{leak}_hi"], band)
            if best is not None and curve is not None
            else None
        )
        out.append(BudgetAnswer(budget, floor, best, runner, apart, needed, band, dp_verdict))
    return Answer(
        leakage=leak,
        accuracy=accuracy,
        reference=reference,
        reference_kind=kind,
        budgets=out,
        dp_range=curve.acc_range if curve is not None else None,
    )


def _points(budget: float) -> str:
    return f"{budget:g} point" + ("" if budget == 1 else "s")


#: What the leakage columns the answer reads most often measure.
DESCRIPTIONS = {
    "adv": "the best attack's membership advantage (TPR - FPR)",
    "adv_excess": "how far the best attack's advantage clears what chance reaches (its "
    "permutation null's 95th percentile; 0: within chance)",
    "dtc_adv": "the DtC advantage",
    "dtc_adv_excess": "how far the DtC advantage clears its permutation null",
}


def _leakage_text(config: Mapping[str, Any], leak: str) -> str:
    """Return ``leak mean [lo, hi]`` with its seeds, and the statistic against chance: its
    null, or for an excess the statistic and its null."""
    seeds = int(config["seeds"])
    over = f" over {seeds} seeds" if seeds > 1 else ""
    text = f"`{leak}` {_estimate_of(config, leak).text()}{over}"
    base = leak.removesuffix("_excess")
    null = config.get(f"{base}_null")
    if null is None or not np.isfinite(null):
        return text
    if base != leak:
        return text + f" (`{base}` {fmt(config.get(base))} against chance {fmt(null)})"
    return text + f", chance level (permutation null's 95th percentile) {fmt(null)}"


def _seeds_text(budget: BudgetAnswer, leak: str) -> str:
    if budget.runner_up is None:
        return "It is the only configuration within this budget."
    runner = budget.runner_up
    line = (
        f"Runner-up: **{runner['config']}**, test accuracy {fmt(runner['test_acc'])}, "
        f"{_leakage_text(runner, leak)}. "
    )
    if budget.distinguishable is None:
        return line + (
            f"Whether the two differ is unknown: `{leak}` carries no interval to judge the "
            "difference by."
        )
    if budget.distinguishable:
        return line + "The two are distinguishable (their difference exceeds its noise)."
    line += "The two are **not distinguishable** at this noise"
    if budget.seeds_needed is None and leak.endswith("_excess") and runner[leak] == 0:
        return line + (
            ": both lie within chance (no excess over the permutation null), so this "
            "objective cannot order them; the more accurate is named."
        )
    if budget.seeds_needed is None:
        return line + ": their leakage is equal, and no number of seeds would separate them."
    have = max(int(budget.best["seeds"]), int(runner["seeds"])) if budget.best else 1
    more = max(1, budget.seeds_needed - have)
    return (
        line + f": about {budget.seeds_needed} seeds of each ({more} more) would tell them "
        "apart at the observed spread (5% test, 80% power)."
    )


def _dp_text(budget: BudgetAnswer, leak: str, dp_range: tuple[float, float] | None) -> str:
    if dp_range is None:  # said once, before the budgets
        return ""
    if budget.dp is None:
        low, high = dp_range
        return (
            f"DP-SGD at this accuracy: not measured (the sweep's DP-SGD trials reach "
            f"{fmt(low)} to {fmt(high)}; nothing is extrapolated)."
        )
    value, lo, hi = budget.dp
    words = {LESS: "leaks less than", MORE: "leaks more than", SAME: "is not distinguishable from"}
    return (
        f"DP-SGD at this accuracy reaches `{leak}` {fmt(value)} [{fmt(lo)}, {fmt(hi)}] "
        f"(interpolated between its trials): the answer {words.get(budget.dp_verdict or '', '')}"
        " DP-SGD."
    )


def _same_answer(a: BudgetAnswer, b: BudgetAnswer) -> bool:
    """Return whether two budgets name the same answer and runner-up."""

    def name(config: Mapping[str, Any] | None) -> str | None:
        return None if config is None else str(config["config"])

    return name(a.best) == name(b.best) and name(a.runner_up) == name(b.runner_up)


def answer_markdown(result: Answer) -> str:
    """Return the answer in words a practitioner reads without the rest of the report: one
    paragraph per budget, with the numbers."""
    leak, acc = result.leakage, result.accuracy
    ref = result.reference
    described = f", {DESCRIPTIONS[leak]}" if leak in DESCRIPTIONS else ""
    lines = [
        f"Leakage is `{leak}`{described}, lower is better; accuracy is `{acc}`. Budgets are "
        "read against "
        + (
            f"the undefended model's accuracy, {fmt(ref[acc])}"
            if result.reference_kind == "undefended"
            else f"the most accurate configuration ({ref['config']}, {fmt(ref[acc])}; the sweep "
            "has no undefended trial)"
        )
        + f"; its leakage: {_leakage_text(ref, leak)}."
        + ("" if result.dp_range else " The sweep has no DP-SGD trial to compare with."),
        "",
    ]
    previous: BudgetAnswer | None = None
    for b in result.budgets:
        head = f"- **Giving up at most {_points(b.budget)}** (`{acc}` >= {fmt(b.floor)}): "
        if b.best is None:
            lines.append(head + "no configuration is that accurate.")
            continue
        if previous is not None and _same_answer(previous, b):
            lines.append(head + f"the same as within {_points(previous.budget)}.")
            continue
        previous = b
        best = b.best
        action = (
            "keep the model **undefended** (no mechanism on)"
            if best["kind"] == "none"
            else f"turn on **{best['config']}**"
        )
        text = (
            f"{action}: test accuracy {_estimate_of(best, acc).text()}, "
            f"{_leakage_text(best, leak)}. "
        )
        text += _seeds_text(b, leak) + " " + _dp_text(b, leak, result.dp_range)
        lines.append(head + text.rstrip())
    return "\n".join(lines)


def front_within_noise(df: pd.DataFrame, objectives: Sequence[Objective]) -> pd.Series:
    """Return a boolean Series over `df`'s completed trials with finite objectives: True for
    each trial that no other trial clearly beats (see the module's rule).

    Trial a clearly beats b when, in every objective, a's 95% interval lies wholly on the
    better side of b's (never where either has no interval: its noise is unknown), and in
    every leakage objective
    with a permutation null, b's value lies above its null. The plain Pareto front is a subset.
    """
    ok = ok_trials(df)
    columns = [o.column for o in objectives]
    values = ok[columns].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    ok = ok[np.all(np.isfinite(values), axis=1)]
    records = ok.to_dict("records")
    n = len(records)
    bounds = np.zeros((n, len(objectives), 2))
    above_null = np.ones((n, len(objectives)), dtype=bool)
    for i, row in enumerate(records):
        for j, objective in enumerate(objectives):
            e = estimate([row], objective.column)
            assert e is not None
            # unknown noise: an interval as wide as can be, so that it beats and is beaten by
            # nothing in this objective
            bounds[i, j] = (e.lo, e.hi) if e.se is not None else (-np.inf, np.inf)
            null = row_null(row, objective.column)
            if objective.column not in ACCURACY and null is not None:
                above_null[i, j] = e.mean > null
    kept = np.ones(n, dtype=bool)
    for b in range(n):
        for a in range(n):
            if a == b:
                continue
            clear = True
            for j, objective in enumerate(objectives):
                if objective.direction == "max":
                    clear &= bool(bounds[a, j, 0] > bounds[b, j, 1])
                else:
                    clear &= bool(bounds[a, j, 1] < bounds[b, j, 0]) and bool(above_null[b, j])
                if not clear:
                    break
            if clear:
                kept[b] = False
                break
    return pd.Series(kept, index=ok.index, name="within_noise")


def budgets_table(result: Answer) -> str:
    """Return the answers as one Markdown table: budget, answer, its accuracy and leakage,
    the runner-up, distinguishable, seeds needed, DP-SGD at that accuracy."""
    leak = result.leakage
    rows = []
    for b in result.budgets:
        best, runner = b.best or {}, b.runner_up or {}
        rows.append(
            [
                _points(b.budget),
                best.get("config", "-"),
                fmt(best.get(result.accuracy)),
                _estimate_of(best, leak).text() if best else "-",
                runner.get("config", "-"),
                "-" if b.distinguishable is None else ("yes" if b.distinguishable else "no"),
                "-" if b.seeds_needed is None else str(b.seeds_needed),
                "-" if b.dp is None else fmt(b.dp[0]),
            ]
        )
    header = ["budget", "answer", "test_acc", leak, "runner-up", "apart", "seeds", "DP-SGD"]
    return markdown_table(header, rows)


def answer_text(
    df: pd.DataFrame, objectives: Sequence[Objective], budgets: Sequence[float] = BUDGETS
) -> str:
    """Return :func:`answer_markdown` of the sweep `df`, or one line saying why there is no
    answer (no leakage objective, no completed trial)."""
    try:
        return answer_markdown(answer(df, objectives, budgets))
    except AnalysisError as err:
        return f"({err})"


#: A front holding more than this share of the trials says little about which is best.
LARGE_FRONT = 0.5


def front_summary(df: pd.DataFrame, objectives: Sequence[Objective]) -> tuple[str, pd.DataFrame]:
    """Return a sentence on the plain Pareto front and the front within noise, and the
    trials within noise (labelled, best first by the first objective) with an ``on_front``
    column (on the plain Pareto front). The sentence says why where the plain front holds
    more than half of the trials."""
    from raymia.results.front import pareto_front
    from raymia.results.labels import add_labels

    ok = ok_trials(df)
    plain = pareto_front(df, objectives)
    kept = front_within_noise(df, objectives)
    within = add_labels(ok.loc[kept[kept].index]).copy()
    within["on_front"] = within.index.isin(plain.index)
    first = objectives[0]
    within = within.sort_values(first.column, ascending=first.direction == "min", kind="stable")
    names = ", ".join(map(str, objectives))
    text = (
        f"{len(plain)} of {len(ok)} completed trials are on the Pareto front over {names}; "
        f"{len(within)} are within noise of it (no other trial beats them in every objective "
        "by more than its 95% interval, a leakage below its permutation null counting as "
        "chance)."
    )
    if len(ok) and len(plain) > LARGE_FRONT * len(ok):
        text += (
            " The front holds most of the trials: each is best at some trade-off between the "
            f"{len(objectives)} objectives (and noise adds to that), so the front alone does "
            "not single one out; the answer above fixes the accuracy and compares the leakage."
        )
    return text, within
