"""Markdown tables of results: cell formatting and the Pareto-front table, the one the sweep
prints when it ends and the analysis scripts write."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from raymia.privacy.leakage import leakage_verdict
from raymia.results.front import Objective, pareto_front
from raymia.results.labels import add_labels
from raymia.results.rows import ok_trials

__all__ = ["fmt", "front_markdown", "front_table", "front_trials", "markdown_table"]


def fmt(value: Any, digits: int = 3) -> str:
    """Return ``value`` for a table cell: floats to ``digits`` decimals, NaN/None as ``-``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Return a GitHub Markdown table; cells go through `fmt` unless already strings."""

    def cell(value: Any) -> str:
        text = value if isinstance(value, str) else fmt(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def front_trials(df: pd.DataFrame, objectives: list[Objective]) -> pd.DataFrame:
    """Return the Pareto-optimal completed trials of ``df`` over ``objectives``, labelled.

    The rows of `raymia.results.front.pareto_front` (sorted by the first objective, best first) with
    `raymia.results.labels.add_labels`' ``mechanisms_on`` and ``config`` columns.
    """
    return add_labels(pareto_front(ok_trials(df), objectives))


def _arrow(obj: Objective) -> str:
    return "↑" if obj.direction == "max" else "↓"


def front_markdown(
    front: pd.DataFrame, objectives: list[Objective], extra: Sequence[str] = ()
) -> str:
    """Return the front as a Markdown table: trial, mechanisms with strengths, seed, metrics.

    Columns: ``sweep`` and ``dataset`` when the rows span several; ``trial``; ``mechanisms``
    (name=strength, or none); ``seed``; then test accuracy, the best attack's advantage, the
    DtC advantage and any other objective column (headers carry ↑ maximised or ↓ minimised);
    ``leakage``: "no detectable leakage" where ``adv`` and ``dtc_adv`` both lie within their
    permutation nulls (`raymia.privacy.leakage.leakage_verdict`), else "detected" (or "no null");
    then the columns named in `extra`, as they are.
    """
    directions = {o.column: o for o in objectives}
    metrics = ["test_acc", "adv", "dtc_adv"]
    metrics += [o.column for o in objectives if o.column not in metrics]
    metrics = [m for m in metrics if m in front.columns]
    spans = [c for c in ("sweep", "dataset") if c in front.columns and front[c].nunique() > 1]
    header = spans + ["trial", "mechanisms", "seed"]
    header += [f"{m} {_arrow(directions[m])}" if m in directions else m for m in metrics]
    header += ["leakage", *extra]
    rows = []
    for _, row in front.iterrows():
        seed = "-" if pd.isna(row.get("seed")) else str(int(row["seed"]))
        if seed == "-" and isinstance(row.get("seeds"), str) and row["seeds"]:
            seed = row["seeds"]  # a replicate row: the mean over these seeds
        cells = [str(row[c]) for c in spans] + [str(row["trial_id"]), row["config"], seed]
        cells += [fmt(row[m]) for m in metrics]
        cells += [leakage_verdict(row), *(fmt(row.get(c)) for c in extra)]
        rows.append(cells)
    return markdown_table(header, rows)


def front_table(df: pd.DataFrame, objectives: list[Objective]) -> str:
    """Return the Pareto front of the trials ``df`` as `front_markdown`'s table, or a line
    saying there is none when no trial completed."""
    if ok_trials(df).empty:
        return "(no successful trials: no Pareto front)"
    return front_markdown(front_trials(df, objectives), objectives)
