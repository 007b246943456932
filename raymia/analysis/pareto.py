"""The privacy/utility Pareto front of one or more sweeps: a Markdown table and a PNG.

Usage::

    python analysis/pareto.py DIR [DIR ...] [--objectives acc:max,adv:min,dtc_adv:min]
                              [--out OUTDIR]

Prints the Pareto-optimal completed trials (over the objectives) as a Markdown table and
writes it to ``OUTDIR/pareto.md``, with ``OUTDIR/pareto.png``: test accuracy against the
attack advantage (left) and against the DtC advantage (right), every trial colored by which
mechanisms it switches on, the 2-D front of each panel drawn as a staircase and the trials on
the front of all objectives ringed. ``OUTDIR`` defaults to the first DIR. Several DIRs are
analysed as one set of trials (a ``sweep`` column tells them apart).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from raymia.analysis import common
from raymia.labels import NONE_LABEL, add_labels
from raymia.pareto import Objective, pareto_front
from raymia.results import ok_trials
from raymia.tables import front_markdown, front_trials

__all__ = ["main", "plot_pareto"]

#: The two panels: (x column, x-axis label, title).
PANELS = (
    ("adv", "membership advantage, best attack (TPR − FPR, 0 = no leakage)", "accuracy vs attack"),
    ("dtc_adv", "DtC advantage (TPR − FPR, members nearer to confident)", "accuracy vs DtC"),
)
ACC_LABEL = "test accuracy (fraction correct)"
# More mechanism combinations than this and the rarest share one "other" color.
MAX_CATEGORIES = 12
SWEEP_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _category_colors(labels: pd.Series) -> tuple[pd.Series, dict[str, tuple]]:
    """Map each trial's mechanisms label to a plotted category and each category to a color.

    ``none`` comes first, then categories by how many trials they hold; beyond
    `MAX_CATEGORIES` the rarest are merged into one ``other`` category.
    """
    counts = labels.value_counts()
    order = sorted(counts.index, key=lambda c: (c != NONE_LABEL, -counts[c], c))
    if len(order) > MAX_CATEGORIES:
        kept = set(order[: MAX_CATEGORIES - 1])
        other = f"other ({len(order) - len(kept)} combinations)"
        labels = labels.where(labels.isin(kept), other)
        order = order[: MAX_CATEGORIES - 1] + [other]
    cmap = plt.get_cmap("tab10" if len(order) <= 10 else "tab20")
    colors = {c: cmap(i % cmap.N) for i, c in enumerate(order)}
    if NONE_LABEL in colors:
        colors[NONE_LABEL] = (0.2, 0.2, 0.2, 1.0)  # the baseline in near-black
    if len(order) == MAX_CATEGORIES and order[-1].startswith("other ("):
        colors[order[-1]] = (0.78, 0.78, 0.78, 1.0)  # the merged rest in light grey
    return labels, colors


def _staircase(ax: Axes, points: pd.DataFrame, x: str) -> None:
    """Draw the 2-D front (max test_acc, min x) of ``points`` as a staircase through them."""
    front = pareto_front(points, [Objective("test_acc", "max"), Objective(x, "min")])
    front = front.sort_values([x, "test_acc"])
    xs, ys = front[x].to_numpy(float), front["test_acc"].to_numpy(float)
    # Between two front points the best accuracy reachable is the left one's: steps "post".
    ax.step(xs, ys, where="post", color="black", lw=1.2, ls="--", zorder=2)


def plot_pareto(
    df: pd.DataFrame, objectives: list[Objective], path: Path, title: str | None = None
) -> Path:
    """Draw test accuracy against attack advantage and against DtC advantage; save a PNG.

    Every completed trial is a point colored by which mechanisms it switches on (marker
    shape by sweep when there are several); each panel's own 2-D front is a dashed
    staircase, and the trials on the front of all ``objectives`` are ringed (labelled with
    their trial id when there are at most 12). Returns ``path``.
    """
    ok = add_labels(ok_trials(df))
    ok["category"], colors = _category_colors(ok["mechanisms_on"])
    front = pareto_front(ok, objectives)
    sweeps = list(dict.fromkeys(ok["sweep"])) if "sweep" in ok else []
    markers = {s: SWEEP_MARKERS[i % len(SWEEP_MARKERS)] for i, s in enumerate(sweeps)}

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), sharey=True)
    for ax, (x, xlabel, panel_title) in zip(axes, PANELS, strict=True):
        ax.set_xlabel(xlabel)
        ax.set_title(panel_title)
        ax.grid(True, alpha=0.3)
        points = ok[np.isfinite(ok[x].to_numpy(float))] if x in ok else ok.iloc[0:0]
        if points.empty:
            ax.text(
                0.5,
                0.5,
                f"{x} not measured in these trials",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="grey",
            )
            continue
        for category, color in colors.items():
            for sweep in sweeps or [None]:
                sel = points[points["category"] == category]
                if sweep is not None:
                    sel = sel[sel["sweep"] == sweep]
                ax.scatter(
                    sel[x],
                    sel["test_acc"],
                    color=color,
                    s=36,
                    alpha=0.85,
                    marker=markers.get(sweep, "o"),
                    edgecolors="white",
                    linewidths=0.5,
                    zorder=3,
                )
        _staircase(ax, points, x)
        ringed = front[np.isfinite(front[x].to_numpy(float))]
        ax.scatter(
            ringed[x],
            ringed["test_acc"],
            s=170,
            facecolors="none",
            edgecolors="black",
            linewidths=1.4,
            zorder=4,
        )
        if len(ringed) <= 12:
            for _, row in ringed.iterrows():
                ax.annotate(
                    str(row["trial_id"]),
                    (row[x], row["test_acc"]),
                    fontsize=7,
                    xytext=(6, -10),
                    textcoords="offset points",
                    color="0.2",
                )
    axes[0].set_ylabel(ACC_LABEL)

    handles = [
        Line2D([], [], ls="", marker="o", color=c, markersize=7, label=cat)
        for cat, c in colors.items()
    ]
    handles.append(
        Line2D(
            [],
            [],
            ls="",
            marker="o",
            markersize=12,
            markerfacecolor="none",
            markeredgecolor="black",
            label=f"Pareto front ({', '.join(map(str, objectives))})",
        )
    )
    handles.append(Line2D([], [], ls="--", color="black", label="2-D front of the panel"))
    if len(sweeps) > 1:
        handles += [
            Line2D([], [], ls="", marker=m, color="0.3", label=f"sweep {s}")
            for s, m in markers.items()
        ]
    fig.legend(
        handles=handles,
        title="mechanisms on (color)",
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=min(3, len(handles)),
        frameon=False,
        fontsize=9,
    )
    fig.suptitle(
        title or f"Privacy/utility trade-off: {len(ok)} completed trials (upper left is better)"
    )
    fig.tight_layout()
    return common.save_figure(fig, path)


def main(argv: list[str]) -> int:
    """Print and write the Pareto front of the sweeps in ``argv``; return the exit code."""
    parser = common.make_parser("analysis/pareto.py", __doc__)
    common.add_objectives(parser)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where pareto.md and pareto.png go (default: the first DIR)",
    )
    args = parser.parse_args(argv)
    df = common.load_sweeps(args.dirs)
    objectives = common.check_objectives(df, args.objectives)
    out = args.out if args.out is not None else Path(args.dirs[0])
    front = front_trials(df, objectives)
    n_ok = len(ok_trials(df))
    table = (
        f"Pareto front over {', '.join(map(str, objectives))}: {len(front)} of "
        f"{n_ok} completed trials\n\n{front_markdown(front, objectives)}"
    )
    md = common.write_text(out / "pareto.md", table)
    png = plot_pareto(df, objectives, out / "pareto.png")
    print(f"wrote {md} and {png}", file=sys.stderr)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(common.run_main(main))
