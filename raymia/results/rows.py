"""The results schema: one Parquet table of trials per sweep directory, plus per-trial scores.

Layout of a sweep directory ``DIR``:

- ``DIR/trials.parquet``: one row per trial (docs/ARCHITECTURE.md, "Results schema").
  Columns are the `LEADING_COLUMNS` first, then every other column in the order it was first
  seen (the settings and mechanism strengths, then the metrics, as `raymia.trial.runner.run_trial`
  emits them).
- ``DIR/scores/<trial_id>.parquet``: the per-sample membership scores of one trial, all of the
  same length: ``sample_index`` (the pool index), ``label``, ``is_member``, one
  ``score_<attack>`` per attack that ran (e.g. ``score_loss``, ``score_merlin``), and with DtC
  ``dtc`` (NaN for samples not measured) and ``dtc_censored``.

Both are written atomically: to a temporary file in the same directory, flushed and fsynced,
then renamed over the final name. A crash mid-write leaves the previous complete file in place;
a reader never sees a half-written one.

A sweep records its trials with `TrialsAppender`, at a constant cost per trial: each row lands
as one small Parquet file ``DIR/trials.parts/<sequence>.parquet``, and the parts are folded
into ``trials.parquet`` (compacted) whenever they are as many as the rows it holds, and when
the sweep ends (`compact_trials`). The compacted file names the last part it holds in its
metadata (``raymia_parts_through``), so a kill between writing it and deleting the parts
loses nothing and counts nothing twice. `load_results` reads compacted and uncompacted
directories alike: ``trials.parquet``, then the parts after it, a later row of a trial
replacing the earlier one.

Column types are inferred from a column's non-null values across *all* rows, so a column that
is null in the first rows and float later is float64, not broken:

- all ``bool`` -> bool; all ``int`` -> int64; ``int`` and ``float`` mixed, or all ``float``
  -> float64; all ``str`` -> string;
- null in every row -> float64 (most such columns are a metric or strength that was off), except
  the `LEADING_COLUMNS`, which always keep their fixed types (``seed`` int64, the rest string).

Any other mix (``str`` with numbers, ``bool`` with numbers) is a ValueError naming the column.
Numpy scalars are accepted and stored as their Python equivalents.

Every file carries the key/value metadata ``raymia_schema_version = "1"``.

Nothing here imports Ray: the sweep driver calls `TrialsAppender.add` as trials finish, and the
analysis scripts call `load_results`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from raymia.errors import ResultsError, one_line

__all__ = [
    "LEADING_COLUMNS",
    "SCHEMA_VERSION",
    "SCORES_DIR",
    "PARTS_DIR",
    "TRIALS_FILE",
    "ResultsError",
    "TrialsAppender",
    "compact_trials",
    "load_results",
    "load_scores",
    "ok_trials",
    "recorded_table",
    "scores_path",
    "write_scores",
    "write_trials",
]

#: File name of the trials table inside a sweep directory.
TRIALS_FILE = "trials.parquet"
#: Folder, inside a sweep directory, that holds one scores file per trial.
SCORES_DIR = "scores"
#: Value of the ``raymia_schema_version`` metadata key written into every file.
SCHEMA_VERSION = "1"
_SCHEMA_KEY = b"raymia_schema_version"
#: Folder, inside a sweep directory, of the rows not yet compacted into trials.parquet.
PARTS_DIR = "trials.parts"
# trials.parquet's metadata: the sequence number of the last part it holds
_THROUGH_KEY = b"raymia_parts_through"
_PART = re.compile(r"^(\d{10})\.parquet$")

#: The fixed columns that open every trials table, in order. Mechanism strengths and metrics
#: follow, in first-seen order.
LEADING_COLUMNS: tuple[str, ...] = ("trial_id", "status", "error", "seed", "dataset")

# Fixed types of the leading columns: present (all null if no row sets them) and stable.
_LEADING_TYPES: dict[str, pa.DataType] = {
    "trial_id": pa.string(),
    "status": pa.string(),
    "error": pa.string(),
    "seed": pa.int64(),
    "dataset": pa.string(),
}

Scalar = str | int | float | bool | None

# Longest file-name stem for a scores file (before the hash suffix); file systems cap at 255.
_MAX_STEM = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


# --------------------------------------------------------------------------------------------
# Writing


def write_trials(out_dir: str | os.PathLike[str], rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` as ``out_dir/trials.parquet``, atomically, creating ``out_dir`` if needed.

    Each row is a plain dict of str/int/float/bool/None values with a str ``trial_id``
    (unique across rows); rows may carry different keys, missing values are null.

    Returns the path of the written file. Raises ValueError for a row without a trial_id, a
    duplicate trial_id, or a column whose values mix incompatible types; nothing is written
    then.
    """
    out = Path(out_dir)
    table = _trials_table(rows)
    out.mkdir(parents=True, exist_ok=True)
    path = out / TRIALS_FILE
    _atomic_write_table(table, path)
    return path


def recorded_table(out_dir: str | os.PathLike[str]) -> pa.Table | None:
    """Return the trials recorded in ``out_dir`` as one Arrow table (``trials.parquet`` and its
    later parts, a later row of a trial replacing the earlier one), None for a directory
    without any. Nothing becomes a Python object per value: a resumed sweep of 100,000 rows
    counts them at the cost of reading them.

    Raises ResultsError naming the file when one cannot be read: a resumed sweep checks its
    rows before it writes anything, so a damaged file is never silently overwritten.
    """
    return _load_table(Path(out_dir))[0]


class TrialsAppender:
    """Records the trials of one sweep directory at a constant cost per trial.

    `add` writes the row as one small Parquet part (``DIR/trials.parts/``) and, once the parts
    are as many as the rows of ``trials.parquet`` (at least `min_batch`), folds them into it:
    the file is rewritten only at 1, 2, 4, 8, ... rows, so the bytes read and written per trial
    stay constant however many rows are already there. Opening one reads the parts' names and
    trials.parquet's footer, never its rows. A kill at any instant loses at most the row being
    written. The sweep driver owns the directory; no concurrent writers.
    """

    def __init__(self, out_dir: str | os.PathLike[str], min_batch: int = 1) -> None:
        self.out_dir = Path(out_dir)
        self.min_batch = max(1, min_batch)
        through, self._rows_compacted = _compacted_state(self.out_dir / TRIALS_FILE)
        later = [seq for seq, _ in _parts(self.out_dir) if seq > through]
        self._pending = len(later)
        self._next = max([through, *later]) + 1

    def add(self, row: Mapping[str, Any]) -> Path:
        """Record ``row`` (a later row of the same trial_id replaces it when read).

        Returns the path of the part written. Raises ValueError for a row without a str
        trial_id or with a value that is not a scalar; nothing is written then.
        """
        trial_id = row.get("trial_id")
        if not isinstance(trial_id, str) or not trial_id:
            raise ValueError(f"row needs a non-empty str 'trial_id', got {trial_id!r}")
        table = _trials_table([row])
        parts = self.out_dir / PARTS_DIR
        parts.mkdir(parents=True, exist_ok=True)
        path = parts / f"{self._next:010d}.parquet"
        _atomic_write_table(table, path)
        self._next += 1
        self._pending += 1
        if self._pending >= max(self.min_batch, self._rows_compacted):
            self.compact()
        return path

    def compact(self) -> None:
        """Fold every part into trials.parquet and delete the parts."""
        self._rows_compacted = compact_trials(self.out_dir)
        self._pending = 0


def compact_trials(out_dir: str | os.PathLike[str]) -> int:
    """Fold the parts of ``out_dir/trials.parts/`` into ``out_dir/trials.parquet``, atomically,
    then delete them; return the rows trials.parquet holds (nothing is written without parts).

    Crash-safe: the new file names the last part it holds, and parts are deleted only after it
    is in place, so a kill at any point leaves a directory `load_results` reads whole.
    """
    out = Path(out_dir)
    parts = _parts(out)
    if not parts:
        return _compacted_state(out / TRIALS_FILE)[1]
    table, through = _load_table(out)
    assert table is not None  # there are parts
    _atomic_write_table(table, out / TRIALS_FILE)
    for seq, path in parts:  # oldest first: what is left is always the newest rows
        if seq <= through:
            path.unlink()
    _fsync_dir(out / PARTS_DIR)
    return table.num_rows


def scores_path(out_dir: str | os.PathLike[str], trial_id: str) -> Path:
    """Return where the scores of ``trial_id`` live: ``out_dir/scores/<safe name>.parquet``.

    The file name is ``trial_id`` itself when it only uses ``[A-Za-z0-9._-]`` (and does not
    start with a dot); otherwise unsafe characters become ``_`` and a short hash of the original
    id is appended, so distinct ids never share a file.
    """
    return Path(out_dir) / SCORES_DIR / f"{_safe_name(trial_id)}.parquet"


def write_scores(
    out_dir: str | os.PathLike[str], trial_id: str, scores: Mapping[str, np.ndarray]
) -> Path:
    """Write the per-sample ``scores`` of one trial, atomically, as one column per entry.

    Every array must be one-dimensional and all must have the same length (else ValueError).
    Returns the path written, `scores_path(out_dir, trial_id)`.
    """
    columns: dict[str, pa.Array] = {}
    lengths: dict[str, int] = {}
    for name, values in scores.items():
        arr = np.asarray(values)
        if arr.ndim != 1:
            raise ValueError(
                f"trial {trial_id!r}: score {name!r} must be 1-dimensional, got shape {arr.shape}"
            )
        lengths[name] = len(arr)
        columns[name] = pa.array(arr)
    if len(set(lengths.values())) > 1:
        sizes = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise ValueError(f"trial {trial_id!r}: score arrays differ in length ({sizes})")
    path = scores_path(out_dir, trial_id)
    table = pa.table(columns).replace_schema_metadata(
        {_SCHEMA_KEY: SCHEMA_VERSION.encode(), b"raymia_trial_id": trial_id.encode()}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_table(table, path)
    return path


# --------------------------------------------------------------------------------------------
# Reading


def load_results(out_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Return the trials table of sweep directory ``out_dir`` as a DataFrame, one row a trial.

    Columns keep the written order. Through pandas, string columns come back as pandas'
    string dtype, int64 columns with nulls as float64, bool columns with nulls as object, and
    nulls as NaN/None. An existing zero-row file gives an empty frame with its columns.

    Reads compacted and uncompacted directories alike: ``trials.parquet`` and any parts a
    sweep recorded after it (``trials.parts/``, `TrialsAppender`), a later row of a trial
    replacing the earlier one; it writes nothing.

    Raises ResultsError, naming the path, when the directory is missing, holds neither
    ``trials.parquet`` nor parts, or a file is not a readable Parquet file (never an empty
    frame).
    """
    out = Path(out_dir)
    if not out.exists():
        raise ResultsError(f"{out}: no such directory")
    if not out.is_dir():
        raise ResultsError(
            f"{out}: is a file, not a sweep directory (pass the directory holding {TRIALS_FILE})"
        )
    path = out / TRIALS_FILE
    if not _parts(out):
        if not path.exists():
            raise ResultsError(f"{out}: no {TRIALS_FILE} here; is this a raymia sweep directory?")
        return _read_table(path).to_pandas()
    table, _ = _load_table(out)
    assert table is not None  # there are parts
    return table.to_pandas()


def ok_trials(df: pd.DataFrame) -> pd.DataFrame:
    """Return the completed trials of a trials table (status ``ok``; every row when the table
    has no status column), keeping the original index."""
    return df[df["status"] == "ok"] if "status" in df.columns else df


def load_scores(out_dir: str | os.PathLike[str], trial_id: str) -> pd.DataFrame:
    """Return the per-sample scores of ``trial_id`` as a DataFrame, one column per score.

    Raises ResultsError, naming the file, when it is missing or not a readable Parquet file.
    """
    path = scores_path(out_dir, trial_id)
    if not path.exists():
        raise ResultsError(f"{path}: no scores file for trial {trial_id!r}")
    return _read_table(path).to_pandas()


# --------------------------------------------------------------------------------------------
# Internals


def _parts(out: Path) -> list[tuple[int, Path]]:
    """Return the (sequence number, path) of every part in ``out/trials.parts``, oldest first."""
    try:
        names = os.listdir(out / PARTS_DIR)
    except (FileNotFoundError, NotADirectoryError):
        if (out / PARTS_DIR).is_file():
            raise ResultsError(
                f"{out / PARTS_DIR}: is a file, expected the directory of recorded rows"
            ) from None
        return []
    except PermissionError as exc:
        raise ResultsError(f"{out / PARTS_DIR}: cannot read ({exc.strerror})") from None
    found = [
        (int(m.group(1)), out / PARTS_DIR / name) for name in names if (m := _PART.match(name))
    ]
    return sorted(found)


def _compacted_state(path: Path) -> tuple[int, int]:
    """Return (last part held, rows) of trials.parquet from its footer; (0, 0) when missing."""
    if not path.exists():
        return 0, 0
    try:
        meta = pq.read_metadata(path)
    except (pa.ArrowException, OSError) as exc:
        raise ResultsError(f"{path}: not a readable Parquet file ({_one_line(exc)})") from exc
    through = (meta.metadata or {}).get(_THROUGH_KEY, b"0")
    return int(through), meta.num_rows


def _load_table(out: Path) -> tuple[pa.Table | None, int]:
    """Return the trials of ``out`` as one table (trials.parquet followed by its later parts, a
    later row of a trial replacing the earlier one in its place; None when there is neither)
    and the sequence number of the last part read.

    trials.parquet stays in Arrow; the parts (a row each) are typed as tables of
    `_PARTS_PER_TABLE` rows, and `_merge_tables` joins them: leading columns first, each
    column with the type `_trials_table` would infer from all the surviving rows. Memory is of
    the order of the table itself, not of a Python object per value.
    """
    path = out / TRIALS_FILE
    tables: list[pa.Table] = []
    through = 0
    if path.exists():
        table = _read_table(path)
        tables.append(table)
        through = int((table.schema.metadata or {}).get(_THROUGH_KEY, b"0"))
    rows: dict[str, dict[str, Scalar]] = {}  # parts' rows not yet in a table: a few at a time
    for seq, part in _parts(out):
        if seq <= through:
            continue  # already in trials.parquet (a kill before the parts were deleted)
        for row in _read_table(part).to_pylist():
            rows[row["trial_id"]] = row  # a later row of a trial, in the earlier one's place
        through = seq
        if len(rows) >= _PARTS_PER_TABLE:
            tables.append(_trials_table(rows.values()))
            rows = {}
    if rows:
        tables.append(_trials_table(rows.values()))
    if not tables:
        return None, through
    return _merge_tables(tables, through), through


#: How many parts' rows `_load_table` holds as Python objects before typing them as a table.
_PARTS_PER_TABLE = 1024


def _merge_tables(tables: list[pa.Table], through: int) -> pa.Table:
    """Return `tables` as one trials table (see `_load_table`): the rows `_trials_table` would
    build from their surviving rows, in the same order, with the same columns and types.
    Raises ValueError as `_trials_table` does (no trial_id, values of incompatible kinds)."""
    # which row survives for each trial: its last one, in the place of its first
    ids = [table.column("trial_id").to_pylist() for table in tables]
    last: dict[str, tuple[int, int]] = {}
    for t, table_ids in enumerate(ids):
        for r, trial_id in enumerate(table_ids):
            if not isinstance(trial_id, str) or not trial_id:
                raise ValueError(f"row {r} of a recorded table: needs a non-empty str trial_id")
            last[trial_id] = (t, r)
    survivors = list(last[trial_id] for trial_id in dict.fromkeys(i for t in ids for i in t))
    # each table's surviving rows, in output order; columns first seen along the output rows
    taken: list[list[int]] = [[] for _ in tables]
    order: dict[str, None] = dict.fromkeys(LEADING_COLUMNS)
    for t, r in survivors:
        if not taken[t]:
            order.update(dict.fromkeys(tables[t].column_names))
        taken[t].append(r)
    pieces = [
        table.take(pa.array(rows, pa.int64())) for table, rows in zip(tables, taken, strict=True)
    ]
    types = {column: _merged_type(column, pieces) for column in order}
    typed = []
    for piece in pieces:
        columns = []
        for column, arrow_type in types.items():
            values = piece.column(column) if column in piece.column_names else None
            if values is None or values.null_count == len(values):
                columns.append(pa.nulls(piece.num_rows, arrow_type))
            else:
                columns.append(values.cast(arrow_type))
        typed.append(pa.Table.from_arrays(columns, names=list(types)))
    merged = pa.concat_tables(typed)
    # from table order back to output order
    offsets = np.cumsum([0, *(len(rows) for rows in taken)])
    seen = [0] * len(tables)
    where = []
    for t, _ in survivors:
        where.append(offsets[t] + seen[t])
        seen[t] += 1
    merged = merged.take(pa.array(where, pa.int64()))
    metadata = {_SCHEMA_KEY: SCHEMA_VERSION.encode()}
    if through:
        metadata[_THROUGH_KEY] = str(through).encode()
    return merged.replace_schema_metadata(metadata)


def _kind(arrow_type: pa.DataType) -> type | None:
    """Return the Python kind of the values of an Arrow column (`_infer_type`'s inverse)."""
    if pa.types.is_boolean(arrow_type):
        return bool
    if pa.types.is_integer(arrow_type):
        return int
    if pa.types.is_floating(arrow_type):
        return float
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return str
    return None


def _merged_type(column: str, tables: list[pa.Table]) -> pa.DataType:
    """Return the type `_trials_table` gives `column` over every row of `tables`: from the
    kinds of its non-null values (a column null in a whole table says nothing), fixed for the
    leading columns, float64 when every value is null."""
    kinds: set[type] = set()
    for table in tables:
        if column in table.column_names:
            values = table.column(column)
            if values.null_count < len(values):
                kind = _kind(values.type)
                if kind is None:
                    raise ValueError(f"column {column!r}: unexpected type {values.type}")
                kinds.add(kind)
    inferred = _infer_type(column, [kind() for kind in kinds])
    fixed = _LEADING_TYPES.get(column)
    if fixed is not None and inferred is not None and inferred != fixed:
        raise ValueError(f"column {column!r}: expected {fixed} values, got {inferred}")
    return fixed or inferred or pa.float64()


def _trials_table(rows: Iterable[Mapping[str, Any]], through: int = 0) -> pa.Table:
    """Build the trials table: leading columns first, then first-seen order, inferred types."""
    rows = list(rows)
    seen_ids: set[str] = set()
    order: dict[str, None] = dict.fromkeys(LEADING_COLUMNS)
    for i, row in enumerate(rows):
        trial_id = row.get("trial_id")
        if not isinstance(trial_id, str) or not trial_id:
            raise ValueError(f"row {i}: needs a non-empty str 'trial_id', got {trial_id!r}")
        if trial_id in seen_ids:
            raise ValueError(f"row {i}: duplicate trial_id {trial_id!r}")
        seen_ids.add(trial_id)
        for key in row:
            if not isinstance(key, str):
                raise ValueError(f"trial {trial_id!r}: column names must be str, got {key!r}")
            order.setdefault(key)

    arrays: list[pa.Array] = []
    for column in order:
        values = [_plain(column, row.get(column)) for row in rows]
        inferred = _infer_type(column, values)
        fixed = _LEADING_TYPES.get(column)
        if fixed is not None and inferred is not None and inferred != fixed:
            raise ValueError(f"column {column!r}: expected {fixed} values, got {inferred}")
        arrow_type = fixed if fixed is not None else inferred
        if arrow_type is None:
            arrow_type = pa.float64()
        if arrow_type == pa.float64():
            values = [None if v is None else float(v) for v in values]
        arrays.append(pa.array(values, type=arrow_type))
    table = pa.Table.from_arrays(arrays, names=list(order))
    metadata = {_SCHEMA_KEY: SCHEMA_VERSION.encode()}
    if through:
        metadata[_THROUGH_KEY] = str(through).encode()
    return table.replace_schema_metadata(metadata)


def _plain(column: str, value: Any) -> Scalar:
    """Return ``value`` as a plain Python scalar (numpy scalars unwrapped), or raise ValueError."""
    if isinstance(value, np.generic):
        value = value.item()
    # Exact types (not subclasses such as StrEnum or IntEnum) so type inference sees them.
    if value is None:
        return None
    if isinstance(value, bool):
        return bool(value)
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    raise ValueError(
        f"column {column!r}: values must be str, int, float, bool or None, "
        f"got {type(value).__name__} {value!r:.60}"
    )


def _infer_type(column: str, values: list[Scalar]) -> pa.DataType | None:
    """Return the Arrow type of a column from its non-null values; None when all are null."""
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return None
    if kinds == {bool}:
        return pa.bool_()
    if kinds == {int}:
        return pa.int64()
    if kinds <= {int, float}:
        return pa.float64()
    if kinds == {str}:
        return pa.string()
    names = ", ".join(sorted(k.__name__ for k in kinds))
    raise ValueError(f"column {column!r}: values mix incompatible types ({names})")


def _safe_name(trial_id: str) -> str:
    """Return a file-name stem for ``trial_id`` that is safe and unique per id."""
    if not isinstance(trial_id, str) or not trial_id:
        raise ValueError(f"trial_id must be a non-empty str, got {trial_id!r}")
    safe = _UNSAFE.sub("_", trial_id).lstrip(".")
    if safe == trial_id and len(safe) <= _MAX_STEM:
        return safe
    digest = hashlib.sha256(trial_id.encode()).hexdigest()[:10]
    return f"{safe[:_MAX_STEM]}-{digest}" if safe else digest


def _atomic_write_table(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` via a fsynced temporary file in the same directory + rename.

    On any failure the temporary file is removed and ``path`` keeps its previous content.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "xb") as f:
            pq.write_table(table, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Fsync ``directory`` so the rename survives a power loss; skipped where unsupported."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_table(path: Path) -> pa.Table:
    """Read the Parquet file at ``path``, or raise a one-line ResultsError naming it."""
    if path.is_dir():  # pyarrow would read a directory as a (possibly empty) dataset
        raise ResultsError(f"{path}: is a directory, expected a Parquet file")
    try:
        # ParquetFile, not read_table: half the fixed cost per file, which the many one-row
        # parts a sweep records are all about
        with pq.ParquetFile(path) as parquet:
            table = parquet.read()
    except PermissionError as exc:
        raise ResultsError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except (pa.ArrowException, OSError) as exc:
        raise ResultsError(f"{path}: not a readable Parquet file ({_one_line(exc)})") from exc
    version = (table.schema.metadata or {}).get(_SCHEMA_KEY)
    if version is not None and version.decode(errors="replace") != SCHEMA_VERSION:
        raise ResultsError(
            f"{path}: results schema version {version.decode(errors='replace')!r}, "
            f"this raymia reads version {SCHEMA_VERSION!r}"
        )
    return table


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """Return the message of ``exc`` as one line of at most ``limit`` characters
    (`raymia.errors.one_line`), without the path pyarrow repeats ("Could not open Parquet
    input source '<path>': ..."), which the message names already."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return one_line(re.sub(r"^Could not open Parquet input source '[^']*': ", "", text), limit)
