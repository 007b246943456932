"""Tests for raymia.results.rows: the trials table and per-trial scores on disk."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raymia.results import rows as results
from raymia.results.rows import (
    LEADING_COLUMNS,
    SCORES_DIR,
    TRIALS_FILE,
    ResultsError,
    TrialsAppender,
    load_results,
    load_scores,
    recorded_table,
    scores_path,
    write_scores,
    write_trials,
)


def _failed(trial_id: str = "t0") -> dict:
    # A trial that failed before any metric: few columns, test_acc None.
    return {
        "trial_id": trial_id,
        "status": "failed",
        "error": "CUDA out of memory",
        "seed": 0,
        "dataset": "cifar10",
        "dropout": 0.5,
        "test_acc": None,
    }


def _ok(trial_id: str = "t1", **extra) -> dict:
    row = {
        "dataset": "cifar10",  # key order differs from the schema on purpose
        "trial_id": trial_id,
        "status": "ok",
        "error": None,
        "seed": 1,
        "dropout": 0,  # int here, float elsewhere -> float64
        "weight_decay": 5e-4,
        "test_acc": 0.81,
        "train_acc": 0.99,
        "loss_adv": 0.12,
        "dp_epsilon": None,
        "early_stopped": True,
        "git_sha": "abc123",
    }
    row.update(extra)
    return row


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name)


# --- round trip ------------------------------------------------------------------------------


def test_round_trip_mixed_rows_keeps_values_and_dtypes(tmp_path: Path) -> None:
    path = write_trials(tmp_path, [_failed("t0"), _ok("t1")])
    assert path == tmp_path / TRIALS_FILE

    df = load_results(tmp_path)
    assert len(df) == 2
    assert list(df["trial_id"]) == ["t0", "t1"]
    # test_acc is float64 although the first row's value is None.
    assert df["test_acc"].dtype == np.float64
    assert math.isnan(df.loc[0, "test_acc"]) and df.loc[1, "test_acc"] == pytest.approx(0.81)
    # Columns the failed row lacks are null there.
    assert math.isnan(df.loc[0, "train_acc"]) and math.isnan(df.loc[0, "loss_adv"])
    assert df["dropout"].dtype == np.float64 and list(df["dropout"]) == [0.5, 0.0]
    assert df["seed"].dtype == np.int64 and list(df["seed"]) == [0, 1]
    assert pd.api.types.is_string_dtype(df["status"]) and list(df["status"]) == ["failed", "ok"]
    assert df.loc[0, "error"] == "CUDA out of memory" and pd.isna(df.loc[1, "error"])
    assert df.loc[1, "git_sha"] == "abc123" and pd.isna(df.loc[0, "git_sha"])
    # All-null column: float64 (documented choice).
    assert df["dp_epsilon"].dtype == np.float64 and df["dp_epsilon"].isna().all()

    schema = pq.read_schema(path)
    assert schema.field("early_stopped").type == pa.bool_()
    assert schema.field("test_acc").type == pa.float64()
    assert schema.field("seed").type == pa.int64()
    assert schema.field("error").type == pa.string()


def test_bool_column_without_nulls_is_bool(tmp_path: Path) -> None:
    write_trials(tmp_path, [_ok("a", early_stopped=False), _ok("b")])
    df = load_results(tmp_path)
    assert df["early_stopped"].dtype == np.bool_
    assert list(df["early_stopped"]) == [False, True]


def test_numpy_scalars_are_stored_as_plain_values(tmp_path: Path) -> None:
    row = _ok("a", test_acc=np.float32(0.5), seed=np.int64(7), early_stopped=np.bool_(True))
    write_trials(tmp_path, [row])
    schema = pq.read_schema(tmp_path / TRIALS_FILE)
    assert schema.field("test_acc").type == pa.float64()
    assert schema.field("seed").type == pa.int64()
    assert schema.field("early_stopped").type == pa.bool_()


def test_column_order_leading_first_then_first_seen(tmp_path: Path) -> None:
    rows = [_failed("t0"), _ok("t1"), _ok("t2", entropy_adv=0.3)]
    write_trials(tmp_path, rows)
    columns = list(load_results(tmp_path).columns)
    assert columns[: len(LEADING_COLUMNS)] == list(LEADING_COLUMNS)
    assert columns[len(LEADING_COLUMNS) :] == [
        "dropout",
        "test_acc",
        "weight_decay",
        "train_acc",
        "loss_adv",
        "dp_epsilon",
        "early_stopped",
        "git_sha",
        "entropy_adv",
    ]


def test_leading_columns_present_even_when_rows_lack_them(tmp_path: Path) -> None:
    write_trials(tmp_path, [{"trial_id": "x", "test_acc": 0.5}])
    schema = pq.read_schema(tmp_path / TRIALS_FILE)
    assert schema.names[:5] == list(LEADING_COLUMNS)
    assert schema.field("error").type == pa.string()
    assert schema.field("seed").type == pa.int64()


def test_metadata_has_schema_version(tmp_path: Path) -> None:
    path = write_trials(tmp_path, [_ok()])
    assert pq.read_schema(path).metadata[b"raymia_schema_version"] == b"1"


def test_zero_rows_gives_empty_frame_with_columns(tmp_path: Path) -> None:
    write_trials(tmp_path, [])
    df = load_results(tmp_path)
    assert df.empty
    assert list(df.columns) == list(LEADING_COLUMNS)


def test_creates_missing_out_dir(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    write_trials(out, [_ok()])
    assert (out / TRIALS_FILE).is_file()


# --- invalid rows ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([{"status": "ok"}], "trial_id"),
        ([_ok("a"), _ok("a")], "duplicate trial_id 'a'"),
        ([_ok("a", test_acc="high"), _ok("b")], "'test_acc'.*incompatible"),
        ([_ok("a", early_stopped=1), _ok("b")], "'early_stopped'.*incompatible"),
        ([_ok("a", seed=1.5)], "'seed': expected int64"),
        ([_ok("a", test_acc=[0.1])], "'test_acc'"),
    ],
)
def test_invalid_rows_raise_and_write_nothing(tmp_path: Path, rows: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        write_trials(tmp_path, rows)
    assert not (tmp_path / TRIALS_FILE).exists()
    assert _leftovers(tmp_path) == []


# --- recorded_table --------------------------------------------------------------------------


def recorded_rows(out: Path) -> list[dict]:
    """The recorded trials as rows ([] when there are none)."""
    table = recorded_table(out)
    return [] if table is None else table.to_pylist()


def test_recorded_rows_read_the_file_and_its_later_parts(tmp_path: Path) -> None:
    assert recorded_rows(tmp_path) == []
    write_trials(tmp_path, [_failed("t0"), _ok("t1")])
    appender = TrialsAppender(tmp_path, min_batch=100)  # the parts stay parts
    appender.add(_ok("t0", test_acc=0.7))  # a retried trial replaces its failed row, in place
    appender.add(_ok("t2"))
    rows = recorded_rows(tmp_path)
    assert [r["trial_id"] for r in rows] == ["t0", "t1", "t2"]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok"]
    assert rows[0]["test_acc"] == pytest.approx(0.7)


def test_recorded_rows_refuse_a_corrupt_file(tmp_path: Path) -> None:
    (tmp_path / TRIALS_FILE).write_bytes(b"garbage")
    with pytest.raises(ResultsError, match=TRIALS_FILE):
        recorded_rows(tmp_path)
    assert (tmp_path / TRIALS_FILE).read_bytes() == b"garbage"


# --- atomicity -------------------------------------------------------------------------------


def _crashing_write_table(table, where, **kwargs):
    # Write part of the file, then die, as a crash mid-write would.
    where.write(b"PAR1 half a file")
    raise RuntimeError("simulated crash during write")


def test_crash_during_write_keeps_previous_rows(tmp_path: Path, monkeypatch) -> None:
    appender = TrialsAppender(tmp_path)
    appender.add(_ok("t1"))
    monkeypatch.setattr(results.pq, "write_table", _crashing_write_table)
    with pytest.raises(RuntimeError, match="simulated crash"):
        appender.add(_ok("t2"))
    assert [row["trial_id"] for row in recorded_rows(tmp_path)] == ["t1"]
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / results.PARTS_DIR) == []

    monkeypatch.undo()
    appender.add(_ok("t2"))  # retry succeeds
    assert list(load_results(tmp_path)["trial_id"]) == ["t1", "t2"]


def test_crash_at_rename_keeps_previous_file(tmp_path: Path, monkeypatch) -> None:
    write_trials(tmp_path, [_ok("t1")])
    before = (tmp_path / TRIALS_FILE).read_bytes()

    def failing_replace(src, dst):
        assert Path(src).exists() and ".tmp-" in Path(src).name  # fully written temp file
        raise OSError("simulated crash at rename")

    monkeypatch.setattr(results.os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated crash"):
        write_trials(tmp_path, [_ok("t1"), _ok("t2")])

    assert (tmp_path / TRIALS_FILE).read_bytes() == before
    assert list(load_results(tmp_path)["trial_id"]) == ["t1"]
    assert _leftovers(tmp_path) == []


def test_write_goes_through_temp_file_in_same_dir(tmp_path: Path, monkeypatch) -> None:
    seen: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy_replace(src, dst):
        seen.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(results.os, "replace", spy_replace)
    write_trials(tmp_path, [_ok()])
    [(src, dst)] = seen
    assert Path(src).parent == tmp_path and Path(src).name.startswith(f".{TRIALS_FILE}.tmp-")
    assert Path(dst) == tmp_path / TRIALS_FILE


# --- loading errors --------------------------------------------------------------------------


def test_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ResultsError, match="no such directory") as info:
        load_results(missing)
    assert str(missing) in str(info.value)


def test_directory_without_trials_file(tmp_path: Path) -> None:
    with pytest.raises(ResultsError) as info:
        load_results(tmp_path)
    assert str(info.value) == (
        f"{tmp_path}: no trials.parquet here; is this a raymia sweep directory?"
    )


def test_file_instead_of_directory(tmp_path: Path) -> None:
    path = write_trials(tmp_path, [_ok()])
    with pytest.raises(ResultsError, match="not a sweep directory"):
        load_results(path)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "tail"])
def test_corrupt_file_raises_naming_it(tmp_path: Path, damage: str) -> None:
    path = write_trials(tmp_path, [_failed("t0"), _ok("t1")])
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"this is not parquet at all" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # footer intact, body zeroed
        path.write_bytes(b"PAR1" + b"\0" * (len(data) - 12) + data[-8:])
    with pytest.raises(ResultsError) as info:
        load_results(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a readable Parquet file (")
    assert "\n" not in message


def test_other_schema_version_is_refused(tmp_path: Path) -> None:
    table = pa.table({"trial_id": ["a"]}).replace_schema_metadata({b"raymia_schema_version": b"99"})
    pq.write_table(table, tmp_path / TRIALS_FILE)
    with pytest.raises(ResultsError, match="version '99'"):
        load_results(tmp_path)


# --- scores ----------------------------------------------------------------------------------


def test_scores_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    scores = {
        "loss": rng.random(50),
        "merlin": rng.random(50).astype(np.float32),
        "is_member": np.arange(50) % 2 == 0,
        "index": np.arange(50, dtype=np.int64),
    }
    path = write_scores(tmp_path, "t1", scores)
    assert path == tmp_path / SCORES_DIR / "t1.parquet"
    assert pq.read_schema(path).metadata[b"raymia_schema_version"] == b"1"

    df = load_scores(tmp_path, "t1")
    assert list(df.columns) == list(scores)
    for name, values in scores.items():
        np.testing.assert_array_equal(df[name].to_numpy(), values)
        assert df[name].dtype == values.dtype
    assert _leftovers(path.parent) == []


def test_scores_length_mismatch(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"differ in length \(loss=3, merlin=4\)"):
        write_scores(tmp_path, "t1", {"loss": np.zeros(3), "merlin": np.zeros(4)})
    assert not scores_path(tmp_path, "t1").exists()


def test_scores_must_be_1d(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="1-dimensional"):
        write_scores(tmp_path, "t1", {"loss": np.zeros((3, 2))})


def test_scores_trial_id_is_sanitized(tmp_path: Path) -> None:
    ids = ["../../etc/passwd", "a/b", "a_b", ".hidden", "x" * 300]
    paths = [write_scores(tmp_path, i, {"loss": np.arange(3.0)}) for i in ids]
    assert len(set(paths)) == len(ids)  # distinct ids never share a file
    for trial_id, path in zip(ids, paths, strict=True):
        assert path.parent == tmp_path / SCORES_DIR
        assert not path.name.startswith(".") and len(path.name) < 200
        np.testing.assert_array_equal(load_scores(tmp_path, trial_id)["loss"], np.arange(3.0))
    assert paths[2].name == "a_b.parquet"


def test_missing_scores_names_file(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no scores file for trial 'ghost'") as info:
        load_scores(tmp_path, "ghost")
    assert str(scores_path(tmp_path, "ghost")) in str(info.value)


def test_corrupt_scores_names_file(tmp_path: Path) -> None:
    path = write_scores(tmp_path, "t1", {"loss": np.zeros(3)})
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ResultsError, match="not a readable Parquet file") as info:
        load_scores(tmp_path, "t1")
    assert str(path) in str(info.value)


# --- compaction in Arrow: the same table as the rows typed one by one ----------------------


def _random_rows(rng: np.random.Generator, n: int, ids: int) -> list[dict]:
    """Rows with retried trial ids, columns that come and go, nulls, ints beside floats."""
    rows = []
    for _ in range(n):
        status = str(rng.choice(["ok", "failed"]))
        row = {"trial_id": f"t{int(rng.integers(ids))}", "status": status}
        if rng.random() < 0.8:
            row["seed"] = int(rng.integers(3))
        for k in range(6):
            roll = rng.random()
            if roll < 0.3:
                continue  # column absent in this row
            if roll < 0.4:
                row[f"m{k}"] = None
            elif k == 0:
                row[f"m{k}"] = bool(rng.random() < 0.5)  # bool column
            elif k == 1:
                row[f"m{k}"] = str(rng.choice(["a", "b"]))  # str column
            elif k == 2:
                row[f"m{k}"] = int(rng.integers(10))  # int column
            else:
                row[f"m{k}"] = int(rng.integers(10)) if roll < 0.5 else float(rng.random())
        rows.append(row)
    return rows


def _row_by_row(out: Path) -> pa.Table:
    """The oracle: every recorded row as a Python dict (trials.parquet's, then each part's), a
    later row of a trial replacing the earlier one in its place, typed by `_trials_table`."""
    rows: dict[str, dict] = {}
    files = [out / TRIALS_FILE] + sorted((out / results.PARTS_DIR).glob("*.parquet"))
    for path in files:
        for row in pq.read_table(path).to_pylist():
            rows[row["trial_id"]] = row
    return results._trials_table(list(rows.values()), through=len(files) - 1)


@pytest.mark.parametrize("batch", [3, 1024])
@pytest.mark.parametrize("seed", range(12))
def test_compaction_gives_the_table_the_rows_would_give_typed_one_by_one(
    tmp_path, monkeypatch, seed, batch
):
    monkeypatch.setattr(results, "_PARTS_PER_TABLE", batch)  # parts typed a few at a time
    rng = np.random.default_rng(seed)
    first, later = _random_rows(rng, 15, 12), _random_rows(rng, 25, 20)
    unique = {row["trial_id"]: row for row in first}  # trials.parquet holds each trial once
    write_trials(tmp_path, list(unique.values()))
    appender = TrialsAppender(tmp_path, min_batch=10**6)
    for row in later:
        appender.add(row)
    oracle = _row_by_row(tmp_path)
    before = load_results(tmp_path)  # uncompacted
    assert results.compact_trials(tmp_path) == oracle.num_rows
    written = pq.read_table(tmp_path / TRIALS_FILE)
    # the same rows, values and types column by column (leading columns first); a column
    # that only a replaced row had may stay as nulls, and later columns may come in another
    # order
    names = oracle.column_names
    assert written.column_names[: len(LEADING_COLUMNS)] == list(LEADING_COLUMNS)
    assert written.select(names).equals(oracle.select(names))
    for extra in set(written.column_names) - set(names):
        assert written.column(extra).null_count == written.num_rows
    assert written.schema.metadata == oracle.schema.metadata
    pd.testing.assert_frame_equal(load_results(tmp_path), before)
    assert [{k: row[k] for k in names} for row in recorded_rows(tmp_path)] == oracle.to_pylist()


def test_compaction_refuses_a_column_of_incompatible_kinds(tmp_path):
    appender = TrialsAppender(tmp_path, min_batch=10**6)
    appender.add({"trial_id": "a", "status": "ok", "m": 1.5})
    appender.add({"trial_id": "b", "status": "ok", "m": "x"})
    with pytest.raises(ValueError, match="column 'm': values mix incompatible types"):
        results.compact_trials(tmp_path)
