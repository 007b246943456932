"""Tests for raymia.results.front: dominance, ranks and hypervolume against brute force and by
hand."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from raymia.results.front import (
    Objective,
    default_reference,
    dominance_rank,
    hypervolume,
    hypervolume_trace,
    non_dominated,
    pareto_front,
    parse_objectives,
    rank_trials,
)

# --- brute-force references -------------------------------------------------------------


def _dominates(a: np.ndarray, b: np.ndarray, directions: list[str]) -> bool:
    """a dominates b: at least as good everywhere and strictly better somewhere."""
    sign = np.array([1.0 if d == "min" else -1.0 for d in directions])
    a, b = a * sign, b * sign  # now smaller is better everywhere
    return bool(np.all(a <= b) and np.any(a < b))


def _brute_non_dominated(points: np.ndarray, directions: list[str]) -> np.ndarray:
    n = len(points)
    return np.array(
        [not any(_dominates(points[j], points[i], directions) for j in range(n)) for i in range(n)],
        dtype=bool,
    )


def _brute_rank(points: np.ndarray, directions: list[str]) -> np.ndarray:
    """Peel fronts one at a time."""
    rank = np.full(len(points), -1)
    remaining = np.arange(len(points))
    r = 0
    while len(remaining):
        front = _brute_non_dominated(points[remaining], directions)
        rank[remaining[front]] = r
        remaining = remaining[~front]
        r += 1
    return rank


def _point_clouds():
    """Random clouds with ties: continuous, integer grid, and explicit duplicated rows."""
    for seed, n, m in itertools.product(range(4), (1, 2, 7, 40), (2, 3)):
        rng = np.random.default_rng(seed * 1000 + n * 10 + m)
        directions = list(rng.choice(["max", "min"], size=m))
        kind = seed % 3
        if kind == 0:
            pts = rng.random((n, m))
        elif kind == 1:
            pts = rng.integers(0, 4, size=(n, m)).astype(float)  # many ties on a coarse grid
        else:
            pts = rng.random((n, m))
            pts = np.vstack([pts, pts[rng.integers(0, n, size=max(1, n // 3))]])  # duplicates
            pts = pts[rng.permutation(len(pts))]
        yield pytest.param(pts, directions, id=f"seed{seed}-n{len(pts)}-m{m}-{''.join(directions)}")


# --- dominance --------------------------------------------------------------------------


@pytest.mark.parametrize(("points", "directions"), list(_point_clouds()))
def test_non_dominated_matches_brute_force(points, directions):
    np.testing.assert_array_equal(
        non_dominated(points, directions), _brute_non_dominated(points, directions)
    )


@pytest.mark.parametrize(("points", "directions"), list(_point_clouds()))
def test_dominance_rank_matches_brute_force_peeling(points, directions):
    ranks = dominance_rank(points, directions)
    assert ranks.dtype == np.int64
    np.testing.assert_array_equal(ranks, _brute_rank(points, directions))


def test_identical_points_are_both_non_dominated():
    pts = np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0]])
    np.testing.assert_array_equal(non_dominated(pts, ["min", "min"]), [True, True, False])
    np.testing.assert_array_equal(dominance_rank(pts, ["min", "min"]), [0, 0, 1])


def test_direction_flips_the_front():
    pts = np.array([[0.9, 0.1], [0.5, 0.5]])
    np.testing.assert_array_equal(non_dominated(pts, ["max", "min"]), [True, False])
    np.testing.assert_array_equal(non_dominated(pts, ["min", "max"]), [False, True])


def test_empty_and_invalid_inputs():
    assert non_dominated(np.empty((0, 2)), ["min", "min"]).shape == (0,)
    assert dominance_rank(np.empty((0, 2)), ["min", "min"]).shape == (0,)
    with pytest.raises(ValueError, match="directions"):
        non_dominated(np.ones((2, 2)), ["min"])
    with pytest.raises(ValueError, match="'max' or 'min'"):
        non_dominated(np.ones((2, 2)), ["min", "up"])
    with pytest.raises(ValueError, match="NaN"):
        non_dominated(np.array([[1.0, np.nan]]), ["min", "min"])


# --- hypervolume ------------------------------------------------------------------------


def test_hypervolume_2d_staircase():
    pts = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    # Columns of width 1 and heights 1, 2, 3 under the reference (4, 4).
    assert hypervolume(pts, ["min", "min"], [4.0, 4.0]) == pytest.approx(6.0)


def test_hypervolume_3d_two_boxes():
    pts = np.array([[1.0, 1.0, 1.0], [0.0, 2.0, 0.0]])
    ref = [2.0, 3.0, 2.0]
    # Box A: [1,2]x[1,3]x[1,2] = 1*2*1 = 2. Box B: [0,2]x[2,3]x[0,2] = 2*1*2 = 4.
    # Overlap: [1,2]x[2,3]x[1,2] = 1. Union = 5.
    assert hypervolume(pts, ["min", "min", "min"], ref) == pytest.approx(5.0)


def test_hypervolume_mixed_directions():
    # acc:max, adv:min with reference (acc 0, adv 1): a point covers acc * (1 - adv).
    pts = np.array([[0.9, 0.5], [0.6, 0.2]])
    # Union of [0,0.9]x[0.5,1] (0.45) and [0,0.6]x[0.2,1] (0.48), overlap [0,0.6]x[0.5,1] (0.3).
    assert hypervolume(pts, ["max", "min"], [0.0, 1.0]) == pytest.approx(0.63)
    # Same problem written with both columns minimised gives the same value.
    flipped = np.column_stack([-pts[:, 0], pts[:, 1]])
    assert hypervolume(flipped, ["min", "min"], [0.0, 1.0]) == pytest.approx(0.63)


def test_hypervolume_ignores_points_beyond_reference_and_handles_empty():
    pts = np.array([[5.0, 5.0], [1.0, 5.0]])
    assert hypervolume(pts, ["min", "min"], [4.0, 4.0]) == 0.0
    assert hypervolume(np.empty((0, 2)), ["min", "min"], [4.0, 4.0]) == 0.0
    with pytest.raises(ValueError, match="reference"):
        hypervolume(pts, ["min", "min"], [4.0])


def test_default_reference():
    objs = parse_objectives("acc:max,adv:min,dtc_adv:min,loss_auc:min")
    assert default_reference(objs) == [0.0, 1.0, 1.0, 1.0]
    assert default_reference([Objective("test_acc", "min")]) == [1.0]
    with pytest.raises(ValueError, match="train_seconds"):
        default_reference([Objective("train_seconds", "min")])


# --- objectives spec --------------------------------------------------------------------


def test_parse_objectives_good():
    assert parse_objectives("acc:max,adv:min,dtc_adv:min") == [
        Objective("test_acc", "max"),
        Objective("adv", "min"),
        Objective("dtc_adv", "min"),
    ]
    assert parse_objectives(" test_acc : MAX , loss_adv:min ") == [
        Objective("test_acc", "max"),
        Objective("loss_adv", "min"),
    ]


@pytest.mark.parametrize(
    ("spec", "piece"),
    [
        ("acc", "'acc'"),
        ("acc:maximize", "'acc:maximize'"),
        ("acc:max,:min", "':min'"),
        ("acc:max,,adv:min", "''"),
        ("", "empty"),
    ],
)
def test_parse_objectives_bad(spec, piece):
    with pytest.raises(ValueError) as info:
        parse_objectives(spec)
    message = str(info.value)
    assert "\n" not in message
    assert piece in message
    assert "name:max|min" in message


def test_parse_objectives_rejects_duplicate_column():
    with pytest.raises(ValueError, match="test_acc"):
        parse_objectives("acc:max,test_acc:max")


def test_objective_rejects_bad_direction():
    with pytest.raises(ValueError, match="direction"):
        Objective("adv", "up")  # type: ignore[arg-type]


# --- data-frame helpers -----------------------------------------------------------------


def _trials() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "trial_id": ["a", "b", "c", "d", "e", "f", "g"],
            "status": ["ok", "ok", "ok", "failed", "ok", "ok", "diverged"],
            "test_acc": [0.90, 0.80, 0.70, 0.99, np.nan, 0.85, 0.95],
            "adv": [0.30, 0.10, 0.20, 0.00, 0.00, 0.35, 0.01],
            "finished_at": pd.to_datetime(
                [
                    "2024-01-05",
                    "2024-01-01",
                    "2024-01-02",
                    "2024-01-03",
                    "2024-01-04",
                    "2024-01-06",
                    "2024-01-07",
                ]
            ),
        }
    )


def test_pareto_front_filters_failed_and_nan_rows():
    front = pareto_front(_trials(), parse_objectives("acc:max,adv:min"))
    # d (failed), g (diverged) and e (NaN accuracy) would dominate, but do not take part;
    # c is dominated by b, f by a.
    assert list(front["trial_id"]) == ["a", "b"]
    assert list(front.index) == [0, 1]
    assert "pareto_rank" not in front.columns


def test_pareto_front_without_status_column_uses_all_finite_rows():
    df = _trials().drop(columns="status")
    front = pareto_front(df, parse_objectives("acc:max,adv:min"))
    assert list(front["trial_id"]) == ["d"]


def test_rank_trials_orders_by_rank_then_objective():
    ranked = rank_trials(_trials(), parse_objectives("acc:max,adv:min"))
    assert list(ranked["trial_id"]) == ["a", "b", "f", "c"]
    assert list(ranked["pareto_rank"]) == [0, 0, 1, 1]


def test_unknown_objective_column_names_it_and_lists_numeric_columns():
    with pytest.raises(ValueError) as info:
        pareto_front(_trials(), [Objective("dtc_adv", "min")])
    message = str(info.value)
    assert "'dtc_adv'" in message
    assert "test_acc, adv" in message
    assert "trial_id" not in message.split("numeric columns:")[1]
    with pytest.raises(ValueError, match="'status' is not numeric"):
        pareto_front(_trials(), [Objective("status", "min")])


def test_hypervolume_trace_follows_finish_order_and_never_decreases():
    df = _trials()
    objs = parse_objectives("acc:max,adv:min")
    trace = hypervolume_trace(df, objs)
    # ok trials in finish order: b, c, e (NaN: adds nothing), a, f.
    assert len(trace) == 5
    b = 0.8 * (1 - 0.1)
    ab = b + (0.9 - 0.8) * (1 - 0.3)  # a adds the strip of accuracy 0.8..0.9
    np.testing.assert_allclose(trace, [b, b, b, ab, ab])  # c and f are dominated
    assert np.all(np.diff(trace) >= 0)


def test_hypervolume_trace_is_monotone_on_random_sweeps():
    rng = np.random.default_rng(7)
    df = pd.DataFrame(
        {
            "status": rng.choice(["ok", "failed"], size=200, p=[0.8, 0.2]),
            "test_acc": rng.random(200),
            "adv": rng.random(200),
            "dtc_adv": rng.random(200),
        }
    )
    objs = parse_objectives("acc:max,adv:min,dtc_adv:min")
    trace = hypervolume_trace(df, objs)
    assert len(trace) == (df["status"] == "ok").sum()
    assert np.all(np.diff(trace) >= -1e-12)
    ok = df[df["status"] == "ok"][["test_acc", "adv", "dtc_adv"]].to_numpy()
    assert trace[-1] == pytest.approx(hypervolume(ok, ["max", "min", "min"], [0.0, 1.0, 1.0]))
