"""ROC curves and DtC histograms of single trials, from their saved per-sample scores.

Usage::

    python analysis/roc.py DIR --trials ID [ID ...] [--out OUTDIR]

For each trial writes ``OUTDIR/roc-<trial>.png`` (``OUTDIR`` defaults to DIR) with two
panels: left, the ROC curve of every attack on log-log axes (from ``DIR/scores/<trial>.parquet``,
computed with `sklearn.metrics.roc_curve`; the diagonal is a guessing attacker), where the
low-FPR corner shows whether an attack singles out *some* members with confidence; right,
histograms of the distance-to-confident of members and of non-members (samples without a DtC
are left out; censored samples, which never became confident within the search radius, are
counted in the legend and marked by a line at the radius cap).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from sklearn.metrics import roc_auc_score, roc_curve

from raymia.analysis import common
from raymia.errors import AnalysisError, ResultsError
from raymia.results.labels import config_label
from raymia.results.rows import load_scores, scores_path
from raymia.results.tables import fmt

__all__ = ["main", "plot_trial", "roc_png_name"]

SCORE_PREFIX = "score_"


def roc_png_name(trial_id: str) -> str:
    """Return the file name of a trial's ROC/DtC figure: ``roc-<safe trial id>.png``."""
    return f"roc-{scores_path('.', trial_id).stem}.png"


def _plot_roc(ax: Axes, scores: pd.DataFrame) -> None:
    """Draw each attack's ROC curve on log-log axes, the diagonal and the 1% FPR line."""
    members = scores["is_member"].to_numpy(dtype=bool)
    n_neg = int((~members).sum())
    floor = 1.0 / max(2 * n_neg, 2)  # below the smallest non-zero FPR the data can show
    attacks = [c for c in scores.columns if c.startswith(SCORE_PREFIX)]
    drawn = 0
    # Attacks often tie (loss, confidence and modified entropy rank samples alike when the
    # model is unsure): varied dashes and widths keep a hidden curve visible under another.
    styles = [("-", 2.6), ("--", 2.0), ("-.", 1.8), (":", 2.2), ("-", 1.0), ("--", 1.0)]
    for column in attacks:
        values = scores[column].to_numpy(dtype=float)
        keep = np.isfinite(values)
        if len(np.unique(members[keep])) < 2:
            continue
        fpr, tpr, _ = roc_curve(members[keep], values[keep])
        auc = roc_auc_score(members[keep], values[keep])
        ls, lw = styles[drawn % len(styles)]
        ax.plot(
            np.maximum(fpr, floor),
            np.maximum(tpr, floor),
            ls=ls,
            lw=lw,
            label=f"{column[len(SCORE_PREFIX) :]} (AUC {auc:.3f})",
        )
        drawn += 1
    ax.plot([floor, 1], [floor, 1], color="grey", ls=":", lw=1.2, label="chance (TPR = FPR)")
    if 0.01 > floor:
        ax.axvline(0.01, color="0.6", lw=0.8, ls="--")
        ax.text(0.0105, floor * 1.3, "1% FPR", fontsize=8, color="0.4")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1.05)
    ax.set_xlabel(f"false positive rate (non-members flagged; log, n = {n_neg})")
    ax.set_ylabel(f"true positive rate (members caught; log, n = {int(members.sum())})")
    ax.set_title("membership-inference ROC per attack")
    ax.grid(True, which="major", alpha=0.3)
    if not drawn:
        ax.text(0.5, 0.5, "no attack scores", ha="center", transform=ax.transAxes)
    ax.legend(loc="lower right", fontsize=8)


def _plot_dtc(ax: Axes, scores: pd.DataFrame, row: pd.Series) -> None:
    """Draw the DtC histograms of members and non-members, marking censored samples."""
    ax.set_xlabel("distance to confident (perturbation norm, standardized input units)")
    ax.set_ylabel("samples")
    dtc = scores["dtc"].to_numpy(dtype=float) if "dtc" in scores else np.array([])
    measured = np.isfinite(dtc)
    if not measured.any():
        ax.set_title("distance to confident")
        ax.text(
            0.5,
            0.5,
            "DtC not measured for this trial",
            ha="center",
            va="center",
            transform=ax.transAxes,
            color="grey",
        )
        return
    members = scores["is_member"].to_numpy(dtype=bool)
    censored = (
        scores["dtc_censored"].fillna(False).to_numpy(dtype=bool)
        if "dtc_censored" in scores
        else np.zeros(len(scores), dtype=bool)
    )
    bins = np.histogram_bin_edges(dtc[measured], bins=min(30, max(5, int(measured.sum()) // 4)))
    for selected, name, color in (
        (members, "members", "tab:red"),
        (~members, "non-members", "tab:blue"),
    ):
        sel = measured & selected
        if not sel.any():
            continue
        n_cens = int((sel & censored).sum())
        median = float(np.median(dtc[sel]))
        ax.hist(
            dtc[sel],
            bins=bins,
            alpha=0.5,
            color=color,
            edgecolor=color,
            label=f"{name}: n = {int(sel.sum())}, median {median:.3g}, {n_cens} censored",
        )
        ax.axvline(median, color=color, lw=1.4)
    if (measured & censored).any():
        cap = float(np.max(dtc[measured & censored]))
        ax.axvline(cap, color="black", ls="--", lw=1.2, label=f"censored at radius cap {cap:.3g}")
    title = "distance to confident (solid lines: medians)"
    summary = [
        f"DtC {name} {fmt(row.get(column))}"
        for name, column in (("AUC", "dtc_auc"), ("advantage", "dtc_adv"))
        if pd.notna(row.get(column))
    ]
    if summary:
        title += "\n" + ", ".join(summary)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper right")


def plot_trial(sweep_dir: Path, row: pd.Series, path: Path) -> Path:
    """Draw one trial's log-log ROC curves and DtC histograms into a PNG at ``path``.

    ``row`` is the trial's row of ``trials.parquet``; its scores are read from
    ``sweep_dir/scores``. Returns ``path``. Raises ResultsError when the scores file is
    missing or lacks the ``is_member`` column.
    """
    trial_id = str(row["trial_id"])
    scores = load_scores(sweep_dir, trial_id)
    if "is_member" not in scores.columns:
        raise ResultsError(f"{scores_path(sweep_dir, trial_id)}: no is_member column")
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    _plot_roc(left, scores)
    _plot_dtc(right, scores, row)
    fig.suptitle(
        f"trial {trial_id}: {config_label(row)}  |  test acc {fmt(row.get('test_acc'))}, "
        f"best attack advantage {fmt(row.get('adv'))}"
    )
    fig.tight_layout()
    return common.save_figure(fig, path)


def _trial_rows(df: pd.DataFrame, trial_ids: list[str], sweep_dir: Path) -> list[pd.Series]:
    """Return the rows of ``trial_ids``; AnalysisError for an unknown or unfinished trial."""
    by_id = {str(t): i for i, t in enumerate(df["trial_id"])}
    rows = []
    for trial_id in trial_ids:
        if trial_id not in by_id:
            known = ", ".join(list(by_id)[:10]) + (", ..." if len(by_id) > 10 else "")
            raise AnalysisError(
                f"trial {trial_id!r} is not in {sweep_dir}/trials.parquet (trials: {known})"
            )
        row = df.iloc[by_id[trial_id]]
        if row["status"] != "ok":
            raise AnalysisError(
                f"trial {trial_id!r} has status {row['status']} ({row.get('error')}): "
                "no scores to plot"
            )
        rows.append(row)
    return rows


def main(argv: list[str]) -> int:
    """Write one ROC/DtC figure per trial named in ``argv``; return the exit code."""
    parser = common.make_parser("analysis/roc.py", __doc__, sweeps="one")
    parser.add_argument(
        "--trials",
        nargs="+",
        required=True,
        metavar="ID",
        help="trial ids (see trials.parquet or analysis/pareto.py)",
    )
    common.add_out_dir(parser, "the roc-<trial>.png files", "DIR")
    args = parser.parse_args(argv)
    df = common.load_sweeps([args.dir])
    out = args.out if args.out is not None else args.dir
    for row in _trial_rows(df, args.trials, args.dir):
        path = plot_trial(args.dir, row, out / roc_png_name(str(row["trial_id"])))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(common.run_main(main))
