"""The driver's record of a sweep: a constant cost per trial, crash-safe, read whole."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from raymia.results import rows as results
from raymia.results.rows import PARTS_DIR, TRIALS_FILE, TrialsAppender, compact_trials, load_results


def _row(i: int, **extra) -> dict:
    row = {"trial_id": f"t{i:05d}", "status": "ok", "error": None, "seed": i % 3}
    row.update({f"metric_{k}": i * 0.001 + k for k in range(40)})
    row.update(extra)
    return row


def _bytes_moved(monkeypatch) -> list[int]:
    """Count the bytes of every Parquet file raymia.results.rows reads or writes whole."""
    moved = [0]
    read, write = results._read_table, results._atomic_write_table

    def counted_read(path):
        moved[0] += Path(path).stat().st_size
        return read(path)

    def counted_write(table, path):
        write(table, path)
        moved[0] += Path(path).stat().st_size

    monkeypatch.setattr(results, "_read_table", counted_read)
    monkeypatch.setattr(results, "_atomic_write_table", counted_write)
    return moved


@pytest.mark.slow  # importing Ray Tune for the recorder takes most of it
def test_the_recorders_cost_per_trial_does_not_grow_with_the_rows_written(tmp_path, monkeypatch):
    from raymia.sweep.recorder import make_recorder

    moved = _bytes_moved(monkeypatch)
    recorder = make_recorder(tmp_path)
    per_trial = {}
    for i in range(1, 257):
        trial = SimpleNamespace(trial_id=f"t{i:05d}")
        recorder.on_trial_result(0, [], trial, _row(i))
        recorder.on_trial_complete(0, [], trial)
        if i in (32, 256):
            per_trial[i] = moved[0] / i
    # the whole table was rewritten at every trial before: 8x the bytes per trial at 256
    assert per_trial[256] / per_trial[32] < 1.5, per_trial
    df = load_results(tmp_path)
    assert len(df) == 256 and df["trial_id"].is_unique


def test_parts_and_the_compacted_file_read_alike(tmp_path):
    appender = TrialsAppender(tmp_path, min_batch=1000)  # never compacts by itself
    for i in range(5):
        appender.add(_row(i))
    appender.add(_row(1, status="failed", error="retried"))  # a later row replaces the first
    assert not (tmp_path / TRIALS_FILE).exists()
    uncompacted = load_results(tmp_path)
    assert list(uncompacted["trial_id"]) == [f"t{i:05d}" for i in range(5)]
    assert uncompacted.loc[1, "status"] == "failed"
    assert compact_trials(tmp_path) == 5
    assert list((tmp_path / PARTS_DIR).iterdir()) == []
    compacted = load_results(tmp_path)
    assert compacted.equals(uncompacted)
    # a new run appends after the compacted rows
    TrialsAppender(tmp_path, min_batch=1000).add(_row(9))
    assert list(load_results(tmp_path)["trial_id"])[-1] == "t00009"


def test_a_kill_between_compacting_and_deleting_the_parts_counts_nothing_twice(tmp_path):
    appender = TrialsAppender(tmp_path, min_batch=1000)
    for i in range(3):
        appender.add(_row(i))
    kept = tmp_path / "kept"
    shutil.copytree(tmp_path / PARTS_DIR, kept)
    compact_trials(tmp_path)
    for part in kept.iterdir():  # as if the kill came before the parts were deleted
        shutil.copy(part, tmp_path / PARTS_DIR / part.name)
    TrialsAppender(tmp_path, min_batch=1000).add(_row(3))
    df = load_results(tmp_path)
    assert list(df["trial_id"]) == [f"t{i:05d}" for i in range(4)]


def test_a_crash_writing_a_part_loses_only_that_row(tmp_path, monkeypatch):
    appender = TrialsAppender(tmp_path, min_batch=1000)
    appender.add(_row(0))

    def crash(table, where, **kwargs):
        where.write(b"PAR1 half a file")
        raise RuntimeError("simulated crash during write")

    monkeypatch.setattr(results.pq, "write_table", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        appender.add(_row(1))
    monkeypatch.undo()
    assert list(load_results(tmp_path)["trial_id"]) == ["t00000"]
    assert [p.name for p in (tmp_path / PARTS_DIR).iterdir()] == ["0000000001.parquet"]
    appender.add(_row(2))
    assert list(load_results(tmp_path)["trial_id"]) == ["t00000", "t00002"]
