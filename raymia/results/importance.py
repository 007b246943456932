"""Which mechanisms matter: each mechanism's importance for each objective of a sweep.

From a sweep's completed rows (`raymia.results.rows.load_results`) this module builds an in-memory
Optuna study, one parameter per mechanism the sweep varied, and asks one of Optuna's
importance evaluators how much of each objective's variation each mechanism explains. It
never imports Ray and never reads the sweep's journal: the rows are the record of what ran
(a mechanism switched off, by the search or by DP-SGD's precedence, is strength 0 there).

Conventions:

- A mechanism is a parameter when its strength takes more than one value over the completed
  trials; an off mechanism is strength 0, so one parameter carries both whether it is on and
  how strong it is. Its domain is the space's range for it (with 0 added where it can be
  off), else the range observed.
- A mechanism drawn on a log scale (a ``loguniform`` entry in the space, or, without a space,
  strengths spanning two decades or more) is measured in log10 of its strength, with off
  placed one decade below its lowest strength, so that 1e-4 and 1e-3 are as far apart as
  1e-2 and 1e-1.
- Trials of one configuration (the same strengths, several seeds) count once, with their
  objectives averaged.
- Importances are normalized per objective: each column sums to 1 (a share of the
  explained variation), unless no mechanism explains anything, when the column is 0.

The default evaluator is fANOVA (`optuna.importance.FanovaImportanceEvaluator`, a seeded
random forest and the variance decomposition of Hutter et al. 2014). PED-ANOVA (Optuna's
default) is available as ``method="ped-anova"``; on simulated sweeps of 16-64 trials where
one mechanism's on/off switch alone moves an objective, it named that mechanism first in 0-4
of 10 simulations against fANOVA's 10 of 10 (its Parzen estimators see few trials in the top
quantile at these budgets), so fANOVA is the default.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from raymia.mechanisms import REGISTRY
from raymia.results.front import Objective
from raymia.results.labels import active_mechanisms, config_label, mechanisms_label
from raymia.results.rows import ok_trials
from raymia.results.tables import fmt, front_trials, markdown_table

__all__ = [
    "METHODS",
    "MAX_CONFIGURATIONS",
    "MIN_TRIALS",
    "front_configurations",
    "front_configurations_markdown",
    "front_mechanism_sets",
    "front_mechanism_sets_markdown",
    "importance_markdown",
    "importance_summary",
    "mechanism_importance",
    "varied_mechanisms",
]

#: The importance evaluators `mechanism_importance` offers.
METHODS = ("fanova", "ped-anova")
#: Fewer distinct completed configurations than this are too few to rank mechanisms.
MIN_TRIALS = 8
#: fANOVA's forest: 32 trees ranked the driving mechanism first as reliably as Optuna's 64 on
#: the simulated sweeps of the tests, in half the time.
FANOVA_TREES = 32
#: At most this many configurations (a seeded random sample of them) go into one importance
#: estimate: fANOVA's time grows faster than linearly (about 3 s for 200 configurations and
#: three objectives on one core, a minute for 1,000).
MAX_CONFIGURATIONS = 200
#: Strengths spanning at least this ratio (largest / smallest on) count as log-scaled.
_LOG_SPAN = 100.0
#: Off sits this many decades below a log-scaled mechanism's lowest strength.
_OFF_DECADES = 1.0


def varied_mechanisms(df: pd.DataFrame) -> list[str]:
    """Return the mechanisms (registry order) whose strength takes more than one value over
    the completed trials of ``df``; a missing or NaN strength counts as 0 (off)."""
    ok = ok_trials(df)
    names = []
    for name in REGISTRY:
        if name in ok.columns:
            values = pd.to_numeric(ok[name], errors="coerce").fillna(0.0)
            if values.nunique() > 1:
                names.append(name)
    return names


def _space_entry(space: Any, name: str) -> tuple[list[float], bool] | None:
    """Return (the strengths a space's entry for ``name`` can reach at its ends, whether it is
    log-uniform), or None when the space has no readable distribution for it."""
    try:
        kind, args = space.mechanisms[name]
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    if kind in ("uniform", "loguniform", "int", "choice") and isinstance(args, list) and args:
        try:
            return [float(a) for a in args], kind == "loguniform"
        except (TypeError, ValueError):
            return None
    return None


def _encode(
    strengths: np.ndarray, space_values: Sequence[float], log: bool | None
) -> tuple[np.ndarray, float, float]:
    """Return one mechanism's strengths (0 = off) as parameter values, with the low and high
    ends of their domain (see the module's conventions); ``log`` None: judge from the data."""
    reach = np.concatenate([strengths[strengths > 0], [v for v in space_values if v > 0]])
    if log is None:
        log = bool(reach.size) and float(reach.max() / reach.min()) >= _LOG_SPAN
    if not log or not reach.size:
        ends = np.concatenate([strengths, space_values, [0.0]])
        return strengths, float(ends.min()), float(ends.max())
    floor = math.log10(float(reach.min())) - _OFF_DECADES
    logged = np.where(strengths > 0, np.log10(np.where(strengths > 0, strengths, 1.0)), floor)
    return logged, floor, math.log10(float(reach.max()))


def _configurations(
    df: pd.DataFrame, names: list[str], objectives: Sequence[Objective]
) -> pd.DataFrame:
    """Return one row per configuration (the strengths of ``names``): the objectives averaged
    over its completed trials with finite values in every objective."""
    columns = [o.column for o in objectives]
    ok = ok_trials(df)
    rows = pd.DataFrame({n: pd.to_numeric(ok[n], errors="coerce").fillna(0.0) for n in names})
    for column in columns:
        rows[column] = pd.to_numeric(ok[column], errors="coerce")
    rows = rows[np.isfinite(rows[columns].to_numpy(dtype=float)).all(axis=1)]
    if not names:
        return rows
    return rows.groupby(names, as_index=False, sort=False)[columns].mean()


def mechanism_importance(
    df: pd.DataFrame,
    objectives: Sequence[Objective],
    space: Any = None,
    *,
    method: str = "fanova",
    seed: int = 0,
    max_configurations: int = MAX_CONFIGURATIONS,
) -> pd.DataFrame:
    """Return each varied mechanism's importance for each objective, from ``df``'s completed
    trials.

    ``space`` (a `raymia.sweep.space.SearchSpace`, optional) gives each mechanism's domain and
    scale; ``method`` is ``fanova`` (default) or ``ped-anova``; ``seed`` seeds fANOVA's forest
    and the sample of at most ``max_configurations`` configurations the estimate uses.
    The frame's index is the mechanism (named ``mechanism``), one column per objective (its
    result column), values in [0, 1] summing to 1 per column (0 throughout where no mechanism
    explains anything); rows are sorted by mean importance over the objectives, highest
    first. Empty (no rows) when no mechanism varies or fewer than 2 configurations
    completed. Raises ValueError for an unknown method or a missing objective column.
    """
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.importance import (
        FanovaImportanceEvaluator,
        PedAnovaImportanceEvaluator,
        get_param_importances,
    )

    if method not in METHODS:
        raise ValueError(f"importance method {method!r}: expected one of {', '.join(METHODS)}")
    columns = [o.column for o in objectives]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"objective column(s) {', '.join(missing)} not in the trials table")
    names = varied_mechanisms(df)
    empty = pd.DataFrame(columns=columns, index=pd.Index([], name="mechanism"), dtype=float)
    configs = _configurations(df, names, objectives)
    if not names or len(configs) < 2:
        return empty
    if len(configs) > max_configurations:
        configs = configs.sample(n=max_configurations, random_state=seed)

    encoded: dict[str, np.ndarray] = {}
    distributions: dict[str, FloatDistribution] = {}
    for name in names:
        entry = _space_entry(space, name)
        space_values, log = entry if entry else ([], None)
        encoded[name], low, high = _encode(configs[name].to_numpy(dtype=float), space_values, log)
        distributions[name] = FloatDistribution(low, high)

    objective_values = configs[columns].to_numpy(dtype=float)
    trials = [
        optuna.trial.create_trial(
            params={n: float(encoded[n][i]) for n in names},
            distributions=distributions,
            values=[float(v) for v in objective_values[i]],
        )
        for i in range(len(configs))
    ]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        directions=["maximize" if o.direction == "max" else "minimize" for o in objectives]
    )
    study.add_trials(trials)

    table = {}
    for k, obj in enumerate(objectives):
        if np.ptp(objective_values[:, k]) == 0:
            table[obj.column] = dict.fromkeys(names, 0.0)
            continue
        sign = -1.0 if obj.direction == "max" else 1.0  # PED-ANOVA ranks low values best
        if method == "fanova":
            evaluator: Any = FanovaImportanceEvaluator(n_trees=FANOVA_TREES, seed=seed)
        else:
            quantile = min(0.5, max(0.1, 5 / len(configs)))
            evaluator = PedAnovaImportanceEvaluator(target_quantile=quantile)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental-feature and small-sample notes
            raw = get_param_importances(
                study,
                evaluator=evaluator,
                params=names,
                target=lambda t, k=k, sign=sign: sign * t.values[k],
                normalize=False,
            )
        total = sum(raw.values())
        table[obj.column] = {n: (raw[n] / total if total > 0 else 0.0) for n in names}
    out = pd.DataFrame(table).reindex(index=names, columns=columns).astype(float)
    out.index.name = "mechanism"
    order = out.mean(axis=1).sort_values(ascending=False, kind="stable").index
    return out.loc[order]


def importance_markdown(table: pd.DataFrame, objectives: Sequence[Objective]) -> str:
    """Return the importance table as Markdown: one row per mechanism, one column per
    objective (``test_acc ↑``), shares as percentages; the largest of each column in bold."""
    header = ["mechanism"] + [
        f"{o.column} {'↑' if o.direction == 'max' else '↓'}" for o in objectives
    ]
    tops = {
        o.column: table[o.column].idxmax() if table[o.column].max() > 0 else None
        for o in objectives
    }
    rows = []
    for name, values in table.iterrows():
        cells: list[Any] = [str(name)]
        for o in objectives:
            text = f"{100 * values[o.column]:.0f}%"
            cells.append(f"**{text}**" if tops[o.column] == name else text)
        rows.append(cells)
    return markdown_table(header, rows)


def front_configurations(df: pd.DataFrame, objectives: Sequence[Objective]) -> pd.DataFrame:
    """Return the Pareto front's trials with their active mechanisms, best first in the first
    objective: columns ``trial_id``, ``active`` (`raymia.results.labels.config_label`),
    ``mechanisms``
    (the names alone, `raymia.results.labels.mechanisms_label`: ``label_smoothing+dropout`` or
    ``none``), ``n_on`` (how many mechanisms are on) and the objective columns."""
    front = front_trials(df, list(objectives))
    records = front.to_dict("records")
    out = pd.DataFrame(
        {
            "trial_id": front["trial_id"].astype(str).to_numpy(),
            "active": [config_label(r) for r in records],
            "mechanisms": [mechanisms_label(r) for r in records],
            "n_on": [len(active_mechanisms(r)) for r in records],
        }
    )
    for o in objectives:
        out[o.column] = front[o.column].to_numpy(dtype=float)
    return out


def importance_summary(
    df: pd.DataFrame,
    objectives: Sequence[Objective],
    space: Any = None,
    *,
    method: str = "fanova",
    min_trials: int = MIN_TRIALS,
    max_configurations: int = MAX_CONFIGURATIONS,
) -> str:
    """Return the Markdown that says which mechanisms matter: the importance table with a
    sentence naming each objective's most important mechanism, or one line saying why there
    is none (fewer than ``min_trials`` completed configurations, or no mechanism varied)."""
    if ok_trials(df).empty:
        return "No completed trial: no importance to measure."
    names = varied_mechanisms(df)
    n = len(_configurations(df, names, objectives)) if names else 0
    if not names:
        return "No mechanism varied over the completed trials: no importance to measure."
    if n < min_trials:
        return (
            f"{n} completed configuration(s), fewer than {min_trials}: not enough to say "
            "which mechanisms matter."
        )
    table = mechanism_importance(
        df, objectives, space, method=method, max_configurations=max_configurations
    )
    leaders = []
    for o in objectives:
        column = table[o.column]
        if column.max() > 0:
            leaders.append(f"`{o.column}`: {column.idxmax()} ({100 * column.max():.0f}%)")
    evaluator = "fANOVA" if method == "fanova" else "PED-ANOVA"
    over = f"{n}" if n <= max_configurations else f"a random {max_configurations} of {n}"
    text = (
        f"Share of each objective's variation over {over} completed configurations that each "
        f"mechanism explains ({evaluator}; an off mechanism is strength 0)."
    )
    if n < 2 * min_trials:
        text += f" With {n} configurations these shares are a rough guide."
    if leaders:
        text += " Most important: " + "; ".join(leaders) + "."
    return text + "\n\n" + importance_markdown(table, objectives)


def front_configurations_markdown(front: pd.DataFrame, objectives: Sequence[Objective]) -> str:
    """Return `front_configurations`' frame as a Markdown table (trial, mechanisms on, count,
    objectives)."""
    header = ["trial", "mechanisms on", "n"] + [o.column for o in objectives]
    rows = [
        [str(r["trial_id"]), r["active"], str(int(r["n_on"]))]
        + [fmt(r[o.column]) for o in objectives]
        for r in front.to_dict("records")
    ]
    return markdown_table(header, rows)


def front_mechanism_sets(front: pd.DataFrame) -> pd.DataFrame:
    """Return the sets of mechanisms the front's configurations switch on, one row per set:
    ``mechanisms`` (names, ``label_smoothing+dropout``), ``n_on``, ``trials`` (how many
    front configurations use exactly that set) and ``trial_ids`` (comma-separated); fewest
    mechanisms first, then most trials. ``front`` is `front_configurations`' frame."""
    if front.empty:
        return pd.DataFrame(columns=["mechanisms", "n_on", "trials", "trial_ids"])
    groups = front.groupby(["mechanisms", "n_on"], sort=False)["trial_id"]
    out = groups.agg(trials="size", trial_ids=lambda ids: ", ".join(map(str, ids)))
    out = out.reset_index()
    return out.sort_values(["n_on", "trials"], ascending=[True, False], kind="stable").reset_index(
        drop=True
    )


def front_mechanism_sets_markdown(sets: pd.DataFrame) -> str:
    """Return `front_mechanism_sets`' frame as a Markdown table (mechanisms on, how many,
    front trials)."""
    rows = [
        [r["mechanisms"], str(int(r["n_on"])), f"{int(r['trials'])}: {r['trial_ids']}"]
        for r in sets.to_dict("records")
    ]
    return markdown_table(["mechanisms on", "n", "front trials"], rows)
