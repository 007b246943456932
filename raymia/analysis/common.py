"""Shared pieces of the analysis scripts: loading sweeps, the attacks measured, objectives,
output files and the command line.

Everything here reads Parquet through `raymia.results.rows` and never imports Ray: the scripts
must run on a laptop holding nothing but the sweep directories. Matplotlib is switched to
the Agg backend on import, so no script ever needs a display. Configuration labels and
Markdown tables come from `raymia.results.labels` and `raymia.results.tables`, which the sweep
shares.

User errors (a directory without ``trials.parquet``, an unknown objective column, a sweep
with no completed trial) are raised as `raymia.errors.UserError`s (`AnalysisError`,
`ResultsError`); `run_main` turns them into one ``analysis: error: ...`` line on stderr and
exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from raymia.attacks import REGISTRY as ATTACKS
from raymia.errors import AnalysisError, UserError, bound_quoted, one_line, show_path
from raymia.privacy.leakage import leakage_verdict
from raymia.results.front import ALIASES, Objective, parse_objectives
from raymia.results.rows import load_results, ok_trials
from raymia.sweep.settings import DEFAULT_BUDGETS, DEFAULT_OBJECTIVES, budgets_argument

__all__ = [
    "DEFAULT_OBJECTIVES",
    "add_budgets",
    "add_objectives",
    "add_out_dir",
    "add_tolerance",
    "attacks_in",
    "check_objectives",
    "leakage_verdicts",
    "load_sweeps",
    "make_parser",
    "run_main",
    "save_figure",
    "write_text",
]


# --------------------------------------------------------------------------------------------
# Loading


def _sweep_names(dirs: Sequence[Path]) -> list[str]:
    """Return a short name per directory: its base name, or its path where names collide."""
    names = [d.resolve().name or str(d) for d in dirs]
    return [str(d) if names.count(n) > 1 else n for d, n in zip(dirs, names, strict=True)]


def _status_summary(df: pd.DataFrame) -> str:
    """Return e.g. '3 failed, 1 diverged; first error: ...' for a frame with no ok trial."""
    counts = df["status"].fillna("missing").value_counts() if "status" in df else pd.Series()
    parts = [f"{int(n)} {status}" for status, n in counts.items()]
    errors = df["error"].dropna() if "error" in df else pd.Series(dtype=object)
    first = f"; first error: {errors.iloc[0]}" if len(errors) else ""
    return (", ".join(parts) or "no rows") + first


def load_sweeps(dirs: Iterable[str | Path]) -> pd.DataFrame:
    """Load the trials of one or more sweep directories into one DataFrame.

    Returns every row of every ``DIR/trials.parquet`` (failed trials included), with two
    columns added in front: ``sweep`` (the directory's base name, or its path when two
    directories share a name) and ``sweep_dir`` (its path, to find per-sample scores).

    Raises ResultsError when a directory is missing or holds no readable ``trials.parquet``,
    and AnalysisError when a directory has no completed (status ``ok``) trial: an analysis of
    failures alone would only mislead.
    """
    paths = [Path(d) for d in dirs]
    if not paths:
        raise AnalysisError("no sweep directory given")
    seen: set[Path] = set()
    for path in paths:
        if path.resolve() in seen:
            raise AnalysisError(f"{path}: sweep directory given twice")
        seen.add(path.resolve())
    frames = []
    for path, name in zip(paths, _sweep_names(paths), strict=True):
        df = load_results(path)
        if "status" not in df.columns or not (df["status"] == "ok").any():
            raise AnalysisError(f"{path}: no completed trial to analyse ({_status_summary(df)})")
        df.insert(0, "sweep_dir", str(path))
        df.insert(0, "sweep", name)
        frames.append(df)
    if len(frames) == 1:
        return frames[0]
    # Sweeps may differ in columns (e.g. one ran LiRA); concat fills the gaps with nulls.
    return pd.concat(frames, ignore_index=True, sort=False)


def attacks_in(df: pd.DataFrame) -> list[str]:
    """Return the registered attacks whose ``<attack>_adv`` column has a finite value, in
    registry order."""
    found = []
    for attack in ATTACKS:
        column = f"{attack}_adv"
        if column in df.columns and np.isfinite(pd.to_numeric(df[column])).any():
            found.append(attack)
    return found


def leakage_verdicts(df: pd.DataFrame) -> pd.Series:
    """Return `raymia.privacy.leakage.leakage_verdict` of every row of ``df``, on ``df``'s index."""
    if df.empty:
        return pd.Series(dtype=str, index=df.index)
    return df.apply(leakage_verdict, axis=1)


# --------------------------------------------------------------------------------------------
# Objectives


def _objective_candidates(df: pd.DataFrame) -> list[str]:
    """Return the numeric columns that make sense as objectives: accuracies, advantages, AUCs."""
    return [
        c
        for c in df.columns
        if pd.api.types.is_numeric_dtype(df[c]) and c.endswith(("_acc", "adv", "_auc"))
    ]


def check_objectives(df: pd.DataFrame, spec: str) -> list[Objective]:
    """Parse an objective spec (``acc:max,adv:min``) and check it against the trials ``df``.

    Returns the objectives. Raises AnalysisError, in one line, for a malformed spec, a column
    that is not in the table (naming the candidates), a column that is not numeric, or one
    with no finite value among the completed trials (e.g. ``dtc_adv`` from a sweep that
    switched DtC off).
    """
    try:
        objectives = parse_objectives(spec)
    except ValueError as err:
        raise AnalysisError(f"--objectives: {err}") from None
    ok = ok_trials(df)
    for obj in objectives:
        if obj.column not in df.columns:
            names = list(ALIASES) + [
                c for c in _objective_candidates(df) if c not in ALIASES.values()
            ]
            raise AnalysisError(
                f"--objectives: unknown column {obj.column!r} (not in trials.parquet); "
                f"candidates: {', '.join(names)}"
            )
        if not pd.api.types.is_numeric_dtype(df[obj.column]):
            raise AnalysisError(f"--objectives: column {obj.column!r} is not numeric")
        if not np.isfinite(ok[obj.column].to_numpy(dtype=float)).any():
            raise AnalysisError(
                f"--objectives: column {obj.column!r} has no finite value in any completed "
                "trial (was it measured in this sweep?)"
            )
    return objectives


# --------------------------------------------------------------------------------------------
# Output


def save_figure(fig: Any, path: Path) -> Path:
    """Save a matplotlib figure as a PNG at ``path`` (parents created), close it, return path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` (plus a final newline) to ``path``, creating parents; return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n")
    return path


# --------------------------------------------------------------------------------------------
# Command line


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors raise AnalysisError (one line, exit 2 via run_main)."""

    def error(self, message: str) -> NoReturn:
        raise AnalysisError(f"{bound_quoted(message)} (see {self.prog} --help)")


def _help_text(doc: str) -> str:
    """Return a script's module docstring for --help, without its ``Usage::`` block."""
    paragraphs = doc.strip().split("\n\n")
    kept, skip_next = [], False
    for paragraph in paragraphs:
        if skip_next:
            skip_next = False
            continue
        if paragraph.strip() == "Usage::":
            skip_next = True  # the indented usage lines follow; argparse prints its own
            continue
        kept.append(paragraph)
    return "\n\n".join(kept)


def make_parser(prog: str, doc: str | None, sweeps: str = "many") -> argparse.ArgumentParser:
    """Return an argument parser for one script, described by its module docstring ``doc``,
    with the sweep directories it reads: ``dirs`` (one or more) or, for ``sweeps="one"``,
    ``dir`` (a Path). Bad arguments raise AnalysisError."""
    parser = _Parser(
        prog=prog,
        description=_help_text(doc or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if sweeps == "one":
        parser.add_argument("dir", metavar="DIR", type=Path, help="sweep directory")
    else:
        parser.add_argument("dirs", nargs="+", metavar="DIR", help="sweep directories")
    return parser


def add_objectives(parser: argparse.ArgumentParser) -> None:
    """Add ``--objectives`` (default: the sweep's, `DEFAULT_OBJECTIVES`)."""
    parser.add_argument(
        "--objectives",
        default=DEFAULT_OBJECTIVES,
        help=f"name:max|min,... (default {DEFAULT_OBJECTIVES})",
    )


def add_budgets(parser: argparse.ArgumentParser) -> None:
    """Add ``--budgets`` (default: the sweep's, `DEFAULT_BUDGETS`): the accuracy budgets the
    answer reads, in points of test accuracy."""
    parser.add_argument(
        "--budgets",
        type=budgets_argument,
        default=DEFAULT_BUDGETS,
        metavar="POINTS",
        help="accuracy budgets in points given up against the undefended model (default "
        f"{','.join(f'{b:g}' for b in DEFAULT_BUDGETS)})",
    )


def _tolerance(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def add_tolerance(parser: argparse.ArgumentParser, default: float, what: str) -> None:
    """Add ``--tolerance``, the accuracy tolerance of `what` (a finite number >= 0)."""
    parser.add_argument(
        "--tolerance",
        type=_tolerance,
        default=default,
        help=f"accuracy tolerance of {what} (default {default})",
    )


def add_out_dir(parser: argparse.ArgumentParser, what: str, default: str = "the first DIR") -> None:
    """Add ``--out``, the folder `what` (the script's files) go to (a Path; None: `default`)."""
    parser.add_argument(
        "--out", type=Path, default=None, help=f"where {what} go (default: {default})"
    )


def run_main(main: Callable[[list[str]], int], argv: Sequence[str] | None = None) -> int:
    """Run a script's ``main(argv)``; return its exit code.

    A `raymia.errors.UserError` (AnalysisError, ResultsError, ...) and an OSError (e.g. an
    unwritable output path) become one line ``analysis: error: ...`` on stderr and exit code
    2, without a traceback.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return main(args)
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, as command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except UserError as err:
        message = one_line(err)
    except OSError as err:
        where = f"{show_path(err.filename)}: " if err.filename else ""
        message = f"{where}{err.strerror or one_line(err)}"
    print(f"analysis: error: {message}", file=sys.stderr)
    return 2
