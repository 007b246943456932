"""Pareto analysis of sweep results: which trials trade accuracy for privacy best.

Pure functions over numpy arrays and the `trials.parquet` frame (no Ray import). The
dominance and hypervolume work is done by `moocore`; this module adds objective directions
(``max`` / ``min``), the reference-point convention for the known result columns, and the
filtering of failed or incomplete trials.

Conventions:

- An objective is a result column plus a direction, written ``name:max`` or ``name:min``
  (``acc`` is an alias for ``test_acc``), e.g. ``"acc:max,adv:min,dtc_adv:min"``.
- Point ``a`` dominates ``b`` when ``a`` is at least as good in every objective and strictly
  better in one. Identical points do not dominate each other, so duplicates of a
  non-dominated point are all non-dominated and share a rank.
- Hypervolume is measured against a reference point that stands for the worst acceptable
  value of each objective (see `default_reference`); a point that is not strictly better
  than the reference in every objective contributes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

import moocore
import numpy as np
import pandas as pd

from raymia.results.rows import ok_trials

__all__ = [
    "Objective",
    "default_reference",
    "dominance_rank",
    "hypervolume",
    "hypervolume_trace",
    "non_dominated",
    "parse_objectives",
    "pareto_front",
    "rank_trials",
]

Direction = Literal["max", "min"]

#: Short names accepted by `parse_objectives`, mapped to their results-schema column.
ALIASES: dict[str, str] = {"acc": "test_acc"}

_EXPECTED_FORM = "expected name:max|min, e.g. 'acc:max,adv:min'"


@dataclass(frozen=True)
class Objective:
    """One optimisation objective: a results column and whether larger or smaller is better."""

    column: str
    direction: Direction

    def __post_init__(self) -> None:
        if self.direction not in ("max", "min"):
            raise ValueError(
                f"objective {self.column!r}: direction must be 'max' or 'min', "
                f"got {self.direction!r}"
            )

    def __str__(self) -> str:
        return f"{self.column}:{self.direction}"


def parse_objectives(spec: str) -> list[Objective]:
    """Parse a comma-separated objective spec such as ``"acc:max,adv:min,dtc_adv:min"``.

    Each piece is ``name:max`` or ``name:min``; whitespace around pieces is ignored and
    ``acc`` is an alias for the ``test_acc`` column. Returns the objectives in spec order.
    Raises ValueError (one line, naming the bad piece) on an empty spec, a malformed piece,
    an unknown direction or a column named twice.
    """
    if not spec or not spec.strip():
        raise ValueError(f"empty objective spec {spec!r}: {_EXPECTED_FORM}")
    objectives: list[Objective] = []
    seen: set[str] = set()
    for raw in spec.split(","):
        piece = raw.strip()
        name, sep, direction = piece.partition(":")
        name, direction = name.strip(), direction.strip().lower()
        if not sep or not name or direction not in ("max", "min"):
            raise ValueError(f"bad objective {piece!r} in {spec!r}: {_EXPECTED_FORM}")
        column = ALIASES.get(name, name)
        if column in seen:
            raise ValueError(f"objective column {column!r} named twice in {spec!r}")
        seen.add(column)
        objectives.append(Objective(column, cast(Direction, direction)))
    return objectives


def _as_points(points: np.ndarray, directions: Sequence[str]) -> tuple[np.ndarray, list[bool]]:
    """Validate a (n, m) point array against m directions; return it as float and maximise flags."""
    pts = np.asarray(points, dtype=float)
    if pts.ndim != 2:
        raise ValueError(f"points must be a 2-D array (n points x m objectives), got {pts.ndim}-D")
    dirs = list(directions)
    if len(dirs) != pts.shape[1]:
        raise ValueError(f"{pts.shape[1]} objective columns but {len(dirs)} directions {dirs}")
    bad = [d for d in dirs if d not in ("max", "min")]
    if bad:
        raise ValueError(f"directions must be 'max' or 'min', got {bad}")
    if not np.all(np.isfinite(pts)):
        raise ValueError("points contain NaN or infinite values; drop those rows first")
    return pts, [d == "max" for d in dirs]


def non_dominated(points: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Return a boolean mask over the rows of ``points``: True where no other row dominates it.

    ``points`` is (n, m); ``directions[j]`` is ``"max"`` or ``"min"`` for column j. Duplicated
    non-dominated points are all marked True. Raises ValueError on non-finite values.
    """
    pts, maximise = _as_points(points, directions)
    if len(pts) == 0:
        return np.zeros(0, dtype=bool)
    # keep_weakly=True: moocore otherwise keeps only the first copy of a duplicated point.
    return np.asarray(moocore.is_nondominated(pts, maximise=maximise, keep_weakly=True), bool)


def dominance_rank(points: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Return each row's non-dominated-sorting rank as an int64 array (0 = the Pareto front).

    Rank r is the front left after peeling fronts 0..r-1 away; duplicates share a rank.
    Raises ValueError on non-finite values.
    """
    pts, maximise = _as_points(points, directions)
    if len(pts) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(moocore.pareto_rank(pts, maximise=maximise), dtype=np.int64)


def hypervolume(points: np.ndarray, directions: Sequence[str], reference: Sequence[float]) -> float:
    """Return the hypervolume dominated by ``points`` and bounded by ``reference``.

    The reference is the worst corner of the measured region, given in the columns' own units
    and directions (e.g. accuracy 0, advantage 1). Objectives to maximise are negated, with
    the reference, so moocore measures a minimisation problem. Points not strictly better than
    the reference in every objective contribute nothing; an empty set returns 0.0.
    """
    pts, maximise = _as_points(points, directions)
    ref = np.asarray(reference, dtype=float)
    if ref.shape != (pts.shape[1],) or not np.all(np.isfinite(ref)):
        raise ValueError(
            f"reference must be {pts.shape[1]} finite values, one per objective, got {reference!r}"
        )
    if len(pts) == 0:
        return 0.0
    sign = np.where(maximise, -1.0, 1.0)
    return float(moocore.hypervolume(pts * sign, ref=ref * sign))


def _bounded_unit_column(column: str) -> bool:
    """True for result columns known to lie in [0, 1]: accuracies, advantages and their
    excess over the null, AUCs, TPRs."""
    return column.endswith(("acc", "adv", "adv_excess", "auc")) or "_tpr_at_" in column


def default_reference(objectives: Sequence[Objective]) -> list[float]:
    """Return the default hypervolume reference point: the worst value of each objective.

    Defined for columns bounded in [0, 1]: accuracies (``test_acc``, ``train_acc``),
    advantages (``adv``, ``<attack>_adv``, ``dtc_adv``) and their excess over the null
    (``adv_excess``, ``dtc_adv_excess``), AUCs (``*_auc``) and TPRs
    (``*_tpr_at_*``). The worst value is 0 for ``max`` and 1 for ``min``, so with
    ``acc:max,adv:min`` the reference is ``[0.0, 1.0]`` and the hypervolume is the area of
    (accuracy, 1 - advantage) that the front dominates. Raises ValueError for any other
    column: pass an explicit reference for those.
    """
    reference = []
    for obj in objectives:
        if not _bounded_unit_column(obj.column):
            raise ValueError(
                f"no default hypervolume reference for column {obj.column!r}; pass reference="
            )
        reference.append(0.0 if obj.direction == "max" else 1.0)
    return reference


def _check_columns(df: pd.DataFrame, objectives: Sequence[Objective]) -> None:
    """Raise ValueError naming any objective column that is missing or not numeric."""
    if not objectives:
        raise ValueError("at least one objective is required")
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
    for obj in objectives:
        if obj.column not in numeric:
            what = "is not numeric" if obj.column in df.columns else "is not a column"
            raise ValueError(
                f"objective column {obj.column!r} {what}; numeric columns: {', '.join(numeric)}"
            )


def _sort_best_first(df: pd.DataFrame, objectives: Sequence[Objective]) -> pd.DataFrame:
    """Sort by the objectives in order, each best first (stable, so ties keep row order)."""
    return df.sort_values(
        [o.column for o in objectives],
        ascending=[o.direction == "min" for o in objectives],
        kind="stable",
    )


def rank_trials(df: pd.DataFrame, objectives: Sequence[Objective]) -> pd.DataFrame:
    """Return the completed trials with finite objective values and a ``pareto_rank`` column.

    Keeps rows with status == "ok" (when a status column exists) whose objective values are
    all finite, adds ``pareto_rank`` (0 = Pareto front, see `dominance_rank`) and sorts by
    rank, then by the objectives in order, best first. The original index is kept. Raises
    ValueError naming an objective column that is missing or not numeric.
    """
    _check_columns(df, objectives)
    columns = [o.column for o in objectives]
    rows = ok_trials(df)
    values = rows[columns].to_numpy(dtype=float)
    rows = rows[np.all(np.isfinite(values), axis=1)].copy()
    rows["pareto_rank"] = dominance_rank(
        rows[columns].to_numpy(dtype=float), [o.direction for o in objectives]
    )
    rows = _sort_best_first(rows, objectives)
    return rows.sort_values("pareto_rank", kind="stable")


def pareto_front(df: pd.DataFrame, objectives: Sequence[Objective]) -> pd.DataFrame:
    """Return the Pareto-optimal completed trials, sorted by the first objective, best first.

    Only rows with status == "ok" (when a status column exists) and finite values in every
    objective take part. Ties on the first objective are broken by the next objectives. The
    original index is kept and no column is added. Raises ValueError naming an objective
    column that is missing or not numeric.
    """
    ranked = rank_trials(df, objectives)
    return ranked[ranked["pareto_rank"] == 0].drop(columns="pareto_rank")


def hypervolume_trace(
    df: pd.DataFrame,
    objectives: Sequence[Objective],
    reference: Sequence[float] | None = None,
) -> np.ndarray:
    """Return the hypervolume after each completed trial, to see whether the search converges.

    The ok trials (status == "ok" when a status column exists) are ordered by ``finished_at``
    when that column exists (stable; missing times last), else by row order. Element k-1 of
    the returned float array (length = number of ok trials) is the hypervolume of the first k
    of them; a trial with a non-finite objective value adds nothing. The trace never
    decreases. ``reference`` defaults to `default_reference` (objectives).
    """
    _check_columns(df, objectives)
    ref = default_reference(objectives) if reference is None else list(reference)
    rows = ok_trials(df)
    if "finished_at" in rows.columns:
        rows = rows.sort_values("finished_at", kind="stable", na_position="last")
    directions = [o.direction for o in objectives]
    values = rows[[o.column for o in objectives]].to_numpy(dtype=float)
    trace = np.zeros(len(values), dtype=float)
    front = np.empty((0, len(objectives)), dtype=float)
    current = 0.0
    for k, point in enumerate(values):
        if np.all(np.isfinite(point)):
            # Dominated points never change the hypervolume, so only the front is carried.
            front = np.vstack([front, point])
            front = front[non_dominated(front, directions)]
            current = hypervolume(front, directions, ref)
        trace[k] = current
    return trace
